"""app/spans.py: the relay's spans, started with an SDK provider's own sampler, ids, resource
and processors, are what the SDK's own tracer would have made: field by field, through both
encoders, under a sampler that drops them, under the operator's attribute limits, and they
change nothing once ended."""

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, DEFAULT_ON, ParentBased
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from app import otlp, spans

SCHEMA = "https://opentelemetry.io/schemas/1.41.0"
REMOTE = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0xB7AD6B7169203331,
    True,
    TraceFlags(1),
    TraceState([("vendor", "v1")]),  # carried to every span of the trace
)
ATTRIBUTES = {"gen_ai.request.model": "claude-x", "server.port": 443, "gen_ai.request.stream": True}


def _provider(sampler=None) -> tuple[TracerProvider, InMemorySpanExporter]:
    keep = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, resource=Resource({"service.name": "relay"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    return provider, keep


def _chat(tracer) -> None:
    """What the relay does with a chat's spans: a request from a remote parent, a child."""
    remote = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    request = tracer.start_span("POST", remote, SpanKind.SERVER, {"url.path": "/api/chat"})
    chat = tracer.start_span(
        "chat x", trace.set_span_in_context(request), SpanKind.CLIENT, ATTRIBUTES
    )
    chat.set_attributes({"gen_ai.response.finish_reasons": ["end_turn"], "gen_ai.usage.x": 0.5})
    chat.add_event("retry", {"attempt": 2})
    chat.set_status(Status(StatusCode.ERROR))
    chat.set_attribute("error.type", "overloaded_error")
    chat.end()
    request.update_name("POST /api/chat")
    request.end()


def _comparable(spans_: list) -> list[dict]:
    """What can be compared between two runs: all but ids and times."""
    return [
        {
            "name": s.name,
            "kind": s.kind,
            # lists as the SDK keeps them (tuples): one array to both encoders
            "attributes": {
                k: tuple(v) if isinstance(v, list) else v for k, v in s.attributes.items()
            },
            "parent": s.parent.span_id if s.parent and s.parent.is_remote else bool(s.parent),
            "trace": (s.context.trace_id, dict(s.context.trace_state)),
            "status": (s.status.status_code, s.status.description),
            "events": [(e.name, dict(e.attributes)) for e in s.events],
            "scope": (s.instrumentation_scope.name, s.instrumentation_scope.schema_url),
            "resource": dict(s.resource.attributes),
            "sampled": s.context.trace_flags.sampled,
            "dropped": (s.dropped_attributes, s.dropped_events, s.dropped_links),
        }
        for s in spans_
    ]


@pytest.mark.parametrize("sampler", [DEFAULT_ON, ParentBased(ALWAYS_ON)])
def test_a_chats_spans_are_the_sdks_field_by_field(sampler):
    """Under the SDK's default sampler (decided in app/spans.py without calling it) and under
    the same sampler made anew (called, as any other the operator may choose)."""
    provider, keep = _provider(sampler)
    _chat(provider.get_tracer("chat_relay", schema_url=SCHEMA))
    sdk_made = keep.get_finished_spans()
    keep.clear()
    tracer = spans.tracer(provider, "chat_relay", SCHEMA)
    assert isinstance(tracer, spans.Tracer) and tracer.parent_based == (sampler is DEFAULT_ON)
    _chat(tracer)
    ours = keep.get_finished_spans()
    assert all(isinstance(span, spans.Span) for span in ours)
    assert _comparable(ours) == _comparable(sdk_made)
    chat, request = ours
    assert chat.parent.span_id == request.context.span_id and request.parent == REMOTE
    assert chat.start_time <= chat.end_time and request.start_time <= chat.start_time


def test_both_encoders_read_them_alike():
    provider, keep = _provider()
    _chat(spans.tracer(provider, "chat_relay", SCHEMA))
    ours = keep.get_finished_spans()
    sdk_bytes = encode_spans(ours).SerializeToString()
    assert ExportTraceServiceRequest.FromString(otlp.encode(ours)) == (
        ExportTraceServiceRequest.FromString(sdk_bytes)
    )


def test_a_sampler_that_drops_them_gets_non_recording_spans_carrying_the_trace():
    provider, keep = _provider(ALWAYS_OFF)
    tracer = spans.tracer(provider, "chat_relay", SCHEMA)
    span = tracer.start_span("chat x", None, SpanKind.CLIENT, ATTRIBUTES)
    assert not span.is_recording() and span.get_span_context().is_valid
    assert not span.get_span_context().trace_flags.sampled
    span.end()

    provider, keep = _provider(DEFAULT_ON)  # parentbased: the caller's "not sampled" kept
    unsampled = SpanContext(REMOTE.trace_id, REMOTE.span_id, True, TraceFlags(0))
    context = trace.set_span_in_context(trace.NonRecordingSpan(unsampled))
    span = spans.tracer(provider, "chat_relay", SCHEMA).start_span("POST", context)
    assert not span.is_recording() and span.get_span_context().trace_id == REMOTE.trace_id
    span.end()
    assert keep.get_finished_spans() == ()


def test_the_operators_attribute_limits_are_the_sdks(monkeypatch):
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "1")
    monkeypatch.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "1")
    provider, keep = _provider()
    tracer = spans.tracer(provider, "chat_relay", SCHEMA)
    assert not tracer.plain
    links = [Link(REMOTE), Link(REMOTE)]
    span = tracer.start_span("chat x", None, SpanKind.CLIENT, {"a": "claude-x"}, links)
    span.set_attributes({"b": ["end_turn"], "c": 3})
    span.add_event("one")
    span.add_event("two")
    span.end()
    (ended,) = keep.get_finished_spans()
    # as the SDK's BoundedAttributes keeps them: the newest, values cut to length
    assert dict(ended.attributes) == {"b": ("end_",), "c": 3} and ended.dropped_attributes == 1
    assert [e.name for e in ended.events] == ["one"] and ended.dropped_events == 1
    assert len(ended.links) == 1 and ended.dropped_links == 1
    decoded = ExportTraceServiceRequest.FromString(otlp.encode([ended]))
    assert decoded.resource_spans[0].scope_spans[0].spans[0].dropped_attributes_count == 1


