"""A deadline and a circuit breaker for the Redis calls a request waits on.

A Redis that hangs (stopped, partitioned, paging) answers nothing: without a deadline,
every request that asks it something waits for the socket timeout, seconds each. So a
call on the request path gets `DEADLINE` seconds; `TRIP` failures in a row open the
breaker for `OPEN_SECONDS`, during which such calls fail at once, without asking Redis.
Then one call at a time is let through to see whether Redis is back.

"In a row" means one after the other: calls that fail together (a busy moment of this
process's event loop fails every call in flight at once) count once, and a call that
started after the last failure has to fail too. So a hung Redis opens the breaker within
about two deadlines, and a loaded but healthy one does not.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

T = TypeVar("T")

# Seconds a request-path Redis call may take before it fails (a resume then gets 503). A
# healthy Redis answers in well under 1 ms, but the time also counts waiting for a CPU: two
# relays, Redis and 200 resuming clients on 2 cores measured p50 26 ms, p99 313 ms, and
# stalls of 0.43 s while the relay's own process was nearly idle (tests/test_cluster.py).
# Plain chats never wait this long: their lease check has a shorter wait (app/leases.py).
DEADLINE = 1.0
# Failures in a row that open the breaker.
TRIP = 2
# Seconds the breaker stays open after a failure: calls fail at once meanwhile.
OPEN_SECONDS = 2.0


class Unavailable(Exception):
    """Redis did not answer in time, failed, or the breaker is open."""


class Breaker:
    __slots__ = ("deadline", "failed_at", "failures", "open_for", "open_until", "trying")

    def __init__(self, deadline: float = DEADLINE, open_for: float = OPEN_SECONDS) -> None:
        self.deadline, self.open_for = deadline, open_for
        self.open_until = 0.0
        self.failures = 0  # in a row
        self.failed_at = 0.0  # when the last one failed
        self.trying = False  # a call is finding out whether Redis is back

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """`await make()` within the deadline; raises `Unavailable` instead of waiting.
        `make` is only called when the breaker lets the call through."""
        if time.monotonic() < self.open_until:
            raise Unavailable
        half_open = self.open_until > 0.0
        if half_open:
            if self.trying:
                raise Unavailable  # one probe at a time
            self.trying = True
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline):
                result = await make()
        except (RedisError, OSError, TimeoutError):
            now = time.monotonic()
            if started > self.failed_at:  # not one of a batch that failed together
                self.failures += 1
            self.failed_at = now
            if self.failures >= TRIP or half_open:
                self.open_until = now + self.open_for
            raise Unavailable from None
        finally:
            if half_open:
                self.trying = False
        self.open_until, self.failures = 0.0, 0
        return result
