"""One task per process that ends what has waited too long: a stream whose upstream has been
silent for STREAM_IDLE_TIMEOUT, and a response whose send has not completed within
SEND_TIMEOUT (a caller that stopped reading without closing).

Both used to be timers per event: aiohttp re-armed its `sock_read` timer on every socket
read, and sse-starlette entered a cancel scope with a deadline around every send; py-spy
put the two at about a tenth of the relay's CPU per delta. Here each stream and response
only notes when it started waiting (one clock read), and a check of all of them a few times
a second ends the late ones through their usual paths: `Stream.end` for a stream, the
response's own cancel scope (then the stream's, through `left`) for a send. A timeout fires
within one `tick` after its time.
"""

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol


class Waiting(Protocol):
    # When it started waiting (the event loop's clock), or None while it is not.
    waiting_since: float | None

    def too_late(self) -> None: ...


class Watchdog:
    def __init__(self, streams: Iterable[Waiting], idle: float, send: float) -> None:
        self.streams = streams  # the running streams (the runtime's set)
        self.responses: set[Waiting] = set()  # responses sending now, or between sends
        self.idle, self.send = idle, send
        # Four ticks a timeout, at most four a second: ~1 µs per stream a tick.
        self.tick = min(idle, send, 1.0) / 4
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            _end_late(self.streams, now - self.idle)
            _end_late(self.responses, now - self.send)


def _end_late(waiting: Iterable[Waiting], since: float) -> None:
    late: list[Callable[[], None]] = [
        w.too_late for w in waiting if w.waiting_since is not None and w.waiting_since < since
    ]
    for too_late in late:  # after the scan: ending one changes the set
        too_late()
