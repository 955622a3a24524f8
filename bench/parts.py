"""What the UI message stream and resumable answers add per delta:
`uv run python -m bench.parts [--deltas N] [--rounds R]`.

It also times the translation alone per upstream event (`translate_us`): a text delta
without tools, a text delta with tools in play (the turn's content is kept: one append more),
and a tool's input delta, in both dialects: a tool delta should cost what a text delta costs.

The end-to-end scenarios (conc500, conc500ui, conc500r) vary by 10-30% between runs on a
shared machine, more than the difference they would show. This isolates the one part that
differs: the app's own work per delta (translating an upstream event into the dialect's
frame, and handing it to the reader through the outbox, or through a resumable stream's
journal), with the reader in another task as in the relay. The four are measured in turns,
five rounds, and each figure is the median.

With `--rounds R`, it also runs conc500, conc500ui and conc500r end to end R times, in a
rotating order (a fresh relay each, as `bench.run` does), and gives the median of each
round's ratio to plain: paired runs, so the machine's drift between rounds cancels out.
"""

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from app.dialect import Answer, Dialect
from app.frames import RELAY
from app.journal import Journal
from app.outbox import Outbox
from app.translate import translate
from app.uistream import UI
from bench import scenarios
from bench.run import free_port, relay_factories, start_upstream

EVENT = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello th"}}'
TOOL_START = b'{"index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}'
TEXT_START = b'{"index":0,"content_block":{"type":"text","text":""}}'
TOOL_EVENT = (
    b'{"type":"content_block_delta","index":0,'
    b'"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": "}}'
)
# name: (tools in play, the block's start, the delta event)
EVENTS = {
    "text": (False, TEXT_START, EVENT),
    "text, tools in play": (True, TEXT_START, EVENT),
    "tool input": (True, TOOL_START, TOOL_EVENT),
}
PARTS = {
    "plain": (RELAY, Outbox),
    "ui": (UI, Outbox),
    "resumable": (RELAY, Journal),
    "ui+resumable": (UI, Journal),
}


async def per_delta(dialect: Dialect, box: type[Outbox] | type[Journal], n: int) -> float:
    """CPU µs per delta: translate, hand over, and the reader's side."""
    answer, outbox = Answer("live", dialect, False), box()
    frames = outbox.follow(outbox.attach()) if isinstance(outbox, Journal) else outbox.frames()

    async def read() -> None:
        async for _ in frames:
            pass

    reader = asyncio.ensure_future(read())
    started = time.process_time()
    for _ in range(n):
        await outbox.put(translate(answer, b"content_block_delta", EVENT))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the reader sends it, as it would while the upstream is read
    outbox.close()
    await reader
    return (time.process_time() - started) / n * 1e6


async def measure(n: int) -> dict[str, float]:
    runs: dict[str, list[float]] = {name: [] for name in PARTS}
    await per_delta(RELAY, Outbox, n)  # warm: the first round would pay for it
    for _ in range(5):
        for name, (dialect, box) in PARTS.items():
            runs[name].append(await per_delta(dialect, box, n))
    return {name: round(statistics.median(v), 2) for name, v in runs.items()}


def translate_us(n: int) -> dict[str, float]:
    """CPU µs per upstream event through the translation alone, by kind and dialect
    (medians of five rounds)."""
    runs: dict[str, list[float]] = {}
    for _ in range(5):
        for dialect_name, dialect in (("own", RELAY), ("ui", UI)):
            for kind, (tools, start, event) in EVENTS.items():
                answer = Answer("live", dialect, tools=tools)
                translate(answer, b"content_block_start", start)
                translate(answer, b"content_block_delta", event)  # opens the part
                started = time.process_time()
                for _ in range(n):
                    translate(answer, b"content_block_delta", event)
                spent = (time.process_time() - started) / n * 1e6
                runs.setdefault(f"{kind} ({dialect_name})", []).append(spent)
    return {name: round(statistics.median(v), 3) for name, v in runs.items()}


END_TO_END = {
    "plain": scenarios.concurrency_500,
    "ui": scenarios.concurrency_500_ui,
    "resumable": scenarios.concurrency_500_resumable,
}


def end_to_end(rounds: int, scale: float) -> dict[str, float]:
    """The median over `rounds` of each round's CPU per delta against plain's."""
    upstream = start_upstream()
    tmp = Path(tempfile.mkdtemp(prefix="bench-parts-"))
    product = relay_factories(upstream.port, tmp)["product"]
    names = list(END_TO_END)
    ratios: dict[str, list[float]] = {name: [] for name in names[1:]}
    try:
        for i in range(rounds):
            cost = {}
            first = i % len(names)  # each goes first in turn
            for name in names[first:] + names[:first]:
                relay = product(free_port())
                try:
                    figures = uvloop.run(END_TO_END[name](relay, upstream, scale))
                finally:
                    relay.stop()
                cost[name] = figures["cpu_us_per_delta"]
            for name in ratios:
                ratios[name].append(cost[name] / cost["plain"])
    finally:
        upstream.stop()
    return {name: round(statistics.median(v), 3) for name, v in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deltas", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=0, help="end-to-end rounds (0: none)")
    parser.add_argument("--scale", type=float, default=1.0, help="of the 500 streams")
    args = parser.parse_args()
    figures = uvloop.run(measure(args.deltas))
    translation = translate_us(args.deltas)
    report: dict[str, object] = {"us_per_delta": figures, "translate_us": translation}
    if args.rounds:
        report["end_to_end_vs_plain"] = end_to_end(args.rounds, args.scale)
    print(json.dumps(report))
    plain = figures["plain"]
    for name, value in figures.items():
        print(f"{name}: {value:.2f} µs per delta, {value - plain:+.2f} µs against plain")
    for name, value in translation.items():
        print(f"translate, {name}: {value:.3f} µs per event")
    for name, ratio in report.get("end_to_end_vs_plain", {}).items():  # type: ignore[union-attr]
        print(f"{name}, end to end: {ratio - 1:+.1%} CPU per delta (median of paired rounds)")


if __name__ == "__main__":
    main()
