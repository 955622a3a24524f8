"""The network harness: one background event loop hosts the fake upstream and real uvicorn
servers running the relay; tests talk to them over real sockets on 127.0.0.1."""

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
import pytest
import uvicorn
import uvloop

from app.config import Settings
from app.main import create_app
from tests.fake_upstream import FakeUpstream

T = TypeVar("T")
API_KEY = "sk-ant-test-SECRET-0123456789"


class ServerLoop:
    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the loop's thread, where the servers' state lives."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll `predicate` on the loop's thread until it holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def tasks(self) -> int:
        return self.call(lambda: len(asyncio.all_tasks(self.loop)))

    def settles_to(self, baseline: int, timeout: float = 2.0) -> bool:
        """Whether the loop gets back to `baseline` tasks: nothing was left running."""
        return self.wait_for(lambda: len(asyncio.all_tasks(self.loop)) <= baseline, timeout)


@dataclass
class Relay:
    url: str
    server: uvicorn.Server
    settings: Settings

    @property
    def state(self) -> Any:
        return self.server.config.app.state


def test_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ping_interval": 15,
        "stream_idle_timeout": 5,
        "upstream_retry_backoff": 0.01,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def start_relay(settings: Settings, **options: Any) -> Relay:
    options.setdefault("log_level", "warning")
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, **options)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    server.task = task  # type: ignore[attr-defined]
    return Relay(f"http://127.0.0.1:{port}", server, settings)


async def stop_relay(relay: Relay) -> None:
    relay.server.should_exit = True
    await relay.server.task  # type: ignore[attr-defined]


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
        relay = server_loop.run(start_relay(test_settings(**overrides), **(server or {})))
        started.append(relay)
        return relay

    yield make
    for relay in started:
        server_loop.run(stop_relay(relay))


@pytest.fixture
def relay(make_relay: Callable[..., Relay]) -> Relay:
    return make_relay()


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def chats(self) -> list[dict[str, Any]]:
        """The relay's one JSON line per stream."""
        return [json.loads(line) for line in self.lines if line.startswith('{"event": "chat"')]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


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


def parse_frames(raw: str) -> list[tuple[str, Any]]:
    """The test's own reading of an SSE body: (event, parsed data), comments as (":", text)."""
    frames: list[tuple[str, Any]] = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            frames.append((":", "\n".join(line[1:].strip() for line in lines)))
            continue
        fields = dict(line.split(": ", 1) for line in lines if not line.startswith(":"))
        frames.append((fields["event"], json.loads(fields["data"])))
    return frames


@dataclass
class Reply:
    status: int
    headers: httpx2.Headers
    text: str

    @property
    def frames(self) -> list[tuple[str, Any]]:
        return parse_frames(self.text)

    @property
    def events(self) -> list[str]:
        return [name for name, _ in self.frames if name != ":"]

    @property
    def text_out(self) -> str:
        return "".join(data["text"] for name, data in self.frames if name == "delta")

    def json(self) -> Any:
        return json.loads(self.text)


def post_chat(relay: Relay, body: Any = None, *, content: bytes | None = None, **kw: Any) -> Reply:
    if content is None:
        content = json.dumps({"message": "Hi"} if body is None else body).encode()
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    # trust_env=False: a test that sets HTTP_PROXY for the relay must not proxy itself.
    with httpx2.Client(timeout=30, trust_env=False) as client:
        r = client.post(f"{relay.url}/api/chat", content=content, headers=headers, **kw)
        return Reply(r.status_code, r.headers, r.text)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    # Lets fixtures see whether their test failed (the browser tests save a screenshot).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class CuttableProxy:
    """A TCP proxy in front of the relay whose connections the test can cut, as a lost
    network would: the client sees its connection reset mid-answer."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.transports: list[asyncio.Transport] = []
        self.url = ""

    async def start(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.transports += [writer.transport, up_writer.transport]  # type: ignore[list-item]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for transport in self.transports:
            transport.abort()
        self.transports.clear()
