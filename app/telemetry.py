"""What the relay tells its operators: Prometheus metrics, one JSON log line per stream,
and a request id that ties the two to uvicorn's access log. Nothing here runs per delta.
"""

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Collection
from contextvars import ContextVar
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from starlette.types import Scope

from app.mcpconfig import server_of
from app.record import StreamRecord
from app.servertools import USAGE_KEYS
from app.text import printable, redact

__all__ = ["printable", "redact"]  # their home is app/text.py; kept importable from here

log = logging.getLogger("chat_relay")
request_id: ContextVar[str] = ContextVar("request_id", default="-")

STARTED = Counter("chat_relay_streams_started_total", "Streams that reached the caller.")
COMPLETED = Counter("chat_relay_streams_completed_total", "Streams that ended with `done`.")
CANCELLED = Counter("chat_relay_streams_cancelled_total", "Streams the caller left early.")
FAILED = Counter("chat_relay_streams_failed_total", "Streams ended by an error.", ["type"])
ACTIVE = Gauge(
    "chat_relay_active_streams", "Streams holding a slot now.", multiprocess_mode="livesum"
)
TTFD = Histogram(
    "chat_relay_time_to_first_delta_seconds",
    "From the request to the first delta forwarded.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
DURATION = Histogram(
    "chat_relay_stream_duration_seconds",
    "From the request to the last frame.",
    buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
)
INPUT_TOKENS = Counter("chat_relay_input_tokens_total", "Input tokens billed.", ["model"])
OUTPUT_TOKENS = Counter("chat_relay_output_tokens_total", "Output tokens billed.", ["model"])
CACHE_TOKENS = Counter(
    "chat_relay_cache_tokens_total",
    "Input tokens read from or written to the prompt cache.",
    ["model", "type"],  # type: read, write
)
RESUMED = Counter("chat_relay_streams_resumed_total", "Resumable streams read again.")
EXPIRED = Counter(
    "chat_relay_streams_expired_total", "Resumable streams nobody came back to in time."
)
STOPPED = Counter("chat_relay_streams_stopped_total", "Streams stopped by DELETE.")
REJECTED = Counter("chat_relay_rejected_requests_total", "Requests refused.", ["reason"])
TOOL_CALLS = Counter(
    "chat_relay_model_tool_calls_total",
    "Tool calls Claude made in answers, by who runs them.",
    ["run_by"],  # caller, anthropic, relay: a fixed set
)
RELAY_TOOL_CALLS = Counter(
    "chat_relay_tool_calls_total",
    "Tool calls the relay ran on its MCP servers, by server and outcome.",
    ["server", "outcome"],  # server names from MCP_SERVERS (or `unknown`); a fixed outcome set
)
RELAY_TOOL_SECONDS = Histogram(
    "chat_relay_tool_call_seconds",
    "How long the relay's tool calls took, by server.",
    ["server"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
MCP_UP = Gauge(
    "chat_relay_mcp_server_up",
    "Whether an MCP server is connected (1) or not (0).",
    ["server"],
    multiprocess_mode="livemax",
)
SERVER_TOOL_REQUESTS = Counter(
    "chat_relay_server_tool_requests_total",
    "Server tool uses the upstream reported (usage.server_tool_use).",
    ["tool"],  # web_search, web_fetch, code_execution: a fixed set
)

# A caller's X-Request-ID is kept only if it is short and plain: it lands in our logs.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Several workers: each writes its own files; this sums them.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def metrics_body() -> tuple[bytes, str]:
    """The exposition; run it off the event loop (it can take a while)."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def serve_metrics(port: int) -> Callable[[], None]:
    """Serve the metrics on their own port, from prometheus-client's own thread, so a
    Service that exposes only the API port keeps them inside. Returns how to stop."""
    try:
        server, _ = start_http_server(port, registry=_registry())
    except OSError:
        # Another worker of this pod serves them (in multiprocess mode, for all workers).
        log.info("metrics port %d is served by another worker", port)
        return lambda: None
    return server.shutdown


def stream_ended(stream: StreamRecord, messages: object, model_label: str) -> None:
    """Account for one stream, however it ended: metrics and its JSON log line."""
    if stream.status not in (200, 499):
        return  # refused before it started: a plain HTTP error, counted by `rejected`
    now = time.monotonic()
    usage = stream.usage
    input_tokens = int(usage.get("input_tokens") or 0)
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    # Cancelled or failed: the last figure the upstream reported may lag behind the text
    # forwarded, so count at least one token per delta; the line says it is partial.
    output_tokens = max(int(usage.get("output_tokens") or 0), stream.deltas)
    partial = stream.outcome != "done"
    server_uses = _server_tool_uses(usage)
    if stream.status == 200:  # started: started = completed + cancelled + failed
        DURATION.observe(now - stream.started)
        if stream.first_delta is not None:
            TTFD.observe(stream.first_delta - stream.started)
        INPUT_TOKENS.labels(model_label).inc(input_tokens)
        OUTPUT_TOKENS.labels(model_label).inc(output_tokens)
        CACHE_TOKENS.labels(model_label, "read").inc(cache_read)
        CACHE_TOKENS.labels(model_label, "write").inc(cache_write)
        for run_by, count in stream.tool_calls.items():
            TOOL_CALLS.labels(run_by).inc(count)
        for tool, count in server_uses.items():
            SERVER_TOOL_REQUESTS.labels(tool).inc(count)
        if stream.outcome == "done":
            COMPLETED.inc()
        elif stream.outcome == "cancelled":
            CANCELLED.inc()
        elif stream.outcome == "expired":
            EXPIRED.inc()
        elif stream.outcome == "stopped":
            STOPPED.inc()
        else:
            FAILED.labels(stream.outcome).inc()
    line = {
        "event": "chat",
        "request_id": request_id.get(),
        "client": stream.client_key,
        "model": stream.model,
        "mode": stream.mode,
        "status": stream.status,  # 200, or 499: the caller left before the answer
        "outcome": stream.outcome,
        "attempts": stream.attempts,
        "resumable": stream.resumable,
        "resumes": stream.resumes,
        "ttft_ms": round((stream.first_delta - stream.started) * 1000, 1)
        if stream.first_delta
        else None,
        "duration_ms": round((now - stream.started) * 1000, 1),
        "deltas": stream.deltas,
        "input_tokens": input_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": output_tokens,
        "tokens_partial": partial,
        # Images and PDFs sent, and their decoded bytes: counts, never content.
        "attachments": stream.attachments,
        "attachment_bytes": stream.attachment_bytes,
        # Tool calls by who runs them, server tool uses, and upstream requests (steps).
        "tool_calls": stream.tool_calls,
        "server_tool_use": server_uses,
        "steps": stream.steps,
    }
    if stream.trace_id is not None:  # tracing is on: the line joins its trace
        line["trace_id"], line["span_id"] = stream.trace_id, stream.span_id
    if messages is not None:
        line["messages"] = messages
    # ASCII JSON: caller text (with LOG_CONTENT) can hold newlines, control and bidi
    # characters; escaped, a log line stays one line of printable text.
    log.info(json.dumps(line))


def stream_started() -> None:
    STARTED.inc()


def rejected(reason: str, status: int, client: str) -> None:
    """A request refused before any stream (bad input, limits, upstream failures)."""
    REJECTED.labels(reason).inc()
    if status == 499:
        # The caller left mid-request: nobody gets an answer, so no access line either.
        line = {"event": "request", "request_id": request_id.get(), "client": client}
        log.info(json.dumps({**line, "status": 499, "outcome": reason}))


def take_request_id(scope: Scope) -> str:
    """The request's id: a sane incoming X-Request-ID, or a new one. It is also put in a
    context variable, so every log line of the request can carry it."""
    given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    rid = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
    request_id.set(rid)
    return rid


class WithRequestId(logging.Filter):
    """Adds `request_id` to log records (uvicorn's access log among them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RedactPaths(logging.Filter):
    """Keeps stream ids out of uvicorn's access log (its args: client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact(args[2]), *args[3:])
        return True


def _server_tool_uses(usage: dict[str, Any]) -> dict[str, int]:
    """`usage.server_tool_use` by tool name, from a fixed set of counters (the upstream's
    other keys, if any, are not labels)."""
    reported = usage.get("server_tool_use")
    if not isinstance(reported, dict):
        return {}
    return {
        key.removesuffix("_requests"): int(reported[key])
        for key in USAGE_KEYS
        if isinstance(reported.get(key), int) and reported[key] > 0
    }


def tool_called(name: str, outcome: str, seconds: float, servers: Collection[str]) -> None:
    """A relay tool call (app/relaytools.py): its server is a configured one or `unknown`."""
    server = server_of(name)
    label = server if server in servers else "unknown"
    RELAY_TOOL_CALLS.labels(label, outcome).inc()
    RELAY_TOOL_SECONDS.labels(label).observe(seconds)
