"""The benchmark's table: one row per relay, ratios to the floor."""

import math


def _fmt(value: object, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


COLUMNS = [
    # (heading, scenario, key, digits, ratio to the floor?)
    ("lat p50 ms", "latency", "added_ms_p50", 2, False),
    ("lat p99 ms", "latency", "added_ms_p99", 2, False),
    ("1k: deltas/s", "conc1000", "deltas_per_s", 0, False),
    ("1k: lat p99 ms", "conc1000", "added_ms_p99", 1, False),
    ("1k: TTFB p99 ms", "conc1000", "ttfb_ms_p99", 1, False),
    ("1k: CPU µs/delta", "conc1000", "cpu_us_per_delta", 1, True),
    ("1k: peak RSS MB", "conc1000", "peak_rss_mb", 0, False),
    ("1k: errors", "conc1000", "errors", 0, False),
    ("500: CPU µs/delta", "conc500", "cpu_us_per_delta", 1, True),
    ("500 UI: CPU µs/delta", "conc500ui", "cpu_us_per_delta", 1, True),
    ("500 resumable: CPU µs/delta", "conc500r", "cpu_us_per_delta", 1, True),
    ("thru: deltas/s", "throughput", "deltas_per_s", 0, False),
    ("thru: CPU µs/delta", "throughput", "cpu_us_per_delta", 1, True),
    ("chat: CPU ms", "chats", "cpu_ms_per_chat", 2, True),
    ("chat: TTFB p99 ms", "chats", "ttfb_ms_p99", 1, False),
    ("cancel p50 ms", "cancel", "close_ms_p50", 2, False),
    ("cancel p99 ms", "cancel", "close_ms_p99", 2, False),
    ("sent after close", "cancel", "deltas_after_close", 0, False),
    ("cancel over 8 s p99 ms", "cancel8s", "close_ms_p99", 2, False),
    ("KB/stalled stream", "idle", "kb_per_stream", 1, False),
    ("CPU 20k/2k", "long", "ratio_20k_to_2k", 2, False),
]


def print_table(results: dict[str, dict], meta: dict) -> None:
    floor = results.get(meta["floor"], {})
    columns = [c for c in COLUMNS if any(c[1] in r for r in results.values())]
    print(f"\n{meta['date']}, {meta['machine']}; floor: {meta['floor']}; {meta['seconds']} s\n")
    print("| relay | " + " | ".join(c[0] for c in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, scenarios in results.items():
        cells = []
        for _, scenario, key, digits, ratio in columns:
            value = scenarios.get(scenario, {}).get(key)
            cell = _fmt(value, digits)
            base = floor.get(scenario, {}).get(key)
            if ratio and value is not None and base:
                cell += f" ({value / base:.1f}x)"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |")
    # Keeping up: the share of the floor's delivered rate.
    if "conc1000" in floor:
        print()
        for name, scenarios in results.items():
            if "conc1000" in scenarios:
                share = scenarios["conc1000"]["deltas_per_s"] / floor["conc1000"]["deltas_per_s"]
                extra = scenarios["conc1000"]
                print(
                    f"{name}: {share:.1%} of the floor's rate at 1,000 streams; "
                    f"load generator {extra['loadgen_cpu_pct']:.0f}% of a core, upstream "
                    f"{extra['upstream_cpu_us_per_delta']:.1f} µs/delta"
                )
    # What the UI message stream and resumable answers cost over plain streams, same run.
    for name, scenarios in results.items():
        plain = scenarios.get("conc500", {}).get("cpu_us_per_delta")
        for scenario, what in (("conc500ui", "UI message stream"), ("conc500r", "resumable")):
            other = scenarios.get(scenario, {}).get("cpu_us_per_delta")
            if plain and other:
                print(
                    f"{name}: {what} at 500 streams: {other / plain - 1:+.0%} CPU per delta "
                    "(one run each; `bench.parts --rounds 6` pairs them)"
                )
