"""A bad day for Redis, run for real: `uv run python -m bench.faults [--seconds 90]`.

Two replicas share one Redis and the upstream stand-in, all on 127.0.0.1. For the run's
length, callers ask for resumable answers on a random replica, drop the connection at
random points and resume on a random replica until the answer ends (a few give up
instead); a plain-chat prober and a /healthz prober per replica measure latency; and the
fault schedule, in turn, stops Redis (SIGSTOP, then SIGCONT), restarts it empty, sets
maxmemory 1mb, and kills a replica (kill -9) and starts it again.

It checks, prints, and exits 1 if any check fails:
- every answer a caller read to `done` is the upstream's text exactly once (the stand-in
  records the send time it put in each delta, one upstream request per answer);
- every other answer ends with an `error` frame or a clear HTTP error, never a gap;
- no upstream stays open past RESUME_WINDOW + REDIS_LEASE_SECONDS (+ slack) after its
  caller's last reader left;
- every Redis key has a TTL at the end; the surviving replica's descriptors are back to
  their starting level (plus its Redis pool's idle connections);
and reports /healthz p99 on each replica and a plain chat's first byte p99 during faults.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import redis.asyncio as aioredis
import uvloop

from bench.loadgen import fetch_json, percentile
from bench.run import Proc, free_port

WINDOW, LEASE, SLACK = 3.0, 1.5, 3.0
KEEPALIVE = 16.0
DELTA = 0.05  # 20 deltas a second, as in the other scenarios


class World:
    """The processes, the fault windows, and what the probes measured."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.upstream_port, self.redis_port = free_port(), free_port()
        self.upstream = Proc(
            "upstream",
            [sys.executable, "bench/upstream.py", str(self.upstream_port)],
            self.upstream_port,
        )
        self.redis: subprocess.Popen | None = None
        self.start_redis()
        self.env = {
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self.upstream_port}",
            "ANTHROPIC_API_KEY": "bench",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "RESUME_WINDOW": str(WINDOW),
            "REDIS_LEASE_SECONDS": str(LEASE),
            "MAX_STREAMS_PER_CLIENT": "100000",
            "LOG_LEVEL": "WARNING",
        }
        self.ports = [free_port(), free_port()]
        self.replicas = [self.replica(port) for port in self.ports]
        self.alive = [True, True]
        self.faults: list[tuple[float, float, str]] = []  # (start, end, what)
        self.health: dict[int, list[float]] = {port: [] for port in self.ports}
        self.plain: list[tuple[float, float]] = []  # (when, seconds to the first frame)
        self.plain_failed = 0
        self.began = time.monotonic()

    def replica(self, port: int) -> Proc:
        argv = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        return Proc("replica", [*argv, "--port", str(port), "app.main:app"], port, self.env)

    def start_redis(self) -> None:
        argv = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.tmp)]
        self.redis = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        time.sleep(0.2)

    def live_port(self, rng: random.Random) -> int:
        choices = [p for p, up in zip(self.ports, self.alive, strict=True) if up]
        return rng.choice(choices)

    def during_fault(self, when: float) -> bool:
        return any(start <= when <= end + 2 for start, end, _ in self.faults)

    def stop(self) -> None:
        for proc in self.replicas:
            proc.stop()
        self.upstream.stop()
        if self.redis is not None:
            self.redis.kill()


async def fault_schedule(world: World, seconds: float) -> None:
    """Each fault in turn, spread over the run."""
    step = seconds / 5
    redis = aioredis.Redis(port=world.redis_port)

    async def window(what: str, begin, end, length: float) -> None:
        await asyncio.sleep(step - length)
        started = time.monotonic()
        await begin()
        await asyncio.sleep(length)
        await end()
        world.faults.append((started, time.monotonic(), what))

    async def nothing() -> None:
        pass

    async def hang() -> None:
        world.redis.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]

    async def unhang() -> None:
        world.redis.send_signal(signal.SIGCONT)  # type: ignore[union-attr]

    async def restart() -> None:
        world.redis.kill()  # type: ignore[union-attr]
        world.redis.wait()  # type: ignore[union-attr]
        await asyncio.to_thread(world.start_redis)

    async def full() -> None:
        await redis.config_set("maxmemory", "1mb")

    async def roomy() -> None:
        await redis.config_set("maxmemory", "0")

    async def kill() -> None:
        world.alive[1] = False
        world.replicas[1].popen.kill()

    async def revive() -> None:
        world.replicas[1] = await asyncio.to_thread(world.replica, world.ports[1])
        world.alive[1] = True

    await window("redis stopped (SIGSTOP)", hang, unhang, 3.0)
    await window("redis restarted empty", restart, nothing, 0.5)
    await window("redis at maxmemory", full, roomy, 3.0)
    await window("replica killed", kill, revive, 2.0)
    await redis.aclose()


