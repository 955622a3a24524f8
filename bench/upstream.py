"""The benchmark's upstream stand-in: raw asyncio on uvloop, as cheap per delta as we can
make it, so that it is never the bottleneck (the bench reports its CPU).

Each request says what it wants inside its body, in a marker any relay passes on as is:
`bench:id=<id>,deltas=<n>,interval=<seconds>,stall=<0|1>`. Each delta's text carries its
send time, `@<CLOCK_MONOTONIC ns>;`, so the client measures the latency added per delta.
`GET /stats` tells when each stream's connection closed, when each delta was sent, and how
many requests asked for it.
"""

import asyncio
import json
import re
import sys
import time

import uvloop

MARKER = re.compile(rb"bench:id=([\w-]+),deltas=(\d+),interval=([\d.]+),stall=([01])")
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nrequest-id: req_bench\r\n\r\n"
)
START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_bench",'
    b'"type":"message","role":"assistant","model":"bench","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)
DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"@%d; lorem ipsum "}}\n\n'
)
END = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":%d}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

# Per stream id: [closed_at or None, [send times], requests, finished_at or None] (send
# times kept only for the ids that ask for them).
STATS: dict[str, list] = {}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.task: asyncio.Task | None = None
        self.stream_id = ""
        self.paused: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        if head.startswith(b"GET /stats"):
            body = json.dumps(STATS).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            return
        match = MARKER.search(rest[:length])
        if match is None:  # a warm-up or health request: a short answer
            self.task = asyncio.ensure_future(self.answer("warmup", 3, 0.0, False))
            return
        sid, n, interval, stall = match.groups()
        self.stream_id = sid.decode()
        self.task = asyncio.ensure_future(
            self.answer(self.stream_id, int(n), float(interval), stall == b"1")
        )

    def connection_lost(self, exc) -> None:
        if self.stream_id in STATS:
            STATS[self.stream_id][0] = time.monotonic_ns()
        if self.task and not self.task.done():
            self.task.cancel()
        if self.paused and not self.paused.done():
            self.paused.set_result(None)

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False

    def pause_writing(self) -> None:
        self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.paused and not self.paused.done():
            self.paused.set_result(None)
        self.paused = None

    async def answer(self, sid: str, n: int, interval: float, stall: bool) -> None:
        record = sid.startswith(("cancel", "fault"))  # the fault run checks every delta
        sends: list[int] = []
        # [closed at, sends, how many requests asked for this id, answer written at]
        STATS[sid] = [None, sends, STATS.get(sid, [0, 0, 0])[2] + 1, None]
        write = self.transport.write
        write(HEAD + chunk(START))
        if stall:
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(n):
            if interval:
                # Paced against the start, so the rate holds however long a write takes.
                delay = start + (i + 1) * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self.paused is not None:
                await self.paused
            if self.transport.is_closing():
                return
            now = time.monotonic_ns()
            write(chunk(DELTA % now))
            if record:
                sends.append(now)
        write(chunk(END % n) + b"0\r\n\r\n")
        STATS[sid][3] = time.monotonic_ns()  # the connection may stay open, in a pool


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096)
    print(f"upstream ready on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
