"""Resumable answers, measured: `uv run python -m bench.resume [--streams N]`.

- resume: N resumable chats at 20 deltas/s, each dropped after a random number of its 60
  deltas and resumed 0.3 s later from its last frame id, on the same replica or (with
  Redis) on the other: the time from the resume request to the first replayed frame, and
  the upstream requests per answer (the upstream stand-in counts them).
- detached: N resumable chats of 1,000 deltas whose callers leave after the first delta
  while the answers run on to their end: the relay's RSS per detached stream, against the
  same chats not resumable, held open and read by nobody.

Redis is Debian's redis-server on a free port; the relays are the product under uvicorn.
"""

import argparse
import asyncio
import json
import random
import re
import subprocess
import tempfile
import time
from pathlib import Path

import uvloop

from bench.loadgen import fetch_json, percentile
from bench.run import Proc, free_port, start_upstream

FRAME_ID = re.compile(rb"\nid: (\d+)\n")
REQUEST = (
    b"%s %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n%s\r\n%s"
)


async def chat(port: int, sid: str, deltas: int, interval: float, *, resumable: bool = True):
    """Open a chat; returns (reader, writer) once its headers are in."""
    marker = f"bench:id={sid},deltas={deltas},interval={interval},stall=0"
    body = json.dumps({"message": marker, "resumable": resumable}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST % (b"POST", b"/api/chat", len(body), b"", body))
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer


async def read_frames(reader, until: int) -> tuple[str, int]:
    """Read until `until` deltas arrived: (stream id, last frame id)."""
    seen, stream_id, last, buffer = 0, "", 0, b""
    while seen < until:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("closed early")
        buffer += data
        *frames, buffer = buffer.split(b"\n\n")
        for frame in frames:
            if b"stream_id" in frame and not stream_id:
                stream_id = json.loads(frame.split(b"data: ", 1)[1])["stream_id"]
            if b"id: " in frame:
                last = int(frame.split(b"id: ", 1)[1].split(b"\n", 1)[0])
            seen += frame.count(b"event: delta")
    return stream_id, last


async def resume(port: int, stream_id: str, last: int) -> tuple[float, bytes]:
    """Resume after frame `last`: (seconds to the first replayed frame, the whole rest)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    asked = time.perf_counter()
    path = f"/api/chat/{stream_id}".encode()
    writer.write(REQUEST % (b"GET", path, 0, b"last-event-id: %d\r\n" % last, b""))
    await reader.readuntil(b"\r\n\r\n")
    rest = await reader.readuntil(b"id: ")
    waited = time.perf_counter() - asked
    while b"event: done" not in rest and b"event: error" not in rest:
        data = await reader.read(65536)
        if not data:
            break
        rest += data
    writer.close()
    return waited, rest


async def resume_scenario(ports: list[int], upstream_port: int, n: int, tag: str) -> dict:
    rng = random.Random(7)

    async def one(i: int) -> tuple[float, bool, bool]:
        await asyncio.sleep(i / 200)
        there, back = ports[i % len(ports)], ports[(i + i // 2) % len(ports)]
        reader, writer = await chat(there, f"{tag}-{i}", 60, 0.05)
        stream_id, last = await read_frames(reader, rng.randint(1, 59))
        writer.transport.abort()  # the connection drops
        await asyncio.sleep(0.3)  # away a while: frames wait to be replayed
        waited, rest = await resume(back, stream_id, last)
        ids = [int(x) for x in FRAME_ID.findall(b"\n" + rest)]
        complete = ids == list(range(last + 1, last + 1 + len(ids))) and b"event: done" in rest
        return waited, complete, there != back

    results = await asyncio.gather(*(one(i) for i in range(n)))
    stats = await fetch_json(upstream_port, "/stats")
    asked = [v[2] for k, v in stats.items() if k.startswith(f"{tag}-")]
    out = {}
    for name, other in (("same", False), ("other", True)):
        waits = [w * 1000 for w, _, o in results if o == other]
        if waits:
            out[f"resume_{name}_p50_ms"] = round(percentile(waits, 50), 1)
            out[f"resume_{name}_p99_ms"] = round(percentile(waits, 99), 1)
    out["complete"] = sum(c for _, c, _ in results)
    out["streams"] = n
    out["upstream_requests"] = sum(asked)
    return out


async def detached_scenario(port: int, proc: Proc, n: int, resumable: bool) -> dict:
    deltas, interval = 1000, 0.002
    before = proc.rss()
    held = []
    for i in range(n):
        reader, writer = await chat(
            port, f"det-{resumable}-{i}", deltas, interval, resumable=resumable
        )
        await read_frames(reader, 1)
        if resumable:
            writer.transport.abort()  # detached: the answer runs on to its end
        else:
            held.append(writer)  # held open, reading nothing
    await asyncio.sleep(deltas * interval + 1.0)
    after = proc.rss()
    for writer in held:
        writer.transport.abort()
    kb = (after - before) / n / 1024
    return {"streams": n, "deltas_each": deltas, "rss_per_stream_kb": round(kb, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chat-relay-resume-"))
    redis_port = free_port()
    upstream = start_upstream()
    upstream_port = upstream.port
    redis = subprocess.Popen(
        [
            *("redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp)),
        ],
        stdout=subprocess.DEVNULL,
    )
    env = {
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{upstream_port}",
        "ANTHROPIC_API_KEY": "bench",
        "MAX_CONCURRENT_STREAMS": "100000",
        "MAX_STREAMS_PER_CLIENT": "100000",
        "RESUME_WINDOW": "60",
        "LOG_LEVEL": "WARNING",
    }
    uvicorn = ["python", "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]

    def relay(**extra: str) -> Proc:
        port = free_port()
        argv = [*uvicorn, "--port", str(port), "app.main:app"]
        return Proc("product", argv, port, {**env, **extra})

    results: dict[str, dict] = {}
    try:
        for name, resumable in (("detached (resumable)", True), ("held open (not)", False)):
            one = relay()  # a fresh process for each RSS measurement
            try:
                results[name] = uvloop.run(
                    detached_scenario(one.port, one, args.streams, resumable)
                )
            finally:
                one.stop()
        one = relay()
        try:
            results["resume, one process"] = uvloop.run(
                resume_scenario([one.port], upstream_port, args.streams, "one")
            )
        finally:
            one.stop()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        a, b = relay(REDIS_URL=redis_url), relay(REDIS_URL=redis_url)
        try:
            results["resume, two replicas + Redis"] = uvloop.run(
                resume_scenario([a.port, b.port], upstream_port, args.streams, "two")
            )
        finally:
            a.stop()
            b.stop()
    finally:
        upstream.stop()
        redis.kill()
    for name, outcome in results.items():
        print(f"{name:<32} {json.dumps(outcome)}")


if __name__ == "__main__":
    main()
