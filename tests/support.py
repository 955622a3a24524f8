"""What the tests share: the network harness (one background event loop hosting the fake
upstream and real uvicorn servers running the relay), clients that talk to them over real
sockets on 127.0.0.1, and the tests' own reading of SSE. Fixtures are in conftest.py."""

import asyncio
import base64
import contextlib
import gc
import gzip
import json
import logging
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
import uvicorn
import uvloop

from app.config import Settings
from app.dialect import Answer
from app.main import create_app
from app.translate import message_started, translate
from tests.fake_upstream import answer, last_text

T = TypeVar("T")


API_KEY = "sk-ant-test-SECRET-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent


class ServerLoop:
    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the loop's thread, where the servers' state lives."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll `predicate` on the loop's thread until it holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def tasks(self) -> int:
        return self.call(lambda: len(asyncio.all_tasks(self.loop)))

    def settles_to(self, baseline: int, timeout: float = 2.0) -> bool:
        """Whether the loop gets back to `baseline` tasks: nothing was left running."""
        return self.wait_for(lambda: len(asyncio.all_tasks(self.loop)) <= baseline, timeout)


@dataclass
class Relay:
    url: str
    server: uvicorn.Server
    settings: Settings

    @property
    def state(self) -> Any:
        return self.server.config.app.state


def relay_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ping_interval": 15,
        "stream_idle_timeout": 5,
        "upstream_retry_backoff": 0.01,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def start_relay(settings: Settings, **options: Any) -> Relay:
    options.setdefault("log_level", "warning")
    # uvicorn's own dictConfig would drop the handlers tests attach to its loggers.
    options.setdefault("log_config", None)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, **options)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    server.task = task  # type: ignore[attr-defined]
    return Relay(f"http://127.0.0.1:{port}", server, settings)


async def start_mcp_http(port: int = 0) -> tuple[uvicorn.Server, str]:
    """tests/mcp_server.py over streamable HTTP, in this loop; its server and its URL."""
    from tests.mcp_server import build  # the mcp SDK's server, only for the tests that use it

    config = uvicorn.Config(
        build().streamable_http_app(), host="127.0.0.1", port=port, log_config=None
    )
    server = uvicorn.Server(config)
    server.task = asyncio.ensure_future(server.serve())  # type: ignore[attr-defined]
    while not server.started:
        if server.task.done():  # type: ignore[attr-defined]
            server.task.result()  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/mcp"


async def stop_server(server: uvicorn.Server) -> None:
    server.should_exit = True
    await server.task  # type: ignore[attr-defined]


async def stop_relay(relay: Relay) -> None:
    relay.server.should_exit = True
    await relay.server.task  # type: ignore[attr-defined]


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The relay's one JSON line per stream."""
        return [json.loads(line) for line in self.lines if line.startswith('{"event": "chat"')]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def parse_frames(raw: str) -> list[tuple[str, Any]]:
    """The test's own reading of an SSE body: (event, parsed data), comments as (":", text)."""
    frames: list[tuple[str, Any]] = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            frames.append((":", "\n".join(line[1:].strip() for line in lines)))
            continue
        fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
        frames.append((fields["event"], json.loads(fields["data"])))
    return frames


@dataclass
class Reply:
    status: int
    headers: httpx2.Headers
    text: str

    @property
    def frames(self) -> list[tuple[str, Any]]:
        return parse_frames(self.text)

    @property
    def events(self) -> list[str]:
        return [name for name, _ in self.frames if name != ":"]

    @property
    def text_out(self) -> str:
        return "".join(data["text"] for name, data in self.frames if name == "delta")

    def json(self) -> Any:
        return json.loads(self.text)


def post_chat(relay: Relay, body: Any = None, *, content: bytes | None = None, **kw: Any) -> Reply:
    if content is None:
        content = json.dumps({"message": "Hi"} if body is None else body).encode()
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    # trust_env=False: a test that sets HTTP_PROXY for the relay must not proxy itself.
    with httpx2.Client(timeout=30, trust_env=False) as client:
        r = client.post(f"{relay.url}/api/chat", content=content, headers=headers, **kw)
        return Reply(r.status_code, r.headers, r.text)