def test_limits_given_in_code_and_no_limit_at_all():
    keep = InMemorySpanExporter()
    limits = SpanLimits(max_span_attribute_length=2, max_events=SpanLimits.UNSET)
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(keep))
    span = spans.tracer(provider, "chat_relay", SCHEMA).start_span("chat x", None)
    span.set_attribute("model", "claude")
    for i in range(200):
        span.add_event(f"e{i}")
    span.end()
    (ended,) = keep.get_finished_spans()
    assert ended.attributes["model"] == "cl" and len(ended.events) == 200


def test_an_ended_span_changes_no_more_and_ends_once():
    provider, keep = _provider()
    span = spans.tracer(provider, "chat_relay", SCHEMA).start_span("chat x", attributes={"a": 1})
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "later")  # OK is final
    span.end()
    span.set_attribute("a", 2)
    span.set_attributes({"b": 3})
    span.update_name("renamed")
    span.add_event("late")
    span.end()
    (ended,) = keep.get_finished_spans()  # ended once: one span for the exporter
    assert ended.name == "chat x" and dict(ended.attributes) == {"a": 1}
    assert ended.status.status_code is StatusCode.OK and ended.events == ()


def test_an_exception_is_an_event_as_the_sdk_records_it():
    provider, keep = _provider()
    span = spans.tracer(provider, "chat_relay", SCHEMA).start_span("chat x")
    try:
        raise TimeoutError("upstream")
    except TimeoutError as exc:
        span.record_exception(exc, {"extra": 1})
    span.end()
    (event,) = keep.get_finished_spans()[0].events
    assert event.name == "exception" and event.attributes["exception.type"] == "TimeoutError"
    assert event.attributes["exception.message"] == "upstream" and event.attributes["extra"] == 1
    assert "raise TimeoutError" in event.attributes["exception.stacktrace"]


@pytest.mark.parametrize("moved", [False, True])
def test_a_provider_it_cannot_read_gets_the_sdks_own_tracer(moved, monkeypatch):
    if moved:  # an SDK release that keeps its span processors elsewhere
        monkeypatch.setattr(spans, "PROCESSORS", "_span_processors_now")
        provider, keep = _provider()
        tracer = spans.tracer(provider, "chat_relay", SCHEMA)
        assert isinstance(tracer, SdkTracer)
        tracer.start_span("x").end()
        assert len(keep.get_finished_spans()) == 1
    else:  # metrics only: the API's no-op provider
        tracer = spans.tracer(trace.NoOpTracerProvider(), "chat_relay", SCHEMA)
        assert not isinstance(tracer, spans.Tracer)
        assert not tracer.start_span("x").is_recording()
