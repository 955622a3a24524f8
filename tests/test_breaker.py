"""The deadline and circuit breaker of request-path Redis calls: a hung Redis costs a
request at most the deadline, and once the breaker is open, nothing."""

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.breaker import TRIP, Breaker, Unavailable


class Calls:
    """A stand-in Redis call that hangs, fails or answers, and counts how often it ran."""

    def __init__(self, how: str) -> None:
        self.how, self.count = how, 0

    async def __call__(self) -> str:
        self.count += 1
        if self.how == "hang":
            await asyncio.sleep(60)
        if self.how == "fail":
            raise RedisConnectionError("refused")
        return "ok"


def test_a_hung_call_ends_at_the_deadline_and_then_the_breaker_answers_at_once():
    async def run() -> tuple[list[float], int]:
        breaker, hung = Breaker(deadline=0.05, open_for=10), Calls("hang")
        took = []
        for _ in range(TRIP + 3):
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await breaker.call(hung)
            took.append(time.monotonic() - started)
        return took, hung.count

    took, calls = asyncio.run(run())
    assert all(0.04 < t < 0.5 for t in took[:TRIP]), took  # the deadline, not the socket's
    assert all(t < 0.01 for t in took[TRIP:]), took  # open: no waiting at all
    assert calls == TRIP, "an open breaker must not ask Redis"


def test_one_failure_alone_does_not_open_it():
    async def run() -> str:
        breaker = Breaker(deadline=0.05, open_for=10)
        with pytest.raises(Unavailable):
            await breaker.call(Calls("fail"))
        return await breaker.call(Calls("ok"))

    assert asyncio.run(run()) == "ok"


def test_after_the_open_period_one_probe_goes_through_and_success_closes_it():
    async def run() -> tuple[int, str, str]:
        breaker = Breaker(deadline=0.2, open_for=0.05)
        for _ in range(TRIP):
            with pytest.raises(Unavailable):
                await breaker.call(Calls("fail"))
        await asyncio.sleep(0.06)
        slow = Calls("ok")

        async def slowly() -> str:
            await asyncio.sleep(0.05)
            return await slow()

        probe = asyncio.ensure_future(breaker.call(slowly))
        await asyncio.sleep(0.01)
        others = Calls("ok")
        with pytest.raises(Unavailable):  # one probe at a time
            await breaker.call(others)
        first = await probe
        return others.count, first, await breaker.call(Calls("ok"))

    others, first, after = asyncio.run(run())
    assert others == 0 and first == "ok" and after == "ok"


def test_a_failed_probe_opens_it_again():
    async def run() -> int:
        breaker, failing = Breaker(deadline=0.2, open_for=0.05), Calls("fail")
        for _ in range(TRIP):
            with pytest.raises(Unavailable):
                await breaker.call(failing)
        await asyncio.sleep(0.06)
        with pytest.raises(Unavailable):
            await breaker.call(failing)  # the probe
        with pytest.raises(Unavailable):
            await breaker.call(failing)  # open again at once
        return failing.count

    assert asyncio.run(run()) == TRIP + 1


def test_calls_that_fail_together_count_once():
    # A busy moment of the event loop fails every call in flight at once: one failure.
    async def run() -> str:
        breaker = Breaker(deadline=0.05, open_for=10)
        hung = Calls("hang")
        results = await asyncio.gather(
            *(breaker.call(hung) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, Unavailable) for r in results)
        return await breaker.call(Calls("ok"))

    assert asyncio.run(run()) == "ok"
