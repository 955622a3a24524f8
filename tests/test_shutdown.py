"""Graceful shutdown: a real uvicorn process, a real SIGTERM."""

import asyncio
import os
import re
import signal
import subprocess
import time

import httpx2
from prometheus_client.mmap_dict import MmapedDict

from tests.fake_upstream import answer, last_text
from tests.support import API_KEY, RawClient, raw_post, serve

GRACE = 1.5


def test_sigterm_drains_then_ends_the_rest(upstream, server_loop, tmp_path):
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": upstream.url,
        "SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "PING_INTERVAL": "0.2",
    }
    process, url = serve(env, tmp_path / "relay.log", "--timeout-graceful-shutdown", "10")
    try:
        upstream.by_message["short"] = answer(*[f"s{i} " for i in range(8)], delay=0.1)  # ~0.8 s
        upstream.by_message["long"] = answer(*[f"l{i} " for i in range(400)], delay=0.05)  # ~20 s
        # An upstream that takes longer than the grace to answer at all.
        upstream.by_message["opening"] = [("sleep", 5), *answer("late")]

        async def run() -> tuple[bytes, bytes, int, int, float]:
            short, long = RawClient(url, "short"), RawClient(url, "long")
            opening = RawClient(url, "opening")
            await short.open()
            await long.open()
            await opening.open()
            await short.read_until(b"event: delta")
            await long.read_until(b"event: delta")
            # A request whose body is still arriving when the signal comes.
            body = b'{"message": "uploading"}'
            up_reader, up_writer = await raw_post(url, body[:5], declared=len(body))
            await asyncio.sleep(0.2)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            up_writer.write(body[5:])
            uploaded = await asyncio.wait_for(up_reader.read(), 5)
            assert uploaded.startswith(b"HTTP/1.1 503"), uploaded
            assert b'"server_shutdown"' in uploaded
            up_writer.close()
            # Still answering, but not for new work.
            ready = await asyncio.to_thread(httpx2.get, f"{url}/readyz")
            chat = await asyncio.to_thread(httpx2.post, f"{url}/api/chat", json={"message": "new"})
            await short.read_until(b"event: done")
            await long.read_until(b"event: error")
            # Still opening when the grace ran out: a clear 503, not a cut connection.
            await opening.read_until(b"server_shutdown")
            assert opening.received.startswith(b"HTTP/1.1 503"), opening.received
            exited = await asyncio.to_thread(process.wait, 10)
            del exited
            return (
                short.received,
                long.received,
                ready.status_code,
                chat.status_code,
                time.monotonic() - sent,
            )

        short, long, ready, chat, took = asyncio.run(run())
    finally:
        if process.poll() is None:
            process.kill()
    output = (tmp_path / "relay.log").read_text()

    assert ready == 503
    assert chat == 503
    assert b"event: done" in short and b"event: error" not in short  # finished within the grace
    assert b'"type":"server_shutdown"' in long and b"event: done" not in long
    assert took < GRACE + 1.0, f"exited {took:.2f} s after SIGTERM"
    long_conn = next(r.conn for r in upstream.requests if last_text(r.body) == "long")
    assert long_conn.closed is not None, "the upstream of the ended stream must be closed"
    assert "draining" in output and "Traceback" not in output
    print(f"\nexited {took:.2f} s after SIGTERM (grace {GRACE} s)")


def test_metrics_add_up_across_workers(tmp_path):
    """`python -m app` with two workers: prometheus-client's multiprocess mode in a
    directory of its own, where any worker's /metrics counts all streams; removed after."""
    env = {**os.environ, "WEB_CONCURRENCY": "2", "DEMO_TOKEN_DELAY": "0", "TMPDIR": str(tmp_path)}
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    process, url = serve(env, tmp_path / "relay.log", launcher=True)
    (prom,) = tmp_path.glob("chat-relay-metrics-*")
    try:

        def completed_per_worker() -> list[float]:
            counts = []
            for path in prom.glob("counter_*.db"):
                values = MmapedDict(str(path), read_mode=True).read_all_values()
                counts.append(sum(v for key, v, _ in values if "streams_completed" in key))
            return counts

        # Chat on fresh connections until both workers have served some (the kernel hands
        # each connection to whichever worker accepts first).
        chats = 0
        while not (len(counts := completed_per_worker()) == 2 and min(counts) > 0):
            reply = httpx2.post(
                f"{url}/api/chat", json={"message": "hi"}, headers={"connection": "close"}
            )
            assert b"event: done" in reply.content
            chats += 1
            assert chats < 100, counts
        for _ in range(6):
            text = httpx2.get(f"{url}/metrics", headers={"connection": "close"}).text
            completed = re.search(r"^chat_relay_streams_completed_total (\S+)$", text, re.M)
            assert completed and float(completed.group(1)) == chats, text[:2000]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    assert not prom.exists()


def test_sigterm_drains_every_worker(upstream, tmp_path):
    """`python -m app` with two workers: SIGTERM reaches each, each drains its streams."""
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": upstream.url,
        "SHUTDOWN_GRACE_SECONDS": "5",
        "WEB_CONCURRENCY": "2",
        "TMPDIR": str(tmp_path),
    }
    log = tmp_path / "relay.log"
    process, url = serve(env, log, launcher=True)
    try:
        deadline = time.monotonic() + 40
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        upstream.by_message["short"] = answer(*[f"s{i} " for i in range(10)], delay=0.1)

        async def run() -> list[bytes]:
            clients = [RawClient(url, "short") for _ in range(6)]  # on 6 connections
            for client in clients:
                await client.open()
            for client in clients:
                await client.read_until(b"event: delta")
            process.send_signal(signal.SIGTERM)
            for client in clients:
                await client.read_until(b"event: done")
            await asyncio.to_thread(process.wait, 10)
            return [client.received for client in clients]

        answers = asyncio.run(run())
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert all(b"event: done" in a and b"event: error" not in a for a in answers)
    assert output.count("draining") == 2, output  # each worker drained
    assert "Traceback" not in output
