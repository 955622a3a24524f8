"""Where an idle stream's memory goes: `uv run python -m bench.heap [--streams N]`.

The bench's `idle` scenario measures the relay's RSS per stream whose caller stopped
reading. This names the owners of that memory: the relay runs in this process (its own
thread and event loop) under tracemalloc, N such streams are opened, and every Python
allocation they added is charged to the newest frame of its traceback that belongs to an
owner (the app, sse-starlette, aiohttp, uvicorn, ...). Plumbing they call into (anyio,
asyncio, contextlib) is charged to whoever called it: anyio's tasks started by sse-starlette
are sse-starlette's.
"""

import argparse
import collections
import gc
import json
import threading
import time
import tracemalloc

import uvicorn
import uvloop

from app.config import Settings
from app.main import create_app
from bench.loadgen import stalled_streams, stream
from bench.run import free_port, start_upstream

OWNERS = (
    "/app/",
    "sse_starlette",
    "aiohttp",
    "uvicorn",
    "fastapi",
    "starlette",
    "httpx2",
    "anthropic",
)
# The load generator's own allocations (its connections, its events) are not the relay's.
CLIENT = [
    tracemalloc.Filter(False, "*/bench/*", all_frames=True),
    tracemalloc.Filter(False, tracemalloc.__file__),
]


def owner(traceback: tracemalloc.Traceback) -> str:
    for frame in reversed(traceback):  # newest first
        for name in OWNERS:
            if name in frame.filename:
                return "app" if name == "/app/" else name
    return "other"


def start_relay(upstream_port: int) -> tuple[int, uvicorn.Server]:
    settings = Settings(
        anthropic_api_key="bench",
        anthropic_base_url=f"http://127.0.0.1:{upstream_port}",
        max_concurrent_streams=100_000,
        max_streams_per_client=100_000,
        stream_idle_timeout=300,
        log_level="ERROR",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), port=port, log_level="error", log_config=None)
    )
    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the relay did not start")
        time.sleep(0.05)
    return port, server


async def measure(port: int, n: int) -> dict:
    await stream(port, "warm", 10, 0.0)
    gc.collect()
    tracemalloc.start(16)
    try:
        before = tracemalloc.take_snapshot().filter_traces(CLIENT)
        async with stalled_streams(port, n, "heap"):
            held = tracemalloc.take_snapshot().filter_traces(CLIENT)
    finally:
        tracemalloc.stop()
    by_owner: collections.Counter[str] = collections.Counter()
    for diff in held.compare_to(before, "traceback"):
        by_owner[owner(diff.traceback)] += diff.size_diff
    return {
        "streams": n,
        "kb_per_stream": round(sum(by_owner.values()) / n / 1024, 1),
        "by_owner_kb": {k: round(v / n / 1024, 1) for k, v in by_owner.most_common()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=300)
    args = parser.parse_args()
    upstream = start_upstream()
    try:
        port, server = start_relay(upstream.port)
        figures = uvloop.run(measure(port, args.streams))
        server.should_exit = True
    finally:
        upstream.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