class CuttableProxy:
    """A TCP proxy in front of the relay whose connections the test can cut, as a lost
    network would: the client sees its connection reset mid-answer."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.transports: list[asyncio.Transport] = []
        self.url = ""

    async def start(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.transports += [writer.transport, up_writer.transport]  # type: ignore[list-item]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for transport in self.transports:
            transport.abort()
        self.transports.clear()


# Generous: the target is p99 < 50 ms; this only has to catch "not promptly".
PROMPTLY = 0.5


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """What the relay does once started (app/memory.py): everything alive now is kept out of
    the cyclic collector's sight. This process also holds every earlier test's objects (and
    Playwright's); a full collection of them is a pause of the test process, not of the
    relay, and would land on whichever timing is being measured."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class RawClient:
    """An HTTP client that can hang up at an exact moment and say when it did."""

    def __init__(self, url: str, message: str) -> None:
        self.url = urlsplit(url)
        self.message = message
        self.received = b""
        self.closed_at = 0.0

    async def open(self, headers: dict[str, str] | None = None) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.url.hostname, self.url.port)
        body = json.dumps({"message": self.message}).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"POST /api/chat HTTP/1.1\r\nhost: {self.url.netloc}\r\n{extra}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()

    async def read_until(self, marker: bytes, count: int = 1) -> None:
        while self.received.count(marker) < count:
            chunk = await self.reader.read(65536)
            assert chunk, f"stream ended before {count} x {marker!r}: {self.received[-300:]!r}"
            self.received += chunk

    def hang_up(self) -> None:
        self.closed_at = time.monotonic()
        self.writer.close()


def upstream_request(upstream, server_loop, message, timeout=2.0):
    def find():
        return next((r for r in upstream.requests if last_text(r.body) == message), None)

    server_loop.wait_for(lambda: find() is not None, timeout)
    return server_loop.call(find)


def close_latency(upstream, server_loop, client: RawClient) -> float:
    request = upstream_request(upstream, server_loop, client.message)
    assert request is not None, f"no upstream request for {client.message}"
    assert server_loop.wait_for(lambda: request.conn.closed is not None, timeout=5), (
        "the upstream connection was never closed"
    )
    return request.conn.closed - client.closed_at


async def read_a_flood_late(
    relay: Relay, upstream: Any, server_loop: ServerLoop
) -> tuple[int, int, int]:
    """Ask for the upstream's flood, read nothing until the upstream stalls, then read it all.

    Returns the bytes the upstream had sent when it stalled, all it sent, and the delta
    frames received."""
    reader, writer = await raw_post(relay.url, b'{"message": "flood"}')

    def sent() -> int:
        return server_loop.call(lambda: upstream.requests[0].conn.bytes_sent)

    # Read nothing for a while: the relay must stop reading from the upstream.
    assert server_loop.wait_for(lambda: bool(upstream.requests), 5)
    seen: list[int] = []
    for _ in range(20):
        await asyncio.sleep(0.25)
        seen.append(sent())
        if len(seen) >= 3 and seen[-1] == seen[-3]:
            break
    # Then read it all: nothing lost, nothing duplicated.
    received = bytearray()
    while chunk := await reader.read(1 << 20):
        received += chunk
        if received.endswith(b"0\r\n\r\n"):
            break
    writer.close()
    return seen[-1], sent(), received.count(b"event: delta\n")


async def raw_post(
    url: str, body: bytes, declared: int | None = None, *, chunked: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """POST /api/chat on a raw connection: `body`, under a `declared` length (the whole
    body's by default; more, and the rest never comes), or `chunked` with the chunks to
    come from the caller (and the connection closed after the answer). Nothing is read."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    length = len(body) if declared is None else declared
    framing = (
        b"transfer-encoding: chunked\r\nconnection: close"
        if chunked
        else b"content-length: %d" % length
    )
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        b"%s\r\n\r\n%s" % (framing, body)
    )
    await writer.drain()
    return reader, writer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(
    env: dict[str, str], log: Path, *args: str, launcher: bool = False
) -> tuple[subprocess.Popen, str]:
    """`uvicorn app.main:app` in its own process (a replica), once it answers /readyz; or,
    with `launcher`, `python -m app` (what the image runs: a worker per core)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), *args]
    if launcher:
        argv = [sys.executable, "-m", "app"]
        env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 40
    while True:
        try:
            if httpx2.get(f"{url}/readyz").status_code == 200:
                return process, url
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.1)


