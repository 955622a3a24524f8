"""The relay's spans, made for the SDK's tracer provider at a fraction of its span's cost.

`Tracer(provider, name)` starts spans as the SDK's own tracer does, with the provider's own
parts: its sampler (`OTEL_TRACES_SAMPLER`), its id generator, its resource and its span
processors (the batch processor and the OTLP exporters). Only the span object is ours: a
plain one, which the processors and both encoders (app/otlp.py's and the SDK's) read as they
read the SDK's `ReadableSpan`, through the same attribute names.

Why: a chat makes two spans (the request's and the upstream request's), and the SDK's cost
46 µs of CPU a chat against 11 µs here (`python -m bench.otel --parts`). Its span takes a
lock per call, validates every attribute on the way in (twice when given at start: once for
the sampler's result, once for the span), and copies itself into a second object when it
ends; its default sampler is 18 Python calls a span, decided here in a test. The relay's
attribute values are its own (strings, numbers, booleans and lists of them), so they are
kept as given, in a dict; when the provider has an attribute limit that could bite (in code,
or `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, ...), the SDK's
own `BoundedAttributes` enforces it as it would. A span belongs to the task that started it
(the event loop's thread) until it ends, then to the batch processor's thread, which only
reads it: it changes nothing once ended, so it needs no lock.

If a release of the SDK moves the provider's span processor (a private attribute), `tracer`
returns the SDK's own tracer instead: slower, but right (tests/test_spans.py notices).
"""

import time
import traceback
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, SpanLimits
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

UNSET = Status(StatusCode.UNSET)
SAMPLED, NOT_SAMPLED = TraceFlags(TraceFlags.SAMPLED), TraceFlags(TraceFlags.DEFAULT)
# Where the SDK's provider keeps its span processors (private: see `tracer`).
PROCESSORS = "_active_span_processor"
# No span of the relay's has more attributes than this: under it, a count limit never bites.
MOST_ATTRIBUTES = 64


class Span(trace.Span):
    """A recording span: the API's methods, and the fields the processors and encoders read."""

    __slots__ = (
        "attributes",
        "context",
        "dropped_events",
        "dropped_links",
        "end_time",
        "events",
        "instrumentation_scope",
        "kind",
        "limits",
        "links",
        "name",
        "parent",
        "processor",
        "resource",
        "start_time",
        "status",
    )

    def get_span_context(self) -> SpanContext:
        return self.context

    @property
    def dropped_attributes(self) -> int:
        return getattr(self.attributes, "dropped", 0)

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if self.end_time is None:
            self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # The SDK's rules: OK is final, and UNSET changes nothing.
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self.status = status

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if self.end_time is not None:
            return
        most = self.limits.max_events  # None: no limit (SpanLimits.UNSET, in code)
        if most is not None and len(self.events) >= most:
            self.dropped_events += 1
            return
        if not self.events:  # the shared empty tuple until the first event
            self.events = []
        limit = self.limits.max_event_attributes
        self.events.append(Event(name, attributes, timestamp or time.time_ns(), limit))

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        found = {
            "exception.type": kind.__qualname__
            if module in (None, "builtins")
            else f"{module}.{kind.__qualname__}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        self.add_event("exception", {**found, **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = end_time or time.time_ns()
            self.processor.on_end(self)


class Tracer:
    """Starts the relay's spans with a provider's sampler, ids, resource and processors."""

    def __init__(self, provider: Any, name: str, schema_url: str) -> None:
        self.scope = InstrumentationScope(name, None, schema_url, None)
        self.sampler, self.ids = provider.sampler, provider.id_generator
        # The SDK's default (OTEL_TRACES_SAMPLER unset, or parentbased_always_on): the
        # parent's decision, sampled at a root. Decided here, it is a test, not 18 calls.
        self.parent_based = self.sampler is DEFAULT_ON
        self.resource = provider.resource
        self.processor = getattr(provider, PROCESSORS)
        # The provider's (made of the OTEL_*_LIMIT variables, unless given in code).
        limits = getattr(provider, "_span_limits", None) or SpanLimits()
        self.limits = limits
        self.plain = limits.max_span_attribute_length is None and (
            limits.max_span_attributes is None or limits.max_span_attributes >= MOST_ATTRIBUTES
        )

    def start_span(
        self,
        name: str,
        context: Any = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
    ) -> trace.Span:
        """A span as the SDK's `Tracer.start_span` makes it: the parent is `context`'s span
        (or the current one), the trace is the parent's or a new one, and the sampler
        decides whether it records (if not: the API's non-recording span, carrying ids)."""
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
        else:
            trace_id, parent = self.ids.generate_trace_id(), None
        if self.parent_based:
            recording = sampled = parent is None or parent.trace_flags.sampled
            state = parent.trace_state if parent is not None else None
        else:
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            recording, sampled = result.decision.is_recording(), result.decision.is_sampled()
            state, attributes = result.trace_state, result.attributes  # a sampler may add
        flags = SAMPLED if sampled else NOT_SAMPLED
        ids = SpanContext(trace_id, self.ids.generate_span_id(), False, flags, state)
        if not recording:
            return trace.NonRecordingSpan(ids)
        span = Span()
        span.name, span.context, span.parent, span.kind = name, ids, parent, kind
        if self.plain:
            span.attributes = dict(attributes) if attributes else {}
        else:
            limits = self.limits
            span.attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        span.links, span.dropped_links, span.dropped_events = (), 0, 0
        if links:
            span.links = tuple(links)[: self.limits.max_links]
            span.dropped_links = len(links) - len(span.links)
        span.events, span.status, span.limits, span.end_time = (), UNSET, self.limits, None
        span.resource, span.instrumentation_scope = self.resource, self.scope
        span.processor = self.processor
        span.start_time = start_time or time.time_ns()
        self.processor.on_start(span, parent_context=context)
        return span


def tracer(provider: Any, name: str, schema_url: str) -> Any:
    """The relay's tracer for `provider`, or the SDK's own if this SDK's provider is not
    what `Tracer` knows how to read."""
    try:
        return Tracer(provider, name, schema_url)
    except AttributeError:  # a provider without `_active_span_processor` (or not the SDK's)
        return provider.get_tracer(name, schema_url=schema_url)
