"""The benchmark still runs, with its one command, at a tiny scale: every relay starts,
every scenario yields its figures, nobody errs. (The figures themselves are not judged
here: timings are for bench runs, not tests.)"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_bench_runs(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--scale",
            "0.02",
            "--out",
            str(out),
            "--relays",
            "product",
            "naive",
            "floor-asyncio",
            "--scenarios",
            "latency",
            "conc500",
            "conc500ui",
            "conc500r",
            "cancel",
            "idle",
            "chats",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| product |" in result.stdout  # the table
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"product", "naive", "floor-asyncio"}
    for relay, scenarios in results.items():
        assert scenarios["latency"]["deltas"] == 300, relay
        assert scenarios["conc500"]["errors"] == 0, (relay, scenarios["conc500"])
        assert scenarios["conc500"]["deltas"] == 10 * 100
        assert scenarios["conc500"]["cpu_us_per_delta"] > 0
        assert scenarios["cancel"]["not_closed"] == 0, relay
        assert isinstance(scenarios["idle"]["kb_per_stream"], float)
        assert scenarios["chats"]["errors"] == 0 and scenarios["chats"]["cpu_ms_per_chat"] > 0
    assert results["product"]["cancel"]["deltas_after_close"] == 0
    ui = results["product"]["conc500ui"]  # the AI SDK's UI message stream
    assert ui["errors"] == 0 and ui["deltas"] == 10 * 100, ui
    assert "skipped" in results["naive"]["conc500ui"]
    resumable = results["product"]["conc500r"]  # numbered frames, kept for the window
    assert resumable["errors"] == 0 and resumable["deltas"] == 10 * 100, resumable
    assert "skipped" in results["naive"]["conc500r"]
    assert "product: resumable at 500 streams:" in result.stdout


def test_the_resume_bench_runs():
    result = subprocess.run(
        [sys.executable, "-m", "bench.resume", "--streams", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = dict(line.split("  ", 1) for line in result.stdout.splitlines() if "{" in line)
    figures = {name.strip(): json.loads(value) for name, value in lines.items()}
    for name in ("resume, one process", "resume, two replicas + Redis"):
        assert figures[name]["complete"] == 10, figures[name]  # every text, exactly once
        assert figures[name]["upstream_requests"] == 10, figures[name]  # one per answer
    assert isinstance(figures["detached (resumable)"]["rss_per_stream_kb"], float)


def test_the_fault_run_passes():
    # bench/faults.py, shortened: two replicas, Redis and the upstream stand-in through a
    # hung Redis, an empty restart, maxmemory and a killed replica. Its own checks decide.
    result = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--seconds", "20", "--rate", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(result.stdout[-3000:])
    report = json.loads(result.stdout)
    assert report["failures"] == [], report["failures"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert report["outcomes"].get("done", 0) >= report["answers"] // 2
    assert len(report["faults"]) == 4


def run_bench(module: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[0])


def test_the_parts_bench_runs():
    report = run_bench("bench.parts", "--deltas", "500", "--rounds", "1", "--scale", "0.02")
    figures = report["us_per_delta"]
    assert set(figures) == {"plain", "ui", "resumable", "ui+resumable"}
    assert all(value > 0 for value in figures.values()), figures
    assert set(report["end_to_end_vs_plain"]) == {"ui", "resumable"}
    assert all(ratio > 0 for ratio in report["end_to_end_vs_plain"].values()), report


def test_the_heap_bench_names_the_owners_of_an_idle_stream():
    figures = run_bench("bench.heap", "--streams", "20")
    assert figures["streams"] == 20 and figures["kb_per_stream"] > 0, figures
    owners = figures["by_owner_kb"]
    # Each held stream has the app's Stream, sse-starlette's response, aiohttp's upstream.
    assert owners["app"] > 0 and owners["sse_starlette"] > 0 and owners["aiohttp"] > 0, owners
