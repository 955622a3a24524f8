"""What the UI message stream and resumable answers add per delta, measured in-process:
`uv run python -m bench.parts [--deltas N]`.

The end-to-end scenarios (conc500, conc500ui, conc500r) vary by 10-15% between runs on a
shared machine, more than the difference they would show. This isolates the one part that
differs: the app's own work per delta (translating an upstream event into the dialect's
frame, and handing it to the reader through the outbox, or through a resumable stream's
journal), with the reader in another task as in the relay. The four are measured in turns,
five rounds, and each figure is the median.
"""

import argparse
import asyncio
import json
import statistics
import time

import uvloop

from app.frames import RELAY
from app.journal import Journal
from app.outbox import Outbox
from app.translate import Answer, Dialect, translate
from app.uistream import UI

EVENT = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello th"}}'
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deltas", type=int, default=50_000)
    figures = uvloop.run(measure(parser.parse_args().deltas))
    print(json.dumps({"us_per_delta": figures}))
    plain = figures["plain"]
    for name, value in figures.items():
        print(f"{name}: {value:.2f} µs per delta, {value - plain:+.2f} µs against plain")


if __name__ == "__main__":
    main()
