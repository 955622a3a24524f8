"""The per-client stream limit across replicas: leases in Redis.

A sorted set per client holds its streams' lease members, scored by when each lapses (by
Redis's clock, so the replicas' clocks need not agree). A replica renews its own on every
heartbeat (app/cluster.py) and drops one when its stream ends; a replica that dies stops
renewing, so its leases lapse after REDIS_LEASE_SECONDS: leases, not counters that a crash
would leak. A Redis that does not answer at once never holds a chat up: the check is
skipped, and this process's own count (app/admission.py) still holds.
"""

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from app.admission import busy
from app.breaker import Breaker, Unavailable
from app.keys import PREFIX

log = logging.getLogger("chat_relay")

# Seconds a chat waits for its lease before it is admitted on this process's own count.
# The check goes on meanwhile (and may open the breaker), and chats that come while it
# does are admitted at once; a lease granted late is simply not renewed, so it lapses
# within REDIS_LEASE_SECONDS.
WAIT = 0.25

# Take a lease if the client holds fewer than ARGV[2] live ones.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RENEW = """
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""


def leases_key(client: str) -> str:
    return f"{PREFIX}:leases:{client}"


class Leases:
    def __init__(self, redis: aioredis.Redis, breaker: Breaker, replica: str, ms: int) -> None:
        self.redis, self.breaker, self.replica, self.ms = redis, breaker, replica, ms
        self.held: dict[str, set[str]] = {}  # client key -> lease members held here
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._count = 0
        self._late: set[asyncio.Future[object]] = set()  # checks still running (strong refs)

    async def take(self, client: str, limit: int) -> str | None:
        """A lease for one of `client`'s streams (429 if it holds `limit`); None when Redis
        does not answer at once: the caller then relies on its own process's count."""
        if self._late:  # a check is already waiting on a slow Redis: do not queue behind it
            return None
        self._count += 1
        member = f"{self.replica}:{self._count}"
        args = [member, limit, self.ms]
        check = asyncio.ensure_future(
            self.breaker.call(lambda: self._take(keys=[leases_key(client)], args=args))
        )
        done, _ = await asyncio.wait({check}, timeout=WAIT)
        if not done:  # Redis is slow: admit on this process's count, let the check finish
            self._late.add(check)
            check.add_done_callback(self._forget_late)
            return None
        try:
            taken = check.result()
        except Unavailable:
            return None
        if not taken:
            raise busy(429, "rate_limit_error", f"At most {limit} streams at once per client.")
        self.held.setdefault(client, set()).add(member)
        return member

    def _forget_late(self, check: "asyncio.Future[object]") -> None:
        self._late.discard(check)
        if not check.cancelled():
            check.exception()  # retrieved: an Unavailable here is expected

    async def release(self, client: str, member: str) -> None:
        held = self.held.get(client)
        if held is not None:
            held.discard(member)
            if not held:
                del self.held[client]
        with contextlib.suppress(Unavailable):  # else it lapses within REDIS_LEASE_SECONDS
            await self.breaker.call(lambda: self.redis.zrem(leases_key(client), member))

    async def renew(self, pipe: Pipeline) -> None:
        """Add the renewal of every lease held here to the heartbeat's pipeline."""
        for client, members in self.held.items():
            await self._renew(keys=[leases_key(client)], args=[self.ms, *members], client=pipe)