class RedisServer:
    """Debian's redis-server on 127.0.0.1, on a free port, keeping nothing on disk."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


# Resumable streams

# An answer of 60 deltas, each its own word: missing or repeated text shows.
WORDS = [f"w{i} " for i in range(60)]


def frames_with_ids(lines: list[str]) -> list[tuple[int, str, dict]]:
    """(id, event, data) of each frame, from an SSE body's lines."""
    out, frame = [], {}
    for line in lines:
        if not line:
            if "event" in frame:
                out.append((int(frame.get("id", 0)), frame["event"], json.loads(frame["data"])))
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value
    return out


def open_and_drop(url: str, deltas: int, body: dict | None = None) -> list[tuple[int, str, dict]]:
    """POST a resumable chat, read until `deltas` deltas, and drop the connection."""
    payload = {"message": "resume me", "resumable": True, **(body or {})}
    lines: list[str] = []
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("POST", f"{url}/api/chat", json=payload) as reply,
    ):
        assert reply.status_code == 200
        for line in reply.iter_lines():
            lines.append(line)
            if not line and sum(f[1] == "delta" for f in frames_with_ids(lines)) >= deltas:
                break
    return frames_with_ids(lines)


def resume(url: str, stream_id: str, last: int | None = None, **headers: str) -> httpx2.Response:
    """GET a resumable stream's frames after `last` (Last-Event-ID)."""
    if last is not None:
        headers["last-event-id"] = str(last)
    return httpx2.get(f"{url}/api/chat/{stream_id}", headers=headers, timeout=10)


def text_of(frames: list[tuple[int, str, dict]]) -> str:
    return "".join(data["text"] for _, name, data in frames if name == "delta")


