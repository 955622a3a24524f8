"""The benchmark's load generator: raw asyncio sockets on uvloop, no HTTP library.

A stream posts one chat and reads the raw response, finding each delta by the send stamp
`@<ns>;` its text carries (whatever frame format the relay uses), so the latency a relay
adds to each delta is the time of the read that brought it minus its stamp.
"""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

STAMP = re.compile(rb"@(\d+);")
REQUEST = (
    b"POST /api/chat HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s"
)


@dataclass
class Result:
    sid: str
    started: int = 0  # ns, CLOCK_MONOTONIC (comparable across processes)
    first_byte: int | None = None
    deltas: int = 0
    latencies: list[int] = field(default_factory=list)
    closed_at: int | None = None  # when the client hung up on purpose
    error: str | None = None


async def stream(
    port: int,
    sid: str,
    deltas: int,
    interval: float,
    *,
    stall: bool = False,
    close_after: int | None = None,
    on_delta: Callable[[int], None] | None = None,
    deadline: float = 120.0,
    headers_only: asyncio.Event | None = None,
    ui: bool = False,
    resumable: bool = False,
) -> Result:
    """One chat; `ui`: asked as useChat does, answered in the AI SDK's UI message stream;
    `resumable`: asked with `"resumable": true` (numbered frames, kept for the window)."""
    result = Result(sid)
    marker = f"bench:id={sid},deltas={deltas},interval={interval},stall={int(stall)}"
    if ui:
        text = {"type": "text", "text": marker}
        message = {"id": "u", "role": "user", "parts": [text]}
        asked: dict = {"id": sid, "messages": [message], "trigger": "submit-message"}
    else:
        asked = {"message": marker}
    if resumable:
        asked["resumable"] = True
    body = json.dumps(asked).encode()
    try:
        async with asyncio.timeout(deadline):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            result.started = time.monotonic_ns()
            writer.write(REQUEST % (len(body), body))
            try:
                await _read(reader, writer, result, deltas, close_after, on_delta, headers_only)
            finally:
                writer.close()
    except TimeoutError:
        result.error = "timeout"
    except OSError as exc:
        result.error = type(exc).__name__
    return result


@contextlib.asynccontextmanager
async def stalled_streams(port: int, n: int, name: str) -> AsyncIterator[None]:
    """`n` streams whose callers read the response's headers, then stop reading (the
    upstream stalls after a few deltas): held open, idle, for the body of the `with`."""
    opened = [asyncio.Event() for _ in range(n)]
    tasks = [
        asyncio.ensure_future(stream(port, f"{name}-{i}", 10, 0.0, stall=True, headers_only=e))
        for i, e in enumerate(opened)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)
        await asyncio.sleep(1.0)  # what the relay does with them has settled
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read(reader, writer, result, deltas, close_after, on_delta, headers_only) -> None:
    raw = b""  # undecoded bytes: the chunked framing is decoded here, as any client does
    body = b""  # decoded body not yet searched for stamps (a stamp may span two reads)
    size = -1  # the current chunk's size left to read; -1: a size line comes next
    headers_done = False
    while True:
        data = await reader.read(262144)
        now = time.monotonic_ns()
        if not data:
            if result.deltas < deltas:
                result.error = "closed early"
            return
        if result.first_byte is None:
            result.first_byte = now
            if not data.startswith(b"HTTP/1.1 200"):
                result.error = data[:12].decode(errors="replace")
                return
        raw += data
        if not headers_done:
            _, sep, rest = raw.partition(b"\r\n\r\n")
            if not sep:
                continue
            headers_done, raw = True, rest
            if headers_only is not None:
                headers_only.set()
                await asyncio.Event().wait()  # hold the stream open until cancelled
        finished = False
        while raw:
            if size < 0:
                line, sep, rest = raw.partition(b"\r\n")
                if not sep:
                    break
                size, raw = int(line.split(b";")[0], 16), rest
                if size == 0:
                    finished = True
                    break
            take = raw[:size]
            body += take
            raw = raw[len(take) :]
            size -= len(take)
            if size == 0:
                if len(raw) < 2:
                    break  # the CRLF after the chunk is still to come
                raw, size = raw[2:], -1
        last = 0
        for match in STAMP.finditer(body):
            result.latencies.append(now - int(match.group(1)))
            result.deltas += 1
            last = match.end()
            if on_delta is not None:
                on_delta(result.deltas)
            if close_after is not None and result.deltas >= close_after:
                result.closed_at = time.monotonic_ns()
                writer.transport.abort()
                return
        body = body[last:][-40:]
        if finished:
            if result.deltas < deltas:
                result.error = "missing deltas"
            return


async def fetch_json(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %s HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" % path.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    body = await reader.readexactly(length)
    writer.close()
    return json.loads(body)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
