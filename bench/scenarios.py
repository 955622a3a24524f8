"""The scenarios. Each takes the relay and upstream processes (with their CPU and RSS
readers) and a scale for stream counts, and returns its figures."""

import asyncio
import gc
import time

from bench.loadgen import fetch_json, percentile, stalled_streams, stream


async def warm(relay) -> None:
    await asyncio.gather(*(stream(relay.port, f"warm{i}", 5, 0.0) for i in range(4)))


def ms(values_ns: list[int]) -> list[float]:
    return [v / 1e6 for v in values_ns]


async def sample_peak(proc, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc.rss())
        await asyncio.sleep(0.2)


async def latency(relay, upstream, scale: float) -> dict:
    await warm(relay)
    r = await stream(relay.port, "latency", 300, 0.01)
    lat = ms(r.latencies)
    return {
        "deltas": r.deltas,
        "added_ms_p50": percentile(lat, 50),
        "added_ms_p99": percentile(lat, 99),
        "errors": int(r.error is not None),
    }


async def _concurrency(
    relay,
    upstream,
    n: int,
    deltas: int,
    interval: float,
    ramp: float,
    ui: bool = False,
    resumable: bool = False,
) -> dict:
    await warm(relay)
    gc.collect()
    peak, stop = [relay.rss()], asyncio.Event()
    sampler = asyncio.ensure_future(sample_peak(relay, peak, stop))
    cpu0, up0, me0, t0 = relay.cpu(), upstream.cpu(), time.process_time(), time.monotonic()

    async def one(i: int):
        await asyncio.sleep(ramp * i / n)
        return await stream(
            relay.port, f"c{n}-{i}", deltas, interval, deadline=90, ui=ui, resumable=resumable
        )

    results = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.monotonic() - t0
    cpu, up, me = relay.cpu() - cpu0, upstream.cpu() - up0, time.process_time() - me0
    stop.set()
    await sampler
    total = sum(r.deltas for r in results)
    lat = ms([v for r in results for v in r.latencies])
    ttfb = [(r.first_byte - r.started) / 1e6 for r in results if r.first_byte]
    return {
        "streams": n,
        "deltas": total,
        "deltas_per_s": total / elapsed,
        "added_ms_p50": percentile(lat, 50),
        "added_ms_p99": percentile(lat, 99),
        "ttfb_ms_p99": percentile(ttfb, 99),
        "cpu_us_per_delta": cpu / max(total, 1) * 1e6,
        "upstream_cpu_us_per_delta": up / max(total, 1) * 1e6,
        "loadgen_cpu_pct": me / elapsed * 100,
        "relay_cpu_pct": cpu / elapsed * 100,
        "peak_rss_mb": peak[0] / 2**20,
        "errors": sum(r.error is not None for r in results),
        "error_kinds": sorted({r.error for r in results if r.error}),
    }


async def concurrency_500(relay, upstream, scale: float) -> dict:
    return await _concurrency(relay, upstream, max(1, int(500 * scale)), 100, 0.05, ramp=2.0)


async def concurrency_500_ui(relay, upstream, scale: float) -> dict:
    """conc500 in the AI SDK's UI message stream (only the product speaks it)."""
    if relay.name != "product":
        return {"skipped": "speaks only its own protocol"}
    n = max(1, int(500 * scale))
    return await _concurrency(relay, upstream, n, 100, 0.05, ramp=2.0, ui=True)


async def concurrency_500_resumable(relay, upstream, scale: float) -> dict:
    """conc500 asked `resumable` (only the product keeps answers for a caller to resume)."""
    if relay.name != "product":
        return {"skipped": "has no resumable answers"}
    n = max(1, int(500 * scale))
    return await _concurrency(relay, upstream, n, 100, 0.05, ramp=2.0, resumable=True)


async def concurrency_1000(relay, upstream, scale: float) -> dict:
    return await _concurrency(relay, upstream, max(1, int(1000 * scale)), 100, 0.05, ramp=2.0)


async def throughput(relay, upstream, scale: float) -> dict:
    out = await _concurrency(relay, upstream, 16, max(1, int(3000 * scale)), 0.0, ramp=0.0)
    return {
        k: out[k]
        for k in (
            "deltas",
            "deltas_per_s",
            "cpu_us_per_delta",
            "upstream_cpu_us_per_delta",
            "loadgen_cpu_pct",
            "errors",
        )
    }


