"""The fixtures: the background server loop, the fake upstream, relays under uvicorn, and
the relay's log lines. Helpers they and the tests share are in support.py."""

import asyncio
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_upstream import FakeUpstream
from tests.support import (
    API_KEY,
    CHROMIUM,
    CHROMIUM_ARGS,
    LogLines,
    OtlpReceiver,
    Page,
    RedisServer,
    Relay,
    ServerLoop,
    relay_settings,
    serve,
    start_mcp_http,
    start_relay,
    stop_relay,
    stop_server,
)


@pytest.fixture(scope="session")
def server_loop() -> Iterator[ServerLoop]:
    loop = ServerLoop()
    yield loop

    async def cancel_leftovers() -> None:
        # e.g. sse-starlette's process-wide shutdown watcher
        me = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not me:
                task.cancel()

    loop.run(cancel_leftovers())
    loop.loop.call_soon_threadsafe(loop.loop.stop)


@pytest.fixture(scope="session")
def _upstream(server_loop: ServerLoop) -> FakeUpstream:
    upstream = FakeUpstream()
    server_loop.run(upstream.start())
    return upstream


@pytest.fixture
def upstream(_upstream: FakeUpstream, server_loop: ServerLoop) -> FakeUpstream:
    server_loop.call(_upstream.reset)
    return _upstream


@pytest.fixture
def make_relay(server_loop: ServerLoop, upstream: FakeUpstream) -> Iterator[Callable[..., Relay]]:
    """Start a relay under uvicorn, pointed at the fake upstream, with these settings."""
    started: list[Relay] = []

    def make(server: dict[str, Any] | None = None, **overrides: Any) -> Relay:
        """`server`: uvicorn options; the rest: settings."""
        overrides.setdefault("anthropic_api_key", API_KEY)
        overrides.setdefault("anthropic_base_url", upstream.url)
        relay = server_loop.run(start_relay(relay_settings(**overrides), **(server or {})))
        started.append(relay)
        return relay

    yield make
    for relay in started:
        server_loop.run(stop_relay(relay))


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    return make_relay()


@pytest.fixture
def relay_log() -> Iterator[LogLines]:
    """Everything the relay and uvicorn log while the test runs."""
    handler = LogLines()
    loggers = [logging.getLogger(n) for n in ("chat_relay", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture(scope="module")
def mcp_http(server_loop: ServerLoop) -> Iterator[str]:
    """tests/mcp_server.py over streamable HTTP on 127.0.0.1: its URL."""
    server, url = server_loop.run(start_mcp_http())
    yield url
    server_loop.run(stop_server(server))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    # Lets fixtures see whether their test failed (the browser tests save a screenshot).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def _otlp() -> Iterator[OtlpReceiver]:
    # For the session: a relay flushes to it when it stops, after its test's fixtures.
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def otlp(_otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> OtlpReceiver:
    """An OTLP/HTTP receiver, emptied, and the OTEL_* variables that point the relays the
    test makes at it, with export intervals short enough for a test."""
    _otlp.reset()
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", _otlp.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    return _otlp


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def make_replica(
    upstream: FakeUpstream, tmp_path: Any
) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Start the relay as a process of its own (a replica), pointed at the fake upstream;
    `env`: its settings. Killed when the test ends."""
    started: list[subprocess.Popen] = []

    def make(**env: str) -> tuple[subprocess.Popen, str]:
        settings = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": upstream.url, **env}
        log = tmp_path / f"replica{len(started)}.log"
        process, url = serve({**os.environ, **settings}, log)
        started.append(process)
        return process, url

    yield make
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (`playwright install` cannot download here)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing (.ci/run installs it with apt)")
        pytest.skip("Chromium is not installed: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def chat(browser, make_relay, request):
    """Open the chat page of a new relay (these settings) in a new browser context; the
    test fails on any CSP violation or problem the page had (a screenshot if it failed)."""

    def open_chat(via=None, timezone=None, **settings) -> Page:
        """`timezone`: the browser's (an IANA name), for what the page reads off its clock."""
        viewport = {"width": 900, "height": 700}
        context = browser.new_context(viewport=viewport, timezone_id=timezone)
        page = Page(context.new_page(), make_relay(**settings))
        pages.append(page)
        page.open(via(page.relay) if via else None)
        return page

    pages: list[Page] = []
    yield open_chat
    for page in pages:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
        csp = page.page.evaluate("window.__csp")
        page.page.context.close()
        assert csp == [], f"CSP violations: {csp}"
        assert page.problems == []
