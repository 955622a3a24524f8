"""The GenAI semantic conventions (v1.41.0, the last release that carries them in
open-telemetry/semantic-conventions; "Development" status), for each upstream request of a
stream: a CLIENT span `chat {model}` (app/spans.py) and the client metrics
(app/histograms.py).

Imported only when tracing or metrics are on (app/otel.py). The span opens when an upstream
request starts and closes when it ends, however it ends: done, failed, retried, or cut by the
stream's cancel scope (the caller left, a Stop, a timeout, the shutdown drain), which the span
says in `error.type`. Nothing here runs per delta, except, when the operator asks for content,
one append per delta to keep the answer's text (bounded).
"""

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from app import spans
from app.attachments import decoded_size
from app.errors import ApiError

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
# The convention's bucket boundaries (gen-ai-metrics.md).
TOKEN_BUCKETS = [4**i for i in range(14)]  # 1, 4, 16, ... 67,108,864
SECONDS_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01, 0.02, ... 81.92
# A stream the relay ended, by why: the span's error.type.
ENDED = {"idle": "timeout_error"}
# Characters of answer text kept per output token asked for, when content is captured: a
# token is about four characters; the rest is slack for long ones.
CHARS_PER_TOKEN = 16


class GenAI:
    """The instrumentation of one app: its tracer and instruments, and how it names the
    upstream (`server.address`, `server.port`)."""

    def __init__(
        self,
        tracer_provider: Any,
        metrics: Any,  # app.histograms.Metrics, or None
        base_url: Any,  # the SDK client's (an httpx2.URL)
        model_label: Any,  # model name -> metric attribute (a fixed set, or "other")
        capture_content: bool = False,
    ) -> None:
        self.tracer = spans.tracer(tracer_provider, "chat_relay", SCHEMA_URL)
        port = base_url.port or (443 if base_url.scheme == "https" else 80)
        self.server = {"server.address": base_url.host, "server.port": port}
        self.model_label = model_label
        self.capture = capture_content
        self.metered = metrics is not None
        if self.metered:
            self.tokens = metrics.histogram(
                "gen_ai.client.token.usage",
                "{token}",
                "Number of input and output tokens used.",
                TOKEN_BUCKETS,
            )
            self.duration = metrics.histogram(
                "gen_ai.client.operation.duration",
                "s",
                "GenAI operation duration.",
                SECONDS_BUCKETS,
            )
            self.first_chunk = metrics.histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                "s",
                "Time to receive the first chunk of a streaming response.",
                SECONDS_BUCKETS,
            )

    def tool(self, name: str, call_id: str) -> "ToolSpan":
        """The span of one tool call the relay runs (app/relaytools.py): `execute_tool
        {name}`, a child of the request's span like the upstream requests'."""
        return ToolSpan(self.tracer, name, call_id)

    def attempt(self, stream: Any) -> "Attempt":
        """The span of one upstream request of `stream` (app/stream.py), as a context."""
        return Attempt(self, stream)

    @staticmethod
    def ids() -> tuple[str, str] | tuple[None, None]:
        """The trace id and the request's span id (hex) for the log line: the span current
        where the stream's task runs, which is its request's."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None, None
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


class ToolSpan:
    """One tool call the relay runs: `error.type` is its outcome when it failed, or
    `cancelled` when the stream's scope ended it."""

    __slots__ = ("attributes", "name", "outcome", "span", "tracer")

    def __init__(self, tracer: Any, name: str, call_id: str) -> None:
        self.tracer, self.name, self.outcome = tracer, name, None
        self.attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "extension",  # run on the agent's side: the relay's
        }

    def __enter__(self) -> "ToolSpan":
        self.span = self.tracer.start_span(
            f"execute_tool {self.name}", kind=SpanKind.INTERNAL, attributes=self.attributes
        )
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        error = self.outcome if exc is None else "cancelled"
        if error is not None:
            self.span.set_attribute("error.type", error)
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