async def _drop_and_resume_many(
    urls: list[str], count: int, deltas: int, seed: int = 10
) -> list[tuple[str, float]]:
    """`count` resumable chats, each dropped after a random number of its `deltas` deltas
    and resumed to the end (with two `urls`, half of them on the other replica): each
    one's text, and the time from its resume request to the first frame replayed."""
    rng = random.Random(seed)

    async def one(i: int, client: httpx2.AsyncClient) -> tuple[str, float]:
        await asyncio.sleep(i / 200)  # arrivals over a second per 200
        drop_after = rng.randint(1, deltas - 1)
        there, back = urls[i % len(urls)], urls[(i + i // 2) % len(urls)]
        lines: list[str] = []
        body = {"message": f"r{i}", "resumable": True}
        async with client.stream("POST", f"{there}/api/chat", json=body) as reply:
            assert reply.status_code == 200, (i, reply.status_code, await reply.aread())
            async for line in reply.aiter_lines():
                lines.append(line)
                if not line and sum(f[1] == "delta" for f in frames_with_ids(lines)) >= drop_after:
                    break
        first = frames_with_ids(lines)
        asked, waited, rest = time.perf_counter(), 0.0, []
        headers = {"last-event-id": str(first[-1][0])}
        url = f"{back}/api/chat/{first[0][2]['stream_id']}"
        async with client.stream("GET", url, headers=headers) as again:
            assert again.status_code == 200, (i, again.status_code, await again.aread())
            async for line in again.aiter_lines():
                if not rest:
                    waited = time.perf_counter() - asked
                rest.append(line)
        frames = first + frames_with_ids(rest)
        assert [f[0] for f in frames] == list(range(1, len(frames) + 1)), (i, frames[-3:])
        assert frames[-1][1] == "done", (i, frames[-2:])
        return text_of(frames), waited

    unlimited = httpx2.Limits(max_connections=None)  # the client must not queue
    async with httpx2.AsyncClient(timeout=30, limits=unlimited) as client:
        return await asyncio.gather(*(one(i, client) for i in range(count)))


def two_hundred_resumed(urls: list[str], upstream: Any, seed: int) -> str:
    """200 resumable answers of WORDS at 20 deltas/s, dropped at random points and
    resumed (with two `urls`, half on the other replica): every text exactly once, one
    upstream request each. Returns the time to the first replayed frame, p50 and p99."""
    upstream.default = answer(*WORDS, delay=0.05)
    results = asyncio.run(_drop_and_resume_many(urls, 200, len(WORDS), seed))
    assert all(text == "".join(WORDS) for text, _ in results)
    assert len(upstream.requests) == 200, "one upstream request per answer"
    waits = sorted(wait for _, wait in results)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return f"p50 {statistics.median(waits) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


# The AI SDK's own client (tests/usechat/, installed by `npm ci` there)

USECHAT = ROOT / "tests" / "usechat"


def usechat(url: str, action: str, chat_id: str, text: str = "Hello", chunks: int = 3) -> Any:
    """Run the AI SDK's `DefaultChatTransport` under node against the relay at `url`."""
    argv = ["node", str(USECHAT / "client.mjs"), url, action, chat_id, text, str(chunks)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=USECHAT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def ui_body(chat_id: str, text: str = "Hello", **extra: Any) -> dict[str, Any]:
    """A useChat body, as `DefaultChatTransport` sends it."""
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", **extra}


def ui_chunks(raw: str) -> list[Any]:
    """The `data:` payloads of a UI message stream (`[DONE]` as the string)."""
    out = []
    for line in raw.split("\n"):
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def play(answer: Answer, script: list[Any]) -> bytes:
    """A fake upstream's script (tests/fake_upstream.py) through the pure translation: the
    bytes the caller would get."""
    out = b""
    for step in script:
        if step[0] != "event":
            continue
        name, payload = step[1].encode(), json.dumps(step[2]).encode()
        if name == b"message_start":
            message_started(answer, payload)
        else:
            out += translate(answer, name, payload) or b""
    return out


def ui_answer_interrupted(
    url: str, body: dict[str, Any], interrupt: Callable[[httpx2.Client], Any]
) -> tuple[list[Any], float, Any]:
    """POST a useChat body to the relay at `url` and, once its first frame came,
    `interrupt(client)`: the chunks that came after, when it interrupted, and what
    `interrupt` returned."""
    with (
        httpx2.Client(timeout=10) as client,
        client.stream("POST", f"{url}/api/chat", json=body) as reply,
    ):
        lines = reply.iter_lines()
        assert next(lines).startswith("id: ")
        interrupted = time.monotonic()
        result = interrupt(client)
        rest = ui_chunks("\n".join(lines))
    return rest, interrupted, result


def memory_mb(pid: int, field: str) -> float:
    """`VmRSS` (now) or `VmHWM` (the peak so far) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


# Memory a request body of B bytes costs at most, in B, from its first byte read to its
# first delta: measured by tests/test_body.py, assumed by tests/test_deploy.py.
BODY_COPIES = 2.5

# How each attachment type's bytes begin (app/attachments.py checks no more than this).
FILE_STARTS = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff\xe0",
    "image/gif": b"GIF89a",
    "image/webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    "application/pdf": b"%PDF-1.7\n",
}


def file_data(media_type: str, size: int = 64) -> str:
    """The base64 of `size` bytes that begin the way a file of `media_type` does."""
    head = FILE_STARTS[media_type]
    return base64.b64encode(head + random.randbytes(size - len(head))).decode()


def png(width: int, height: int) -> bytes:
    """A real PNG of one colour (what a browser can decode and scale)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = (b"\x00" + b"\xc8\x64\x32" * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        FILE_STARTS["image/png"]
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, from its header."""
    return struct.unpack(">II", data[16:24])


def file_block(media_type: str, size: int = 64, data: str | None = None) -> dict[str, Any]:
    """An image or document content block of the relay's own dialect."""
    kind = "document" if media_type == "application/pdf" else "image"
    source = {
        "type": "base64",
        "media_type": media_type,
        "data": file_data(media_type, size) if data is None else data,
    }
    return {"type": kind, "source": source}


@dataclass
class Span:
    """A span as an OTLP receiver decoded it: ids in hex, attributes as Python values."""

    name: str
    kind: int  # 2: SERVER, 3: CLIENT (opentelemetry.proto's Span.SpanKind)
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    status: int  # 0: unset, 1: ok, 2: error
    resource: dict[str, Any]
    ended: int  # ns since the epoch


def any_value(value: Any) -> Any:
    """An OTLP AnyValue as a Python value."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


class QuietHandler(BaseHTTPRequestHandler):
    """A test server's request handler: answers in one call, logs nothing."""

    def answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_http(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A plain HTTP server on 127.0.0.1, on a free port, in a thread of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class OtlpReceiver:
    """An OTLP/HTTP receiver on 127.0.0.1 (a thread of its own, as a collector is a process
    of its own): it decodes what the relay exports with opentelemetry-proto and keeps the
    spans, the metrics' data points and every raw body."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans: list[Span] = []
        self.points: list[tuple[str, str, dict[str, Any], Any]] = []  # name, unit, attrs, point
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver._spans(request)
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    receiver._metrics(request)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_error(404)
                    return
                with receiver.lock:
                    receiver.bodies.append(body)
                self.answer(reply.SerializeToString(), "application/x-protobuf")

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _spans(self, request: Any) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        Span(
                            span.name,
                            span.kind,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            attributes_of(span.attributes),
                            span.status.code,
                            resource,
                            span.end_time_unix_nano,
                        )
                    )
        with self.lock:
            self.spans += found

    def _metrics(self, request: Any) -> None:
        found = []
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    for point in data.data_points:
                        found.append(
                            (metric.name, metric.unit, attributes_of(point.attributes), point)
                        )
        with self.lock:
            self.points += found

    def wait_for_spans(
        self, predicate: Callable[[list[Span]], bool], timeout: float = 5.0
    ) -> list[Span]:
        """The spans received, once `predicate` holds of them (else fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            assert time.monotonic() < deadline, f"spans received: {[s.name for s in spans]}"
            time.sleep(0.02)

    def wait_for_points(
        self, name: str, timeout: float = 5.0
    ) -> list[tuple[str, str, dict[str, Any], Any]]:
        """The data points of metric `name` received so far, once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                points = [p for p in self.points if p[0] == name]
            if points:
                return points
            assert time.monotonic() < deadline, (
                f"no {name} among {sorted({p[0] for p in self.points})}"
            )
            time.sleep(0.02)

    def reset(self) -> None:
        with self.lock:
            self.spans, self.points, self.bodies = [], [], []

    def grpc(self) -> str:
        """Also take spans over OTLP/gRPC (a server of grpcio's); its URL."""
        from concurrent.futures import ThreadPoolExecutor

        import grpc
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                receiver._spans(request)
                with receiver.lock:
                    receiver.bodies.append(request.SerializeToString())
                    receiver.grpc_exports += 1
                return trace_service_pb2.ExportTraceServiceResponse()

        self.grpc_exports = 0
        self.grpc_server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.grpc_server)
        port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if hasattr(self, "grpc_server"):
            self.grpc_server.stop(None)


class Page:  # the chat page in Chromium (the `chat` fixture)
    """A page plus what it must not do."""

    def __init__(self, page, relay) -> None:
        self.page = page
        self.relay = relay
        self.problems: list[str] = []
        self.allowed: list[str] = []
        self.url = relay.url
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("request", self._request)
        page.add_init_script(
            "window.__csp = [];"
            "document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
        )

    def _console(self, message) -> None:
        if message.type == "error" and not any(re.search(a, message.text) for a in self.allowed):
            self.problems.append(f"console error: {message.text}")

    def _request(self, request) -> None:
        if not request.url.startswith((self.url, "data:", f"blob:{self.url}/")):
            self.problems.append(f"request off the page's origin: {request.url}")

    def open(self, url: str | None = None) -> None:
        self.url = url or self.relay.url
        self.page.goto(self.url + "/")
        self.page.wait_for_selector("#prompt:focus")

    def send(self, text: str) -> None:
        self.page.fill("#prompt", text)
        self.page.press("#prompt", "Enter")

    def answer(self, n: int = -1):
        return self.page.locator(".message.assistant .body").nth(n)

    def wait_done(self, count: int = 1) -> None:
        self.page.locator(".message.assistant .usage").nth(count - 1).wait_for(timeout=10_000)
