"""Finished resumable answers, kept for RESUME_WINDOW so a caller can still read them.

Only the journal is kept, not the stream that wrote it (its task, scope, futures and
upstream bookkeeping: several KB). Kept answers hold no stream slot, so they have a byte
budget of their own, counting what each really costs: its frames plus `OVERHEAD`. Past the
budget the oldest go early. One timer serves them all: every answer's window is as long,
so the oldest is always the first due.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from app.journal import Journal

# What a kept answer costs beside its frames' bytes, measured with tracemalloc
# (tests/test_kept.py): the journal and its two buffers, the dict entry, its id.
OVERHEAD = 1536


def cost(journal: Journal) -> int:
    return journal.nbytes + 8 * len(journal) + OVERHEAD


class Kept:
    def __init__(self, budget: int, window: float, on_forget: Callable[[str], None]) -> None:
        self.budget, self.window = budget, window
        self.nbytes = 0
        # id -> (journal, what it costs, when its window ends), oldest first.
        self.answers: OrderedDict[str, tuple[Journal, int, float]] = OrderedDict()
        self.on_forget = on_forget
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.answers)

    def get(self, stream_id: str) -> Journal | None:
        kept = self.answers.get(stream_id)
        return kept[0] if kept is not None else None

    def add(self, stream_id: str, journal: Journal) -> None:
        size = cost(journal)
        self.answers[stream_id] = (journal, size, time.monotonic() + self.window)
        self.nbytes += size
        while self.nbytes > self.budget:
            self.forget(next(iter(self.answers)))
        if self._timer is None and self.answers:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._sweep)

    def forget(self, stream_id: str) -> None:
        kept = self.answers.pop(stream_id, None)
        if kept is not None:
            self.nbytes -= kept[1]
            self.on_forget(stream_id)

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self.answers:
            stream_id, (_, _, until) = next(iter(self.answers.items()))
            if until > now:
                self._timer = asyncio.get_running_loop().call_later(until - now, self._sweep)
                return
            self.forget(stream_id)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