class Attempt:
    """One upstream request: its span opens on enter and ends on exit, whatever ends it."""

    __slots__ = ("genai", "message", "span", "started", "stream")

    def __init__(self, genai: GenAI, stream: Any) -> None:
        self.genai, self.stream = genai, stream

    def __enter__(self) -> None:
        genai, stream = self.genai, self.stream
        params = stream.params
        model = stream.model
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": model,
            "gen_ai.request.stream": True,
            **genai.server,
        }
        if "max_tokens" in params:
            attributes["gen_ai.request.max_tokens"] = params["max_tokens"]
        if stream.chat_id is not None:
            attributes["gen_ai.conversation.id"] = stream.chat_id
        if genai.capture and params:
            attributes.update(input_content(params))
            Captured.into(stream.answer, params.get("max_tokens", 0))
        # The stream's task runs in a copy of its request's context: the request's span is
        # the parent, even after the request ended (a resumable answer).
        self.span = genai.tracer.start_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        self.message = stream.answer.response  # a new one comes with this request's start
        self.started = time.monotonic()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        genai, stream, span = self.genai, self.stream, self.span
        answer = stream.answer
        duration = time.monotonic() - self.started
        metric = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": genai.model_label(stream.model),
            **genai.server,
        }
        error = None
        if exc is not None:
            if isinstance(exc, ApiError):
                error = exc.error_type
            elif not isinstance(exc, Exception):
                # Cancelled: the stream's scope, for the reason the stream was ended.
                ended = stream.ended_by or "cancelled"
                error = ENDED.get(ended, ended)
            else:
                error = type(exc).__qualname__
        found: dict[str, Any] = {}  # set at once
        ids = span.get_span_context()  # the metrics' exemplars point at this span
        message = answer.response
        if message is not self.message:  # this request got its message_start
            found["gen_ai.response.id"] = str(message.get("id", ""))
            found["gen_ai.response.model"] = str(message.get("model", ""))
            stop = answer.stop.get("stop_reason")
            if stop and exc is None:
                found["gen_ai.response.finish_reasons"] = [str(stop)]
            usage = answer.usage
            cache_read = int(usage.get("cache_read_input_tokens") or 0)
            cache_write = int(usage.get("cache_creation_input_tokens") or 0)
            # The convention's rule for Anthropic: its input_tokens exclude the cache's.
            input_tokens = int(usage.get("input_tokens") or 0) + cache_read + cache_write
            output_tokens = int(usage.get("output_tokens") or 0)
            found["gen_ai.usage.input_tokens"] = input_tokens
            found["gen_ai.usage.output_tokens"] = output_tokens
            found["gen_ai.usage.cache_read.input_tokens"] = cache_read
            found["gen_ai.usage.cache_creation.input_tokens"] = cache_write
            if genai.metered:
                tokens = genai.tokens
                tokens.record(input_tokens, {**metric, "gen_ai.token.type": "input"}, ids)
                tokens.record(output_tokens, {**metric, "gen_ai.token.type": "output"}, ids)
        first = stream.first_delta
        if first is not None and first >= self.started:  # its first chunk was this request's
            found["gen_ai.response.time_to_first_chunk"] = first - self.started
            if genai.metered:
                genai.first_chunk.record(first - self.started, metric, ids)
        captured = Captured.of(answer)
        if captured is not None:
            found["gen_ai.output.messages"] = captured.output(answer, error)
        if error is not None:
            found["error.type"] = metric["error.type"] = error
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(found)
        if genai.metered:
            genai.duration.record(duration, metric, ids)
        span.end()


def input_content(params: dict[str, Any]) -> dict[str, Any]:
    """`gen_ai.input.messages` and `gen_ai.system_instructions`, shaped as the convention's
    JSON schemas say, in structured form (the SDK exports maps and lists as OTLP kvlists
    and arrays). Attachments are their type, media type and size, never their data."""
    messages = [
        {"role": turn["role"], "parts": _parts(turn["content"])} for turn in params["messages"]
    ]
    found: dict[str, Any] = {"gen_ai.input.messages": messages}
    system = params.get("system")
    if system:
        found["gen_ai.system_instructions"] = _parts(system)
    return found


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text", "")})
        elif kind in ("image", "document") and isinstance(block.get("source"), dict):
            source = block["source"]
            size = decoded_size(source.get("data", ""))
            parts.append({"type": kind, "mime_type": source.get("media_type"), "size": size})
        else:  # a kind the relay may learn later (tools): named, not copied
            parts.append({"type": str(kind)})
    return parts


class Captured:
    """The answer's text, kept only when content is captured: the stream's dialect is
    wrapped once, so a stream that does not capture pays nothing per delta."""

    __slots__ = ("budget", "dialect", "texts", "thoughts")

    def __init__(self, dialect: Any, budget: int) -> None:
        self.dialect, self.budget = dialect, budget
        self.texts: list[str] = []
        self.thoughts: list[str] = []

    @classmethod
    def into(cls, answer: Any, max_tokens: int) -> None:
        """Start keeping `answer`'s text (again: each request has its own output)."""
        captured = cls.of(answer)
        budget = max(max_tokens, 1) * CHARS_PER_TOKEN
        if captured is None:
            captured = cls(answer.dialect, budget)
            answer.dialect = answer.dialect._replace(delta=captured.delta, thought=captured.thought)
        captured.budget, captured.texts, captured.thoughts = budget, [], []

    @staticmethod
    def of(answer: Any) -> "Captured | None":
        keeper = getattr(answer.dialect.delta, "__self__", None)
        return keeper if isinstance(keeper, Captured) else None

    def _keep(self, pieces: list[str], text: str) -> None:
        if self.budget > 0:
            pieces.append(text[: self.budget])
            self.budget -= len(text)

    def delta(self, answer: Any, text: str) -> bytes:
        self._keep(self.texts, text)
        return self.dialect.delta(answer, text)

    def thought(self, answer: Any, text: str) -> bytes:
        self._keep(self.thoughts, text)
        return self.dialect.thought(answer, text)

    def output(self, answer: Any, error: str | None) -> list[dict[str, Any]]:
        """`gen_ai.output.messages`: the one answer, as far as it got."""
        parts = []
        if self.thoughts:
            parts.append({"type": "reasoning", "content": "".join(self.thoughts)})
        if self.texts:
            parts.append({"type": "text", "content": "".join(self.texts)})
        reason = "error" if error else str(answer.stop.get("stop_reason") or "stop")
        return [{"role": "assistant", "parts": parts, "finish_reason": reason}]
