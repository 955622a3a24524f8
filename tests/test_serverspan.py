"""app/serverspan.py: the request's SERVER span, in process (a FastAPI app and its ASGI calls,
spans kept in memory): its name and attributes, the caller's traceparent continued, the span
current while the app runs, failures, and the paths left untraced."""

import asyncio
import contextlib

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON, Sampler
from opentelemetry.trace import SpanKind, StatusCode
from starlette.responses import PlainTextResponse

from app.serverspan import ServerSpans

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


def _app(sampler: Sampler | None = None) -> tuple[FastAPI, InMemorySpanExporter]:
    keep = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(keep))
    app = FastAPI()
    inner = provider.get_tracer("test")

    @app.post("/api/chat/{stream_id}")
    async def chat(stream_id: str) -> PlainTextResponse:
        inner.start_span("child").end()  # a child of whatever span is current
        return PlainTextResponse("ok")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("no")

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.add_middleware(ServerSpans, tracer_provider=provider, untraced=frozenset({"/healthz"}))
    return app, keep


def _call(app: FastAPI, method: str, path: str, headers: list | None = None) -> list[dict]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"relay.example"), *(headers or [])],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> None:  # any other exception fails the test
        with contextlib.suppress(RuntimeError):  # /boom's, raised through the app
            await app(scope, receive, send)

    asyncio.run(run())
    return sent


def test_a_request_span_named_by_its_route_with_the_conventions_attributes():
    app, keep = _app()
    _call(app, "POST", "/api/chat/s-123")
    child, request = keep.get_finished_spans()
    assert request.kind == SpanKind.SERVER and request.name == "POST /api/chat/{stream_id}"
    assert dict(request.attributes) == {
        "http.request.method": "POST",
        "url.path": "/api/chat/s-123",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "127.0.0.1",
        "server.port": 8000,
        "http.route": "/api/chat/{stream_id}",
        "http.response.status_code": 200,
    }
    assert request.status.status_code == StatusCode.UNSET
    assert request.parent is None  # no traceparent: a trace of its own
    assert child.parent.span_id == request.context.span_id  # current while the app ran
    assert child.context.trace_id == request.context.trace_id


def test_an_incoming_traceparent_is_continued():
    app, keep = _app()
    traceparent = f"00-{TRACE_ID}-{PARENT}-01".encode()
    _call(app, "POST", "/api/chat/s", [(b"traceparent", traceparent)])
    request = keep.get_finished_spans()[-1]
    assert trace.format_trace_id(request.context.trace_id) == TRACE_ID
    assert trace.format_span_id(request.parent.span_id) == PARENT and request.parent.is_remote


def test_failures_say_how():
    app, keep = _app()
    sent = _call(app, "GET", "/boom")
    (request,) = keep.get_finished_spans()
    assert request.attributes["error.type"] == "RuntimeError"
    assert request.status.status_code == StatusCode.ERROR
    assert sent[0]["status"] == 500  # Starlette's error page, sent outside the span

    app, keep = _app()
    _call(app, "GET", "/api/chat/s")  # 405: the caller's mistake, not an error of ours
    (request,) = keep.get_finished_spans()
    assert request.attributes["http.response.status_code"] == 405
    assert "error.type" not in request.attributes


def test_an_unknown_method_is_other_and_its_original_bounded():
    app, keep = _app()
    _call(app, "X" * 5000, "/api/chat/s")
    (request,) = keep.get_finished_spans()
    assert request.name == "HTTP /api/chat/{stream_id}"
    assert request.attributes["http.request.method"] == "_OTHER"
    assert request.attributes["http.request.method_original"] == "X" * 32


def test_probes_are_not_traced():
    app, keep = _app()
    _call(app, "GET", "/healthz")
    assert keep.get_finished_spans() == ()


def test_a_span_the_sampler_drops_costs_no_error():
    """OTEL_TRACES_SAMPLER=always_off, or a caller's traceparent not sampled: the request
    is answered, nothing is exported, and the trace is still carried to the children."""
    app, keep = _app(ALWAYS_OFF)
    assert _call(app, "POST", "/api/chat/s")[0]["status"] == 200
    assert keep.get_finished_spans() == ()

    app, keep = _app(DEFAULT_ON)  # parentbased_always_on: the caller's choice is kept
    traceparent = f"00-{TRACE_ID}-{PARENT}-00".encode()
    assert _call(app, "POST", "/api/chat/s", [(b"traceparent", traceparent)])[0]["status"] == 200
    assert keep.get_finished_spans() == ()
