"""`python -m app` (app/__main__.py): a worker per CPU the process may use."""

import os

import httpx2

from app.__main__ import cpus, workers
from tests.support import serve


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


def test_behind_a_proxy_the_app_notes_the_peer_before_the_rewrite(tmp_path):
    """`python -m app` leaves X-Forwarded-For to the app, which notes the socket's peer
    first: so a trusted proxy's user header is believed (uvicorn's own rewrite would have
    made the peer the forwarded address, and the header would never be)."""
    env = {
        **os.environ,
        "WEB_CONCURRENCY": "1",
        "ANTHROPIC_API_KEY": "",
        "DEMO_TOKEN_DELAY": "0",
        "TRUSTED_USER_HEADER": "X-Forwarded-User",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    process, url = serve(env, tmp_path / "relay.log", launcher=True)
    try:
        proxied = {"x-forwarded-for": "203.0.113.9", "x-forwarded-user": "alice"}
        body = {"message": "Hi", "max_tokens": 1}
        assert httpx2.post(f"{url}/api/chat", json=body, headers=proxied).status_code == 200
        assert httpx2.post(f"{url}/api/chat", json=body).status_code == 401
    finally:
        process.terminate()
        process.wait(10)
    assert '"client": "user:alice"' in (tmp_path / "relay.log").read_text()
