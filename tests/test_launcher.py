"""`python -m app` (app/__main__.py): a worker per CPU the process may use."""

import os

from app.__main__ import cpus, workers


def test_cpus_are_the_affinity_bounded_by_the_cgroup_quota(tmp_path):
    mine = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    for text, expected in (
        ("max 100000\n", mine),
        ("50000 100000\n", 1),  # half a core still gets a worker
        ("100000 100000\n", 1),
        ("150000 100000\n", min(mine, 2)),  # 1.5 cores: rounded up
        ("6400000 100000\n", mine),  # a quota above the cores it may run on
        ("garbage\n", mine),
    ):
        cpu_max.write_text(text)
        assert cpus(cpu_max) == expected, text
    assert cpus(tmp_path / "missing") == mine


def test_web_concurrency_wins(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert workers() == 3
    monkeypatch.setenv("WEB_CONCURRENCY", "")
    assert workers() == cpus()
