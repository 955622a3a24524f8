"""What OpenTelemetry costs a chat: `uv run python -m bench.otel [--rounds R] [--scale S]`.

The `chats` scenario (1,000 one-delta chats, 10 at a time) against a relay without any
OTEL_* variable and against one exporting traces and metrics over OTLP/HTTP to a sink in
this process (which answers every export with an empty 200), in paired rounds: each round
runs both on fresh relays, taking turns at going first, and its ratio is on/off, so the
shared machine's drift between rounds cancels out. The figure is the median ratio.

Each relay's CPU is counted from before the scenario to a second after it, so the batch
processor's exports of the round's spans (every 200 ms here, `OTEL_BSP_SCHEDULE_DELAY`) are
in it; the same second is counted without OpenTelemetry.
"""

import argparse
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import uvloop

from bench import scenarios
from bench.run import Proc, free_port, relay_factories, start_upstream


class Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps nothing."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def one(relay: Proc, upstream: Proc, scale: float) -> float:
    """CPU ms per chat, the exports after it included."""
    cpu0 = relay.cpu()
    figures = uvloop.run(scenarios.short_chats(relay, upstream, scale))
    assert figures["errors"] == 0, figures
    time.sleep(1.0)
    return (relay.cpu() - cpu0) / (figures["chats"] + 4) * 1e3  # + the 4 warm-up chats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--scale", type=float, default=1.0, help="of the 1,000 chats")
    parser.add_argument(
        "--on", action="append", default=[], metavar="NAME=VALUE", help="more OTEL_* for on"
    )
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    upstream = start_upstream()
    product = relay_factories(upstream.port, Path(tempfile.mkdtemp(prefix="bench-otel-")))[
        "product"
    ]
    on = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **dict(setting.split("=", 1) for setting in args.on),
    }
    costs: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for i in range(args.rounds):
            for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
                relay = product(free_port(), on if name == "on" else None)
                try:
                    costs[name].append(one(relay, upstream, args.scale))
                finally:
                    relay.stop()
            print(f"round {i + 1}: off {costs['off'][-1]:.3f} ms, on {costs['on'][-1]:.3f} ms")
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