async def short_chats(relay, upstream, scale: float) -> dict:
    """What a request itself costs: 1,000 one-delta chats, 10 at a time."""
    await warm(relay)
    n, at_once = max(10, int(1000 * scale)), asyncio.Semaphore(10)
    cpu0, t0 = relay.cpu(), time.monotonic()

    async def one(i: int):
        async with at_once:
            return await stream(relay.port, f"chat-{i}", 1, 0.0)

    results = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed, cpu = time.monotonic() - t0, relay.cpu() - cpu0
    ttfb = [(r.first_byte - r.started) / 1e6 for r in results if r.first_byte]
    return {
        "chats": n,
        "chats_per_s": n / elapsed,
        "cpu_ms_per_chat": cpu / n * 1e3,
        "ttfb_ms_p50": percentile(ttfb, 50),
        "ttfb_ms_p99": percentile(ttfb, 99),
        "errors": sum(r.error is not None for r in results),
    }


async def cancellation(relay, upstream, scale: float, ramp: float = 0.5) -> dict:
    await warm(relay)
    n = max(1, int(200 * scale))

    async def one(i: int):
        await asyncio.sleep(ramp * i / n)
        return await stream(
            relay.port, f"cancel{int(ramp * 1000)}ms-{i}", 1000, 0.05, close_after=10
        )

    results = await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.sleep(1.0)
    stats = await fetch_json(upstream.port, "/stats")
    latencies, after, not_closed = [], 0, 0
    for r in results:
        closed_upstream, sends = stats.get(r.sid, [None, []])[:2]
        if r.closed_at is None or closed_upstream is None:
            not_closed += 1
            continue
        latencies.append((closed_upstream - r.closed_at) / 1e6)
        after += sum(1 for t in sends if t > r.closed_at)
    return {
        "streams": n,
        "close_ms_p50": percentile(latencies, 50),
        "close_ms_p99": percentile(latencies, 99),
        "close_ms_max": max(latencies, default=float("nan")),
        "deltas_after_close": after,
        "not_closed": not_closed,
        "errors": sum(r.error is not None for r in results),
    }


async def cancellation_paced(relay, upstream, scale: float) -> dict:
    """`cancel` with the 200 streams opened over 8 s instead of 0.5 s: 25 a second, which
    one worker opens without falling behind (400 a second saturate it: the closes then
    wait in the event loop's queue behind the openings)."""
    return await cancellation(relay, upstream, scale, ramp=8.0)


async def idle_memory(relay, upstream, scale: float) -> dict:
    await warm(relay)
    n = max(1, int(1000 * scale))
    gc.collect()
    await asyncio.sleep(0.5)
    before = relay.rss()
    async with stalled_streams(relay.port, n, "idle"):
        held = relay.rss()
    return {
        "streams": n,
        "rss_before_mb": before / 2**20,
        "rss_held_mb": held / 2**20,
        "kb_per_stream": (held - before) / n / 1024,
    }


async def long_answer(relay, upstream, scale: float) -> dict:
    await warm(relay)
    n = 20_000
    marks: dict[int, float] = {}

    def on_delta(count: int) -> None:
        if count in (2000, 4000, 18000, 20000):
            marks[count] = relay.cpu()

    # Paced (2,000 deltas/s, ~10 s), so no relay is saturated and no buffer between it
    # and this client fills: both windows are measured in the same steady state.
    r = await stream(relay.port, "long", n, 0.0005, on_delta=on_delta)
    if len(marks) < 4:
        return {"deltas": r.deltas, "errors": 1}
    early = (marks[4000] - marks[2000]) / 2000 * 1e6
    late = (marks[20000] - marks[18000]) / 2000 * 1e6
    return {
        "deltas": r.deltas,
        "cpu_us_per_delta_at_2k": early,
        "cpu_us_per_delta_at_20k": late,
        "ratio_20k_to_2k": late / early,
        "errors": int(r.error is not None),
    }


ALL = {
    "latency": latency,
    "conc500": concurrency_500,
    "conc500ui": concurrency_500_ui,
    "conc500r": concurrency_500_resumable,
    "conc1000": concurrency_1000,
    "throughput": throughput,
    "chats": short_chats,
    "cancel": cancellation,
    "cancel8s": cancellation_paced,
    "idle": idle_memory,
    "long": long_answer,
}
