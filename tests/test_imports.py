"""The house has no circle: no module of app/ imports, however indirectly, itself.

Read with `ast`, not by importing: an import under `TYPE_CHECKING` or inside a function is
an edge too (a circle that closes through one is still a circle, one refactor away from an
ImportError at start-up)."""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def edges(package: Path = APP) -> dict[str, set[str]]:
    """Each module of `package` (by its name) and the modules of app/ it imports, anywhere
    in it."""
    modules = {path.stem for path in package.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "app":  # from app import telemetry, errors
                    imported |= {alias.name for alias in node.names}
                elif node.module.startswith("app."):
                    imported.add(node.module.split(".")[1])
            elif isinstance(node, ast.ImportFrom) and node.level == 1:  # from . import x
                imported |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("app."):
                        imported.add(alias.name.split(".")[1])
        graph[path.stem] = (imported & modules) - {path.stem}
    return graph


def a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, as the path around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done, no cycle through it
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                return [*path[path.index(other) :], other]
            if other not in state and (found := visit(other)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_app_has_no_import_cycle():
    cycle = a_cycle(edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_check_sees_imports_under_type_checking_and_in_functions(tmp_path):
    (tmp_path / "a.py").write_text("from app.b import B\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.c import C\n"
    )
    (tmp_path / "c.py").write_text("def late():\n    from app import a\n")
    graph = edges(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert a_cycle(graph) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set()}) is None
