"""What an attacker finds: four bounded attacks on a demo-mode relay on 127.0.0.1.

    uv run python -m bench.hardening [--root DIR]   # DIR: another checkout to measure

1. labels: 5,000 chats naming 5,000 models: /metrics size and the relay's RSS after.
2. slow uploads: 300 connections each sending 1,000,000 of 1,048,576 declared bytes, then
   nothing: RSS and descriptors held 2 s in, and how many are still held after 15 s.
3. big messages: 100 streams with 1,000,000-character messages, held open: RSS per stream
   (a demo answer is ~90 tokens at 0.5 s each, so all are still streaming when measured).
4. invalid turns: a 1 MiB body of 37,000 invalid turns: time to refuse, and /healthz's
   latency while two clients send it in a loop.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import uvloop

PORT = 18931
ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    return (
        int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    )


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def request(body: bytes, path: str = "/api/chat", read: bool = True) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    method = b"POST" if body else b"GET"
    writer.write(
        b"%s %s HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
        % (method, path.encode(), len(body), body)
    )
    await writer.drain()
    raw = await reader.read() if read else b""
    writer.close()
    return (int(raw.split(b" ", 2)[1]) if raw else 0), raw


async def labels(pid: int) -> dict:
    _, before = await request(b"", "/metrics")
    sem = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with sem:
            await request(
                json.dumps({"message": "hi", "model": f"m-{i}", "max_tokens": 1}).encode()
            )

    await asyncio.gather(*(one(i) for i in range(5000)))
    _, after = await request(b"", "/metrics")
    return {"metrics_kb_before": len(before) / 1024, "metrics_kb_after": len(after) / 1024}


async def slow_uploads(pid: int) -> dict:
    base_rss, base_fds = rss_mb(pid), fds(pid)
    writers = []
    for _ in range(300):
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 1048576\r\n\r\n" + b" " * 1_000_000
        )
        writers.append((reader, writer))
    await asyncio.sleep(2)
    held_rss, held_fds = rss_mb(pid) - base_rss, fds(pid) - base_fds
    await asyncio.sleep(13)
    later_fds = fds(pid) - base_fds
    for _, writer in writers:
        writer.close()
    return {"rss_mb_held_at_2s": held_rss, "fds_held_at_2s": held_fds, "fds_held_at_15s": later_fds}


async def big_messages(pid: int) -> dict:
    await asyncio.sleep(1)
    base = rss_mb(pid)

    async def one(i: int) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        body = json.dumps({"message": f"{i} " + "y" * 1_000_000}).encode()
        writer.write(
            b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await reader.readuntil(b"event: delta")
        return writer

    streams = []
    for start in range(0, 100, 10):  # ten at a time, each held open after its first delta
        streams += await asyncio.gather(*(one(i) for i in range(start, start + 10)))
    await asyncio.sleep(1)
    per_stream = (rss_mb(pid) - base) / 100
    for writer in streams:
        writer.close()
    return {"rss_kb_per_stream": per_stream * 1024}


async def invalid_turns(pid: int) -> dict:
    turns = [{"role": "x", "content": 7}] * 37_000  # compact: 0.9 MB, under MAX_BODY_BYTES
    body = json.dumps({"messages": turns}, separators=(",", ":")).encode()
    started = time.perf_counter()
    status, _ = await request(body)
    refuse_ms = (time.perf_counter() - started) * 1000
    stop = asyncio.Event()

    async def attacker() -> None:
        while not stop.is_set():
            await request(body)

    attackers = [asyncio.ensure_future(attacker()) for _ in range(2)]
    latencies = []
    for _ in range(30):
        t = time.perf_counter()
        await request(b"", "/healthz")
        latencies.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*attackers)
    return {
        "status": status,
        "refuse_ms": refuse_ms,
        "healthz_ms_p50": statistics.median(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env |= {"DEMO_TOKEN_DELAY": "0", "LOG_LEVEL": "WARNING", "MAX_STREAMS_PER_CLIENT": "100000"}
    results = {}
    for name, attack in [
        ("labels", labels),
        ("slow_uploads", slow_uploads),
        ("big_messages", big_messages),
        ("invalid_turns", invalid_turns),
    ]:
        # Big messages: a slow demo answer, so each stream stays open after its first delta.
        env_one = env | ({"DEMO_TOKEN_DELAY": "0.5"} if name == "big_messages" else {})
        relay = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--port",
                str(PORT),
                "--log-level",
                "critical",
                "--no-access-log",
            ],
            cwd=args.root,
            env=env_one,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(4)
            results[name] = uvloop.run(attack(relay.pid))
        finally:
            relay.kill()
            relay.wait()
        print(name, json.dumps(results[name]), flush=True)


if __name__ == "__main__":
    main()