async def probe_health(world: World, client: httpx2.AsyncClient, until: float) -> None:
    while time.monotonic() < until:
        for port, up in zip(world.ports, world.alive, strict=True):
            if up:
                started = time.monotonic()
                try:
                    await client.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                    world.health[port].append(time.monotonic() - started)
                except httpx2.TransportError:
                    pass
        await asyncio.sleep(0.05)


async def probe_plain(world: World, client: httpx2.AsyncClient, until: float) -> None:
    rng, n = random.Random(3), 0
    while time.monotonic() < until:
        n += 1
        body = {"message": f"bench:id=plain-{n},deltas=1,interval=0,stall=0"}
        started = time.monotonic()
        try:
            url = f"http://127.0.0.1:{world.live_port(rng)}/api/chat"
            async with client.stream("POST", url, json=body, timeout=20) as reply:
                async for _ in reply.aiter_lines():
                    world.plain.append((started, time.monotonic() - started))
                    break
                if reply.status_code != 200:
                    world.plain_failed += 1
        except httpx2.TransportError:
            world.plain_failed += 1
        await asyncio.sleep(0.2)


def parse(lines: list[str]) -> list[tuple[int, str, dict]]:
    """Complete frames only: (id, event, data)."""
    frames, frame = [], {}
    for line in lines:
        if not line:
            if "event" in frame:
                frames.append((int(frame.get("id", 0)), frame["event"], json.loads(frame["data"])))
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value
    return frames


async def caller(world: World, client: httpx2.AsyncClient, i: int) -> dict:
    """One resumable answer, dropped and resumed on random replicas until it ends."""
    rng = random.Random(i)
    sid = f"fault-{i}"
    marker = f"bench:id={sid},deltas={rng.randint(20, 80)},interval={DELTA},stall=0"
    frames: list[tuple[int, str, dict]] = []
    stream_id, left_at, tries = None, time.monotonic(), 0
    while True:
        last = frames[-1][0] if frames else 0
        if stream_id is None:
            method, url, body, headers = (
                "POST",
                "/api/chat",
                {"message": marker, "resumable": True},
                {},
            )
        else:
            method, url, body, headers = (
                "GET",
                f"/api/chat/{stream_id}",
                None,
                {"last-event-id": str(last)},
            )
        lines: list[str] = []
        status, dropped = 0, False
        try:
            base = f"http://127.0.0.1:{world.live_port(rng)}"
            async with client.stream(
                method, base + url, json=body, headers=headers, timeout=30
            ) as reply:
                status = reply.status_code
                drop_after = rng.randint(3, 60) if rng.random() < 0.6 else 10**6
                async for line in reply.aiter_lines():
                    lines.append(line)
                    if (
                        not line
                        and sum(f[1] == "delta" for f in frames + parse(lines)) >= drop_after
                    ):
                        dropped = True
                        break
        except httpx2.TransportError:
            if stream_id is None and not lines:  # refused before anything came
                return {"sid": sid, "frames": [], "left_at": time.monotonic(), "http": 0}
            # else a replica died under us: resume elsewhere
        left_at = time.monotonic()
        got = parse(lines)
        if status == 200:
            if stream_id is None and got:
                stream_id = got[0][2].get("stream_id")
            frames += got
            if frames and frames[-1][1] in ("done", "error"):
                return {"sid": sid, "frames": frames, "left_at": left_at}
            tries = 0
        elif status == 204:
            return {"sid": sid, "frames": frames, "left_at": left_at, "gap": "204 before the end"}
        elif status:
            tries += 1
            if tries > 12 or (stream_id is None and status not in (503,)):
                return {"sid": sid, "frames": frames, "left_at": left_at, "http": status}
        if stream_id is None and status == 200:
            return {"sid": sid, "frames": frames, "left_at": left_at, "gap": "no start"}
        if dropped and rng.random() < 0.1:  # gives up: nobody reads from here on
            return {"sid": sid, "frames": frames, "left_at": left_at, "abandoned": True}
        await asyncio.sleep(rng.uniform(0.1, 0.5) if status in (0, 200) else 0.5)


