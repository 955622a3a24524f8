"""The request's SERVER span, when tracing is on: one per HTTP request, as the HTTP semantic
conventions (stable) name it, continuing an incoming `traceparent` (the global propagator's
headers: `OTEL_PROPAGATORS`), and current while the app handles the request, so a chat's
CLIENT spans and its stream's task are its children.

FastAPI's own telemetry (`FastAPI(telemetry=...)`) makes the same span, and this replaced it
for what it cost: 48 µs of CPU a request against 24 µs here with the SDK's span, 10 µs with
app/spans.py's (in process, a trivial route). It builds the request's headers twice, parses
the Host header, makes a context and a telemetry record per request and hooks logs and
exceptions this relay does not use. The difference here: only the propagator's headers are
read, `server.*` is the socket the request came to (not the caller's Host), and `url.query`
is left out (the relay's routes take none, and a query can hold a secret).

Imported only when tracing is on (app/otel.py).
"""

from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import spans
from app.genai import SCHEMA_URL

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


class ServerSpans:
    """ASGI middleware: a SERVER span around each HTTP request but `untraced` paths."""

    def __init__(
        self, app: ASGIApp, tracer_provider: Any, untraced: frozenset[str] = frozenset()
    ) -> None:
        self.app, self.untraced = app, untraced
        self.tracer = spans.tracer(tracer_provider, "chat_relay.http", SCHEMA_URL)
        self.propagator = propagate.get_global_textmap()
        self.fields = frozenset(field.encode("latin-1") for field in self.propagator.fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.untraced:
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name in self.fields:  # a repeated header is one list (baggage's rule)
                key = name.decode("latin-1")
                seen = carrier.get(key)
                text = value.decode("latin-1")
                carrier[key] = text if seen is None else f"{seen},{text}"
        parent = self.propagator.extract(carrier) if carrier else None
        method = scope["method"]
        known = method in KNOWN_METHODS
        attributes: dict[str, Any] = {
            "http.request.method": method if known else "_OTHER",
            "url.path": scope["path"],
            "url.scheme": scope["scheme"],
            "network.protocol.version": scope["http_version"],
        }
        if not known:
            attributes["http.request.method_original"] = method[:32]
        server = scope.get("server")
        if server:
            attributes["server.address"], attributes["server.port"] = server[0], server[1]
        name = method if known else "HTTP"  # the route is added once it is known
        span = self.tracer.start_span(name, parent, SpanKind.SERVER, attributes)
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if not status and message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        token = context.attach(trace.set_span_in_context(span, parent))
        error = None
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            error = type(exc).__qualname__
            raise
        finally:
            context.detach(token)
            _end(span, name, scope, status[0] if status else None, error)


def _end(span: Any, name: str, scope: Scope, status: int | None, error: str | None) -> None:
    # `name`, not the span's: a span the sampler dropped has none (and ignores the rest).
    found: dict[str, Any] = {}
    route = getattr(scope.get("route"), "path", None)  # the template, not the path asked
    if route is not None:
        found["http.route"] = route
        span.update_name(f"{name} {route}")
    if status is not None:
        found["http.response.status_code"] = status
        if status >= 500 and error is None:
            error = str(status)
    if error is not None:
        found["error.type"] = error
        span.set_status(Status(StatusCode.ERROR))
    span.set_attributes(found)
    span.end()
