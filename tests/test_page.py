"""The page over plain HTTP: what is served, with which headers; and the page's SSE parser
under node's test runner."""

import os
import shutil
import subprocess
from pathlib import Path

import httpx2
import pytest

from app.web import CSP

ROOT = Path(__file__).resolve().parent.parent


def test_page_and_its_headers(relay):
    r = httpx2.get(f"{relay.url}/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in CSP
    assert "unsafe-inline" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-cache"
    assert httpx2.head(f"{relay.url}/").status_code == 200


def test_every_response_carries_the_security_headers(relay):
    for r in (
        httpx2.get(f"{relay.url}/healthz"),
        httpx2.get(f"{relay.url}/nope"),
        httpx2.post(f"{relay.url}/api/chat", content=b"{"),
        httpx2.post(f"{relay.url}/api/chat", json={"message": "hi"}),
    ):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["content-security-policy"] == CSP, r.url


def test_static_cache_headers(relay):
    own = httpx2.get(f"{relay.url}/static/app.js")
    assert own.status_code == 200
    assert own.headers["content-type"].startswith("text/javascript")
    assert own.headers["cache-control"] == "no-cache"
    again = httpx2.get(f"{relay.url}/static/app.js", headers={"if-none-match": own.headers["etag"]})
    assert again.status_code == 304
    vendored = httpx2.get(f"{relay.url}/static/vendor/marked-18.2.1.esm.js")
    assert vendored.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_the_page_references_only_its_own_origin():
    for path in [ROOT / "static" / "index.html", *sorted((ROOT / "static").glob("*.js"))]:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path
        assert "<script>" not in text and "style=" not in text, path  # nothing inline
    licenses = {p.name for p in (ROOT / "static" / "vendor").iterdir()}
    assert {"marked.LICENSE", "dompurify.LICENSE"} <= licenses


def test_config_tells_the_page_the_mode_and_the_models(relay, make_relay):
    models = {"models": ["claude-sonnet-5-5"], "default_model": "claude-sonnet-5-5"}
    live = {"mode": "live", "auth": False, "resume": True, **models}
    assert httpx2.get(f"{relay.url}/api/config").json() == live
    demo = make_relay(
        anthropic_api_key=None,
        anthropic_base_url=None,
        relay_token="t",
        resume_window=0,
        allowed_models="claude-a,claude-b",
        default_model="claude-b",
    )
    models = {"models": ["claude-a", "claude-b"], "default_model": "claude-b"}
    expected = {"mode": "demo", "auth": True, "resume": False, **models}
    assert httpx2.get(f"{demo.url}/api/config").json() == expected


def test_sse_parser_under_node():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing")
        pytest.skip("node is not installed")
    result = subprocess.run(
        [node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