async def run(world: World, seconds: float, rate: float) -> dict:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=50)
    async with httpx2.AsyncClient(limits=limits, trust_env=False) as client:
        await asyncio.sleep(1.0)
        start_fds, start_rss = fds(world.replicas[0]), world.replicas[0].rss()
        world.began = time.monotonic()
        until = time.monotonic() + seconds
        probes = [
            asyncio.ensure_future(probe_health(world, client, until)),
            asyncio.ensure_future(probe_plain(world, client, until)),
            asyncio.ensure_future(fault_schedule(world, seconds)),
        ]
        callers, i = [], 0
        while time.monotonic() < until:
            callers.append(asyncio.ensure_future(caller(world, client, i)))
            i += 1
            await asyncio.sleep(1 / rate)
        results = await asyncio.gather(*callers)
        await asyncio.gather(*probes)
        # Every window over, and idle upstream connections past aiohttp's keep-alive (15 s).
        await asyncio.sleep(max(WINDOW + LEASE + SLACK, KEEPALIVE))
        stats = await fetch_json(world.upstream_port, "/stats")
        redis = aioredis.Redis(port=world.redis_port)
        no_ttl = [k async for k in redis.scan_iter(count=1000) if await redis.pttl(k) == -1]
        await redis.aclose()
        end_fds, end_rss = fds(world.replicas[0]), world.replicas[0].rss()
    report = judge(world, results, stats, no_ttl, start_fds, end_fds)
    report["replica_rss_mb"] = [round(start_rss / 2**20, 1), round(end_rss / 2**20, 1)]
    return report


def fds(proc: Proc) -> dict[str, int]:
    """The replica's descriptors: sockets by peer port, and the rest."""
    pid = proc.popen.pid
    peers = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            peers[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    out: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        key = "other"
        if target.startswith("socket:["):
            key = f"socket to :{peers.get(target[8:-1], 0)}"
        out[key] = out.get(key, 0) + 1
    return out


def judge(
    world: World, results: list[dict], stats: dict, no_ttl: list, start_fds: dict, end_fds: dict
) -> dict:
    outcomes: dict[str, int] = {}
    failures: list[str] = []
    late: list[float] = []
    for result in results:
        sid, frames = result["sid"], result["frames"]
        closed, sends, asked, finished = stats.get(sid, [None, [], 0, None])
        closed = min(t for t in (closed, finished) if t is not None) if closed or finished else None
        # A reader on another replica ends an answer it cannot follow with an error frame
        # of its own, which has no id (the producer may still write that id).
        ids = [f[0] for f in frames if f[0] or f[1] != "error"]
        if ids != list(range(1, len(ids) + 1)):
            failures.append(f"{sid}: frame ids {ids[:3]}...{ids[-3:]} have a gap")
        if "gap" in result:
            failures.append(f"{sid}: {result['gap']}")
        end = frames[-1] if frames else None
        if end is not None and end[1] == "done":
            kind = "done"
            texts = [int(f[2]["text"][1:].split(";")[0]) for f in frames if f[1] == "delta"]
            if texts != sends or asked != 1:
                failures.append(f"{sid}: text not the upstream's exactly once ({asked} requests)")
        elif end is not None and end[1] == "error":
            kind = f"error frame: {end[2]['error']['type']}"
        elif "http" in result:
            kind = f"HTTP {result['http'] or 'refused'}"
        elif result.get("abandoned"):
            kind = "abandoned by the caller"
        else:
            kind = "ended silently"
            failures.append(f"{sid}: ended with neither done nor error")
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if kind != "done" and asked:
            if closed is None:
                failures.append(f"{sid} ({kind}): upstream still open")
            else:
                over = closed / 1e9 - result["left_at"] - (WINDOW + LEASE)
                late.append(over)
                if over > SLACK:
                    when = result["left_at"] - world.began
                    failures.append(
                        f"{sid} ({kind}, left at {when:.1f} s): upstream open {over:.1f} s "
                        f"past window + lease"
                    )
    if no_ttl:
        failures.append(f"{len(no_ttl)} Redis keys without a TTL")
    if sum(end_fds.values()) > sum(start_fds.values()):
        failures.append(f"descriptors {start_fds} -> {end_fds}")
    in_faults = [t for when, t in world.plain if world.during_fault(when)]
    faults = [f"{what} at {start - world.began:.1f} s" for start, _, what in world.faults]
    return {
        "answers": len(results),
        "outcomes": dict(sorted(outcomes.items())),
        "healthz_p99_ms": {
            str(p): round(percentile(v, 99) * 1000, 1) for p, v in world.health.items()
        },
        "plain_first_frame_ms": {
            "p50": round(percentile([t for _, t in world.plain], 50) * 1000, 1),
            "p99": round(percentile([t for _, t in world.plain], 99) * 1000, 1),
            "p99_during_faults": round(percentile(in_faults, 99) * 1000, 1),
            "max_during_faults": round(max(in_faults, default=0) * 1000, 1),
            "during_faults": len(in_faults),
            "failed": world.plain_failed,
        },
        "upstream_closed_after_window_and_lease_max_s": round(max(late), 2) if late else None,
        "redis_keys_without_ttl": len(no_ttl),
        "replica_descriptors": [start_fds, end_fds],
        "faults": faults,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--rate", type=float, default=5, help="new answers a second")
    args = parser.parse_args()
    world = World(Path(tempfile.mkdtemp(prefix="chat-relay-faults-")))
    try:
        report = uvloop.run(run(world, args.seconds, args.rate))
    finally:
        world.stop()
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["failures"] else 0)


if __name__ == "__main__":
    main()
