"""What the demo upstream does with tools (app/demo.py streams it): it calls a declared tool
when the question names it, with an input built from the tool's schema; it answers a turn of
tool results by repeating them; and with a web search server tool it pretends to search,
with results that say they are made up. Just enough for a newcomer to see the loop."""

import json
import uuid
from typing import Any

RESULT_CHARS = 200  # of a tool's result repeated in the answer
PROPERTIES = 20  # of a schema filled in


QUOTED = 4000  # characters of a text looked at: only a few hundred are quoted back


def _text(content: Any) -> str:
    """A turn's text, at most QUOTED characters of each block: never a copy of a 2 MB turn."""
    if isinstance(content, str):
        return content[:QUOTED]
    return " ".join(b.get("text", "")[:QUOTED] for b in content if isinstance(b, dict))


def question(request: dict[str, Any]) -> str:
    """The last thing the user wrote (a turn of tool results has no words)."""
    for turn in reversed(request["messages"]):
        if turn["role"] == "user":
            text = " ".join(_text(turn["content"])[:QUOTED].split())
            if text:
                return text if len(text) <= 200 else text[:200] + "…"
    return ""


def results(request: dict[str, Any]) -> list[tuple[str, str]]:
    """The tool results the last turn carries, each as (tool name, text)."""
    content = request["messages"][-1]["content"]
    if isinstance(content, str):
        return []
    names = {}
    if len(request["messages"]) > 1:
        asked = request["messages"][-2]["content"]
        names = {b["id"]: b["name"] for b in asked if isinstance(b, dict) and "id" in b}
    found = []
    for block in content:
        if block.get("type") == "tool_result":
            text = _text(block.get("content") or "")[:RESULT_CHARS]
            found.append((names.get(block["tool_use_id"], "a tool"), text))
    return found


def call_for(request: dict[str, Any]) -> tuple[str, str, str] | None:
    """(id, name, input JSON) of a declared tool the question names, if any (the caller's,
    or an MCP server's the relay offers, by its own name)."""
    if results(request):
        return None
    asked = question(request).lower()
    for tool in request.get("tools") or []:
        # A relay tool (`mcp__<server>__<tool>`) is named by its own name too.
        names = {tool["name"].lower(), tool["name"].rsplit("__", 1)[-1].lower()}
        if "input_schema" in tool and any(name in asked for name in names):
            arguments = example(tool["input_schema"])
            return f"toolu_demo_{uuid.uuid4().hex[:20]}", tool["name"], json.dumps(arguments)
    return None


def example(schema: dict[str, Any]) -> dict[str, Any]:
    """An input that fits a JSON schema's properties: the first of an enum, else a value of
    the property's type."""
    values = {"string": "demo", "number": 1, "integer": 1, "boolean": True, "array": []}
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    filled = {}
    for name, spec in list(properties.items())[:PROPERTIES]:
        spec = spec if isinstance(spec, dict) else {}
        enum = spec.get("enum")
        filled[name] = enum[0] if isinstance(enum, list) and enum else values.get(spec.get("type"))
        if filled[name] is None:
            filled[name] = {}
    return filled


def searches(request: dict[str, Any]) -> bool:
    """A web search server tool is offered, and the turn is a question."""
    offered = any(t.get("name") == "web_search" and "type" in t for t in request.get("tools") or [])
    return offered and not results(request)


def search(query: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A pretend web search: its server_tool_use block, its result block (made up, and
    saying so) and the citation the answer makes of it."""
    call = f"srvtoolu_demo_{uuid.uuid4().hex[:20]}"
    use = {"type": "server_tool_use", "id": call, "name": "web_search", "input": {}}
    pages = [
        {
            "type": "web_search_result",
            "url": f"https://example.com/made-up-{n}",
            "title": f"Made-up result {n} (demo mode: not a real search)",
            "page_age": None,
            "encrypted_content": "demo-not-really-encrypted",
        }
        for n in (1, 2)
    ]
    result = {"type": "web_search_tool_result", "tool_use_id": call, "content": pages}
    citation = {
        "type": "web_search_result_location",
        "url": pages[0]["url"],
        "title": pages[0]["title"],
        "cited_text": f"Nothing real was searched for “{query[:80]}”.",
        "encrypted_index": "demo-index",
    }
    return use, result, citation


def answer_to_results(found: list[tuple[str, str]]) -> str:
    said = "; ".join(f"`{name}` answered “{text}”" for name, text in found)
    return (
        f"**Demo mode.** {said}. Claude would now use that to answer; the demo upstream only "
        "repeats it. Set `ANTHROPIC_API_KEY` and restart to talk to Claude for real."
    )
