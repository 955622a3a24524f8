"""A fake Anthropic Messages API on real HTTP/1.1, scriptable per request.

It speaks the real streaming wire format (chunked `text/event-stream` with
`message_start`, `content_block_*`, `ping`, `message_delta`, `message_stop`, `error`) and
records what it received and when each connection closed, so tests can prove what the
relay sent upstream and how fast it hung up. It is an asyncio Protocol, so a peer's close
is seen the moment it happens, even while a response is being written.
"""

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# A script is a list of steps, played in order for one request:
#   ("http", status, headers, body)  a complete non-streaming response, e.g. a 429
#   ("event", name, payload)         one SSE event in its own chunk
#   ("raw", bytes)                   bytes written as one chunk, as they are
#   ("sleep", seconds)
#   ("reset",)                       abort the TCP connection (RST)
#   ("truncate",)                    close the connection mid-body
#   ("stall",)                       say nothing more, forever
#   ("hang",)                        (first step only) never even send the headers
#   ("flood", n, text)               n text deltas as fast as the socket takes them
# A streaming script that runs out of steps ends the chunked body properly.
Step = tuple[Any, ...]


@dataclass
class Request:
    body: dict[str, Any]
    headers: dict[str, str]
    received: float
    conn: "Connection"
    line: str = ""  # the request line, e.g. "POST /v1/messages HTTP/1.1"


@dataclass
class Connection:
    opened: float
    closed: float | None = None
    requests: list[Request] = field(default_factory=list)
    bytes_sent: int = 0
    streaming: bool = False  # a response is being written right now
    # True while a response is still being written when the peer hangs up.
    closed_mid_response: bool = False


