"""What OpenTelemetry costs a chat: `uv run python -m bench.otel [--rounds R] [--scale S]`.

The `chats` scenario's chat (one delta, asked 10 at a time) against two relays at once: one
without any OTEL_* variable and one exporting traces and metrics over OTLP/HTTP to a sink in
this process (which answers every export with an empty 200, on a kept-alive connection as a
collector does). Each round sends the same 1,000 chats to both, interleaved, so both relays
see the shared machine in the same state at the same moments; each relay's CPU is read over
the same window, which ends a second after the last chat, so the batch processor's exports
of the round's spans (every 200 ms here, `OTEL_BSP_SCHEDULE_DELAY`) are in it. A round's
figure is the ratio on/off of CPU per chat; the result is the median over rounds, on fresh
relays each round.

`--parts` times, in this process, what the exporter does with a chat's two spans (the
request's SERVER span and the upstream request's CLIENT span, with the relay's attributes):
the SDK's own encoder against app/otlp.py's, per chat, the fastest of seven runs.
"""

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import uvloop

from bench.loadgen import stream
from bench.run import Proc, free_port, relay_factories, start_upstream
from bench.scenarios import warm


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


async def side_by_side(off: Proc, on: Proc, n: int) -> tuple[float, float]:
    """CPU ms per chat of each relay, the same `n` chats sent to both, 10 at a time each."""
    await asyncio.gather(warm(off), warm(on))
    cpu0 = off.cpu(), on.cpu()
    gates = {off.port: asyncio.Semaphore(10), on.port: asyncio.Semaphore(10)}

    async def one(relay: Proc, i: int) -> bool:
        async with gates[relay.port]:
            return (await stream(relay.port, f"chat-{i}", 1, 0.0)).error is None

    # Interleaved: chat i goes to both relays before chat i + 1 goes to either.
    done = await asyncio.gather(*(one(relay, i) for i in range(n) for relay in (off, on)))
    assert all(done), f"{done.count(False)} chats failed"
    await asyncio.sleep(1.0)
    chats = n + 4  # + the 4 warm-up chats
    return (off.cpu() - cpu0[0]) / chats * 1e3, (on.cpu() - cpu0[1]) / chats * 1e3


def parts() -> dict[str, float]:
    """µs per chat to encode its two spans for OTLP: the SDK's encoder and app/otlp.py's."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, set_span_in_context

    from app.otlp import encode

    keep = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(SimpleSpanProcessor(keep))
    web, relay = provider.get_tracer("fastapi", "0.165.0"), provider.get_tracer("chat_relay")
    server = {"server.address": "127.0.0.1", "server.port": 8000}
    for i in range(100):  # a batch of 100 chats' spans, as the batch processor hands them
        request = web.start_span("POST /api/chat", kind=SpanKind.SERVER)
        request.set_attributes(
            {"url.scheme": "http", "http.request.method": "POST", "url.path": "/api/chat"}
            | {"network.protocol.version": "1.1", "http.route": "/api/chat"}
            | {"http.response.status_code": 200, **server}
        )
        chat = relay.start_span("chat claude-x", set_span_in_context(request), SpanKind.CLIENT)
        chat.set_attributes(
            {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic"}
            | {"gen_ai.request.model": "claude-x", "gen_ai.request.stream": True, **server}
            | {"gen_ai.request.max_tokens": 1024, "gen_ai.conversation.id": f"chat-{i}"}
            | {"gen_ai.response.id": f"msg_{i}", "gen_ai.response.model": "claude-x"}
            | {"gen_ai.response.finish_reasons": ["end_turn"], "gen_ai.usage.input_tokens": i}
            | {"gen_ai.usage.output_tokens": 5, "gen_ai.usage.cache_read.input_tokens": 0}
            | {"gen_ai.usage.cache_creation.input_tokens": 0}
            | {"gen_ai.response.time_to_first_chunk": 0.004 + i / 1e5}
        )
        chat.end()
        request.end()
    spans = keep.get_finished_spans()

    def best(encoder) -> float:
        return min(timeit.repeat(lambda: encoder(spans), number=10, repeat=7)) / 10 / 100 * 1e6

    return {
        "sdk_encoder_us_per_chat": round(best(lambda s: encode_spans(s).SerializeToString()), 1),
        "app_otlp_us_per_chat": round(best(encode), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--scale", type=float, default=1.0, help="of the 1,000 chats")
    parser.add_argument(
        "--on", action="append", default=[], metavar="NAME=VALUE", help="more OTEL_* for on"
    )
    parser.add_argument("--parts", action="store_true", help="time the span encoders only")
    args = parser.parse_args()
    if args.parts:
        print(json.dumps(parts()))
        return
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    upstream = start_upstream()
    product = relay_factories(upstream.port, Path(tempfile.mkdtemp(prefix="bench-otel-")))[
        "product"
    ]
    on_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **dict(setting.split("=", 1) for setting in args.on),
    }
    costs: dict[str, list[float]] = {"off": [], "on": []}
    n = max(10, int(1000 * args.scale))
    try:
        for i in range(args.rounds):
            off, on = product(free_port(), None), product(free_port(), on_env)
            try:
                figures = uvloop.run(side_by_side(off, on, n))
            finally:
                off.stop()
                on.stop()
            for name, figure in zip(("off", "on"), figures, strict=True):
                costs[name].append(figure)
            print(f"round {i + 1}: off {figures[0]:.3f} ms, on {figures[1]:.3f} ms")
            time.sleep(0.2)
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
