"""What OpenTelemetry costs a chat: `uv run python -m bench.otel [--rounds R] [--scale S]`.

The `chats` scenario's chat (one delta, 10 at a time) against two relays: one without any
OTEL_* variable, and one exporting traces and metrics over OTLP/HTTP, with the SDK's
defaults, to a sink in this process (which answers every export with an empty 200 on a
kept-alive connection, as a collector does). Each round starts both afresh (taking turns at
starting first) and sends each 1,000 chats in batches of 50, the two taking turns batch by
batch, so the shared machine's drift weighs on both alike; both relays' CPU is read over the
same window, which ends after the batch processor's next scheduled export, so every span of
the round is exported in it. A round's figure is the ratio on/off of CPU per chat; the result
is the median over rounds.

On a machine of two cores both relays run on the second core, and this process (the load)
and the upstream on the first: a relay sharing its core with the load varied by ±20% from
one round to the next. Off against off (`--on OTEL_SDK_DISABLED=true`), rounds range over
0.93-1.04 and the median is 1.005.

`--parts` times, in this process, each part of that cost per chat, the SDK's way and the
relay's (app/spans.py, app/histograms.py, app/otlp.py), the fastest of seven runs: making
the two spans (the request's SERVER span and the upstream request's CLIENT span, with the
relay's attributes), the four measurements, and encoding the spans for OTLP.

Measured: +7.1% and +9.6% CPU per chat (12 rounds each), +8.5% and +10.6% (8 rounds each):
+8.7% over the 40 rounds. It was +34% with the SDK doing all of it.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import uvloop

from bench import scenarios
from bench.loadgen import stream
from bench.run import Proc, free_port, relay_factories, start_upstream


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps nothing, and keeps its connections open as a real
    one does (HTTP/1.1): a new connection per export would be the sink's cost, not ours."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def interleaved(
    off: Proc, on: Proc, n: int, tail: float, batch: int = 50
) -> tuple[float, float]:
    """CPU ms per chat of each relay over the same window: `n` chats each, sent in batches
    of `batch` (10 at a time), the two relays taking turns batch by batch, so a drift of
    the shared machine longer than a batch (a fraction of a second) weighs on both alike."""
    await scenarios.warm(off)
    await scenarios.warm(on)
    cpu0 = off.cpu(), on.cpu()
    gate = asyncio.Semaphore(10)

    async def chat(relay: Proc, i: int) -> None:
        async with gate:
            result = await stream(relay.port, f"chat-{i}", 1, 0.0)
        assert result.error is None, result.error

    for first in range(0, n, batch):
        pair = (off, on) if first // batch % 2 == 0 else (on, off)
        for relay in pair:
            await asyncio.gather(*(chat(relay, i) for i in range(first, min(n, first + batch))))
    await asyncio.sleep(tail)  # the last exports
    return (off.cpu() - cpu0[0]) / n * 1e3, (on.cpu() - cpu0[1]) / n * 1e3  # warm-ups before


def pinned(start, env: dict[str, str] | None, cores: set[int], load: set[int]) -> Proc:
    """A relay started on `cores` (a child inherits them), then this process back on `load`."""
    os.sched_setaffinity(0, cores)
    try:
        return start(free_port(), env)
    finally:
        os.sched_setaffinity(0, load)


def _chat_spans(web, relay, i: int) -> None:
    """A chat's two spans, with the relay's attributes: the request's and the upstream's."""
    from opentelemetry.trace import SpanKind, set_span_in_context

    server = {"server.address": "127.0.0.1", "server.port": 8000}
    request = web.start_span(
        "POST",
        None,
        SpanKind.SERVER,
        {"url.scheme": "http", "http.request.method": "POST", "url.path": "/api/chat"}
        | {"network.protocol.version": "1.1", **server},
    )
    chat = relay.start_span(
        "chat claude-x",
        set_span_in_context(request),
        SpanKind.CLIENT,
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic"}
        | {"gen_ai.request.model": "claude-x", "gen_ai.request.stream": True, **server}
        | {"gen_ai.request.max_tokens": 1024, "gen_ai.conversation.id": f"chat-{i}"},
    )
    chat.set_attributes(
        {"gen_ai.response.id": f"msg_{i}", "gen_ai.response.model": "claude-x"}
        | {"gen_ai.response.finish_reasons": ["end_turn"], "gen_ai.usage.input_tokens": i}
        | {"gen_ai.usage.output_tokens": 5, "gen_ai.usage.cache_read.input_tokens": 0}
        | {"gen_ai.usage.cache_creation.input_tokens": 0}
        | {"gen_ai.response.time_to_first_chunk": 0.004 + i / 1e5}
    )
    chat.end()
    request.update_name("POST /api/chat")
    request.set_attributes({"http.route": "/api/chat", "http.response.status_code": 200})
    request.end()


def parts() -> dict[str, float]:
    """µs per chat, in this process, of each part tracing and metrics add, the SDK's way and
    the relay's: the two spans, the four measurements, and encoding the spans for OTLP."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from app import spans
    from app.genai import SCHEMA_URL, SECONDS_BUCKETS, TOKEN_BUCKETS
    from app.histograms import Metrics
    from app.otlp import encode

    keep = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(SimpleSpanProcessor(keep))
    sdk = [provider.get_tracer(n, schema_url=SCHEMA_URL) for n in ("web", "relay")]
    ours = [spans.tracer(provider, n, SCHEMA_URL) for n in ("web", "relay")]

    def best(run, per: int = 100) -> float:  # `run` does `per` chats' worth
        return round(min(timeit.repeat(run, number=10, repeat=7)) / 10 / per * 1e6, 1)

    def chats(tracers) -> None:
        for i in range(100):
            _chat_spans(*tracers, i)
        keep.clear()

    found = {"sdk_spans_us": best(lambda: chats(sdk)), "app_spans_us": best(lambda: chats(ours))}
    for i in range(100):  # a batch of 100 chats' spans, as the batch processor hands them
        _chat_spans(*sdk, i)
    batch = keep.get_finished_spans()
    found["sdk_encoder_us"] = best(lambda: encode_spans(batch).SerializeToString())
    found["app_otlp_us"] = best(lambda: encode(batch))

    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("relay")
    metrics = Metrics(OTLPMetricExporter(), Resource.create(), "relay", SCHEMA_URL)
    kinds = (("t", TOKEN_BUCKETS), ("d", SECONDS_BUCKETS), ("f", SECONDS_BUCKETS))
    instruments = {
        "sdk_metrics_us": [
            meter.create_histogram(n, explicit_bucket_boundaries_advisory=b) for n, b in kinds
        ],
        "app_metrics_us": [metrics.histogram(n, "", "", b) for n, b in kinds],
    }
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic"} | {
        "gen_ai.request.model": "claude-x",
        "server.address": "127.0.0.1",
        "server.port": 8000,
    }

    def measure(tokens, duration, first) -> None:
        for i in range(100):
            tokens.record(12 + i, {**attributes, "gen_ai.token.type": "input"})
            tokens.record(5, {**attributes, "gen_ai.token.type": "output"})
            duration.record(0.05 + i / 1e4, attributes)
            first.record(0.004, attributes)

    for name, made in instruments.items():
        found[name] = best(lambda made=made: measure(*made))
    metrics.stopped.set()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--scale", type=float, default=1.0, help="of the 1,000 chats")
    parser.add_argument(
        "--on", action="append", default=[], metavar="NAME=VALUE", help="more OTEL_* for on"
    )
    parser.add_argument("--parts", action="store_true", help="time each part in process")
    args = parser.parse_args()
    if args.parts:
        print(json.dumps(parts()))
        return
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    on_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        **dict(setting.split("=", 1) for setting in args.on),
    }
    costs: dict[str, list[float]] = {"off": [], "on": []}
    # The window ends after the batch processor's next scheduled export (the SDK's 5 s
    # unless OTEL_BSP_SCHEDULE_DELAY says): every span of the round is exported in it.
    tail = int(on_env.get("OTEL_BSP_SCHEDULE_DELAY", "5000")) / 1000 + 0.5
    cores = sorted(os.sched_getaffinity(0))
    relay_cores, load_cores = {cores[-1]}, set(cores[:-1]) or {cores[-1]}
    os.sched_setaffinity(0, load_cores)
    upstream = start_upstream()  # with the load
    product = relay_factories(upstream.port, Path(tempfile.mkdtemp(prefix="bench-otel-")))[
        "product"
    ]
    try:
        for i in range(args.rounds):
            if i % 2 == 0:  # which starts first takes turns too
                off = pinned(product, None, relay_cores, load_cores)
                on = pinned(product, on_env, relay_cores, load_cores)
            else:
                on = pinned(product, on_env, relay_cores, load_cores)
                off = pinned(product, None, relay_cores, load_cores)
            try:
                n = max(50, int(1000 * args.scale))
                figures = uvloop.run(interleaved(off, on, n, tail))
            finally:
                off.stop()
                on.stop()
            for name, figure in zip(("off", "on"), figures, strict=True):
                costs[name].append(figure)
            print(f"round {i + 1}: off {figures[0]:.3f} ms, on {figures[1]:.3f} ms")
    finally:
        upstream.stop()
        sink.shutdown()
    ratios = [on_ / off for on_, off in zip(costs["on"], costs["off"], strict=True)]
    report = {
        "cpu_ms_per_chat": {k: [round(v, 3) for v in vs] for k, vs in costs.items()},
        "ratios": [round(r, 3) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
    }
    print(json.dumps(report))
    print(f"tracing and metrics on: {report['median_ratio'] - 1:+.1%} CPU per chat (median)")


if __name__ == "__main__":
    main()