def message_start(model: str = "claude-test", input_tokens: int = 12, **usage: int) -> Step:
    message = {
        "id": "msg_fake_0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return ("event", "message_start", {"type": "message_start", "message": message})


def text_block(index: int, texts: Iterable[str]) -> list[Step]:
    steps: list[Step] = [
        (
            "event",
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
    ]
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        steps.append(
            (
                "event",
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        )
    steps.append(("event", "content_block_stop", {"type": "content_block_stop", "index": index}))
    return steps


def thinking_block(index: int, thoughts: Iterable[str], signature: str = "SIG-fake") -> list[Step]:
    """A thinking block as the API streams one: its thinking deltas, then its signature."""

    def delta(payload: dict[str, Any]) -> Step:
        event = {"type": "content_block_delta", "index": index, "delta": payload}
        return ("event", "content_block_delta", event)

    start = {"type": "content_block_start", "index": index, "content_block": {"type": "thinking"}}
    return [
        ("event", "content_block_start", start),
        *(delta({"type": "thinking_delta", "thinking": t}) for t in thoughts),
        delta({"type": "signature_delta", "signature": signature}),
        ("event", "content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def message_end(stop_reason: str = "end_turn", output_tokens: int = 87, **usage: Any) -> list[Step]:
    return [
        (
            "event",
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens, **usage},
            },
        ),
        ("event", "message_stop", {"type": "message_stop"}),
    ]


def answer(*texts: str, delay: float = 0.0, **kw: Any) -> list[Step]:
    """A normal streamed answer, one delta per text, `delay` seconds apart."""
    block = text_block(0, texts)
    if delay:
        block = [s for step in block for s in (("sleep", delay), step)]
    return [message_start(), ("event", "ping", {"type": "ping"}), *block, *message_end(**kw)]


def _delta(index: int, payload: dict[str, Any]) -> Step:
    event = {"type": "content_block_delta", "index": index, "delta": payload}
    return ("event", "content_block_delta", event)


def _start(index: int, block: dict[str, Any]) -> Step:
    event = {"type": "content_block_start", "index": index, "content_block": block}
    return ("event", "content_block_start", event)


def _stop(index: int) -> Step:
    return ("event", "content_block_stop", {"type": "content_block_stop", "index": index})


def tool_block(
    index: int, call_id: str, name: str, pieces: Iterable[str], kind: str = "tool_use"
) -> list[Step]:
    """A tool call as the API streams one: its start (an empty input), its input's JSON
    text in `input_json_delta` pieces, its stop. `kind`: `server_tool_use` for Anthropic's."""
    start = _start(index, {"type": kind, "id": call_id, "name": name, "input": {}})
    deltas = [_delta(index, {"type": "input_json_delta", "partial_json": p}) for p in pieces]
    return [start, *deltas, _stop(index)]


def whole_block(index: int, block: dict[str, Any]) -> list[Step]:
    """A block that arrives whole in its start: a server tool's result, redacted thinking."""
    return [_start(index, block), _stop(index)]


def cited_block(index: int, citation: dict[str, Any], texts: Iterable[str]) -> list[Step]:
    """A text block that cites a source: its citation, then its text."""
    start = _start(index, {"type": "text", "text": "", "citations": []})
    cite = _delta(index, {"type": "citations_delta", "citation": citation})
    deltas = [_delta(index, {"type": "text_delta", "text": t}) for t in texts]
    return [start, cite, *deltas, _stop(index)]


def tool_answer(*blocks: list[Step], stop_reason: str = "tool_use", **kw: Any) -> list[Step]:
    """A response made of these blocks, ending with `stop_reason`."""
    steps = [step for block in blocks for step in block]
    return [message_start(), *steps, *message_end(stop_reason, **kw)]


def search_result(call_id: str, *urls: str) -> dict[str, Any]:
    """A web search's result block, with the encrypted content the API sends."""
    pages = [
        {
            "type": "web_search_result",
            "url": url,
            "title": f"Page {n}",
            "page_age": "2 days",
            "encrypted_content": f"ENCRYPTED-CONTENT-{n}",
        }
        for n, url in enumerate(urls)
    ]
    return {"type": "web_search_tool_result", "tool_use_id": call_id, "content": pages}


def web_citation(url: str, text: str) -> dict[str, Any]:
    return {
        "type": "web_search_result_location",
        "url": url,
        "title": "Page 0",
        "cited_text": text,
        "encrypted_index": "ENCRYPTED-INDEX",
    }


def error_event(error_type: str, message: str) -> Step:
    return ("event", "error", {"type": "error", "error": {"type": error_type, "message": message}})


def http_error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> list[Step]:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return [("http", status, headers or {}, json.dumps(body).encode())]


class FakeUpstream:
    def __init__(self, ssl: Any = None) -> None:
        self.ssl = ssl  # a server-side SSLContext: serve HTTPS
        self.scripts: deque[list[Step]] = deque()
        # Scripts chosen by the last user message's text, for concurrent tests.
        self.by_message: dict[str, list[Step]] = {}
        self.default: list[Step] = answer("Hello", ", world", "!")
        self.connections: list[Connection] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        return sorted((r for c in self.connections for r in c.requests), key=lambda r: r.received)

    def open_connections(self) -> int:
        return sum(1 for c in self.connections if c.closed is None)

    def responses_in_flight(self) -> int:
        """Responses still being written to a connection nobody has closed."""
        return sum(1 for c in self.connections if c.closed is None and c.streaming)

    def push(self, *scripts: list[Step]) -> None:
        """The next requests get these scripts, in order; later ones get `default`."""
        self.scripts.extend(scripts)

    def reset(self) -> None:
        self.scripts.clear()
        self.by_message.clear()
        self.default = answer("Hello", ", world", "!")
        self.connections = [c for c in self.connections if c.closed is None]
        for c in self.connections:
            c.requests.clear()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Protocol(self), "127.0.0.1", 0, ssl=self.ssl
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server:
            self.server.close()


def text_of(content: Any) -> str:
    """A turn's text, whether the content is a string or a list of blocks."""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or () if isinstance(b, dict))


def last_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    return text_of(messages[-1].get("content"))


def plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as role and text, without prompt caching's marks."""
    return [{"role": m["role"], "content": text_of(m["content"])} for m in messages]


class _Protocol(asyncio.Protocol):
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.conn = Connection(opened=time.monotonic())
        self.upstream.connections.append(self.conn)

    def data_received(self, data: bytes) -> None:
        self.buffer += data  # a bytearray: a 32 MB body arrives in appends, not copies
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return
        body = json.loads(self.buffer[end + 4 : end + 4 + length] or b"{}")
        del self.buffer[: end + 4 + length]
        request = Request(body, headers, time.monotonic(), self.conn, lines[0])
        self.conn.requests.append(request)
        script = self.upstream.by_message.get(last_text(request.body))
        if script is None:
            script = (
                self.upstream.scripts.popleft() if self.upstream.scripts else self.upstream.default
            )
        self.task = asyncio.ensure_future(self.play(script))
        self.conn.streaming = True
        self.task.add_done_callback(self._played)

    def _played(self, task: asyncio.Task[None]) -> None:
        self.conn.streaming = False

    def eof_received(self) -> bool:
        self._closed()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()
        self.can_write.set()

    def _closed(self) -> None:
        if self.conn.closed is None:
            self.conn.closed = time.monotonic()
            self.conn.closed_mid_response = self.task is not None and not self.task.done()
        if self.task and not self.task.done():
            self.task.cancel()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    async def write(self, data: bytes) -> None:
        await self.can_write.wait()
        self.transport.write(data)
        self.conn.bytes_sent += len(data)

    async def chunk(self, data: bytes) -> None:
        await self.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def play(self, script: list[Step]) -> None:
        if script and script[0][0] == "hang":
            await asyncio.Event().wait()
        if script and script[0][0] == "http":
            _, status, headers, body = script[0]
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            head = (
                f"HTTP/1.1 {status} Error\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n{extra}\r\n"
            )
            await self.write(head.encode() + body)
            return
        await self.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\nrequest-id: req_fake\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for step in script:
            kind = step[0]
            if kind == "event":
                await self.chunk(
                    b"event: %s\ndata: %s\n\n" % (step[1].encode(), json.dumps(step[2]).encode())
                )
            elif kind == "raw":
                await self.chunk(step[1])
            elif kind == "sleep":
                await asyncio.sleep(step[1])
            elif kind == "reset":
                self.transport.abort()
                return
            elif kind == "truncate":
                self.transport.close()
                return
            elif kind == "stall":
                await asyncio.Event().wait()
            elif kind == "flood":
                _, count, text = step
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                }
                frame = b"event: content_block_delta\ndata: %s\n\n" % json.dumps(delta).encode()
                for _ in range(count):
                    await self.chunk(frame)
        await self.write(b"0\r\n\r\n")
