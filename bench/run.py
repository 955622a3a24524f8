"""One command, every relay side by side in one run: `uv run python -m bench.run`.

Relays: the product; the tutorial-style relay (bench/naive_relay.py); the floor, a plain
byte-forwarding proxy (nginx with buffering off if installed, and the asyncio one in
bench/floor.py). Each scenario starts each relay afresh, against the same upstream
stand-in, driven by the load generator in this process. CPU is utime+stime of the relay's
process tree from /proc; RSS is the tree's VmRSS.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench import scenarios
from bench.report import print_table

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class Proc:
    """A process under measurement: CPU seconds and RSS bytes of its whole tree."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str] | None = None):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (open for the process's life)
            prefix=f"bench-{name}-", suffix=".log", delete=False
        )
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    log = Path(self.log.name).read_text()[-2000:]
                    raise RuntimeError(f"{name} did not start: {log}") from None
                time.sleep(0.1)

    def cpu(self) -> float:
        """CPU seconds of the tree: schedstat's nanoseconds per thread where the kernel
        keeps them (ticks of 10 ms are too coarse for a 2,000-delta window), else stat."""
        total = 0.0
        for pid in tree(self.popen.pid):
            try:
                threads = list(Path(f"/proc/{pid}/task").iterdir())
                total += sum(int((t / "schedstat").read_text().split()[0]) for t in threads) / 1e9
            except (OSError, ValueError, IndexError):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / TICK
                except OSError:
                    pass
        return total

    def rss(self) -> int:
        total = 0
        for pid in tree(self.popen.pid):
            with contextlib.suppress(OSError):  # a process that just ended
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        return total

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def start_upstream() -> Proc:
    """The upstream stand-in (`bench/upstream.py`) on a free port."""
    port = free_port()
    return Proc("upstream", [sys.executable, "bench/upstream.py", str(port)], port)


def relay_factories(upstream_port: int, tmp: Path) -> dict:
    py = sys.executable
    llm_env = {
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{upstream_port}",
        "ANTHROPIC_API_KEY": "bench",
    }
    product_env = {
        **llm_env,
        "MAX_CONCURRENT_STREAMS": "100000",
        "MAX_STREAMS_PER_CLIENT": "100000",
        "LOG_LEVEL": "WARNING",
    }
    uvicorn = [py, "-m", "uvicorn", "--log-level", "warning", "--no-access-log", "--port"]

    def product(port: int, env: dict[str, str] | None = None) -> Proc:
        # `env`: more settings, e.g. OTEL_* (bench/otel.py)
        argv = [*uvicorn, str(port), "app.main:app"]
        return Proc("product", argv, port, {**product_env, **(env or {})})

    def product_2w(port: int) -> Proc:
        # What the image runs, with two workers (`python -m app`): not in the default set,
        # as every other relay is measured as one process.
        env = {**product_env, "WEB_CONCURRENCY": "2", "HOST": "127.0.0.1", "PORT": str(port)}
        return Proc("product-2w", [py, "-m", "app"], port, env)

    def naive(port: int) -> Proc:
        return Proc("naive", [*uvicorn, str(port), "bench.naive_relay:app"], port, llm_env)

    def floor_asyncio(port: int) -> Proc:
        return Proc("floor-asyncio", [py, "bench/floor.py", str(port), str(upstream_port)], port)

    def floor_nginx(port: int) -> Proc:
        conf = tmp / f"nginx-{port}.conf"
        conf.write_text(NGINX % {"port": port, "upstream": upstream_port, "tmp": tmp})
        return Proc(
            "floor-nginx", [NGINX_BIN, "-c", str(conf), "-p", str(tmp), "-e", "stderr"], port
        )

    relays = {
        "product": product,
        "product-2w": product_2w,
        "naive": naive,
        "floor-asyncio": floor_asyncio,
    }
    if NGINX_BIN:
        relays = {"floor-nginx": floor_nginx, **relays}
    return relays


NGINX_BIN = shutil.which("nginx") or (
    "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
)
NGINX = """
daemon off; master_process on; worker_processes 1; pid %(tmp)s/nginx-%(port)s.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %(tmp)s; proxy_temp_path %(tmp)s;
  upstream up { server 127.0.0.1:%(upstream)s; keepalive 256; }
  server {
    listen 127.0.0.1:%(port)s backlog=4096;
    location / {
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 300s;
    }
  }
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--relays", nargs="*", help="subset of relays (default: all)")
    parser.add_argument(
        "--scenarios", nargs="*", default=list(scenarios.ALL), choices=list(scenarios.ALL)
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply stream counts (e.g. 0.1)"
    )
    parser.add_argument(
        "--out", default=None, help="JSON output (default: bench/results/<time>.json)"
    )
    args = parser.parse_args()

    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="chat-relay-bench-"))
    upstream = start_upstream()
    factories = relay_factories(upstream.port, tmp)
    wanted = args.relays or [k for k in factories if k != "product-2w"]  # that one if named
    chosen = {k: v for k, v in factories.items() if k in wanted}
    results: dict[str, dict] = {name: {} for name in chosen}
    started = time.monotonic()
    try:
        for scenario in args.scenarios:
            for name, make in chosen.items():
                port = free_port()
                relay = make(port)
                try:
                    print(f"-- {scenario:<12} {name:<14}", end=" ", flush=True)
                    outcome = uvloop.run(scenarios.ALL[scenario](relay, upstream, args.scale))
                    results[name][scenario] = outcome
                    print(
                        json.dumps(
                            {k: v for k, v in outcome.items() if not isinstance(v, (list, dict))}
                        )
                    )
                finally:
                    relay.stop()
    finally:
        upstream.stop()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "seconds": round(time.monotonic() - started, 1),
        "scale": args.scale,
        "floor": "floor-nginx" if "floor-nginx" in results else "floor-asyncio",
    }
    print_table(results, meta)
    out = (
        Path(args.out)
        if args.out
        else ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
