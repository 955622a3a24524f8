"""app/otlp.py: spans written to OTLP protobuf directly decode to exactly what the SDK's own
encoder builds, for every kind of value, event, link, status and parent; and the exporters
really take the fast path."""

import logging

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from app import otlp

VALUES = {
    "text": "chat claude",
    "unicode": "naïve — 漢字 🙂",
    "empty": "",
    "long": "x" * 5000,
    "yes": True,
    "no": False,
    "zero": 0,
    "small": 7,
    "big": 2**40 + 3,
    "negative": -5,
    "most_negative": -(2**63),
    "largest": 2**63 - 1,
    "ratio": 0.125,
    "negative_ratio": -3.5e-9,
    "words": ["end_turn", "tool_use"],
    "numbers": [1, -2, 3],
    "flags": [True, False],
    "floats": [0.5, 1.5],
    "none_yet": [],
    "message": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
    "raw": b"\x00\x01\xff",
}


def _spans(limits: SpanLimits | None = None) -> list:
    keep = InMemorySpanExporter()
    resource = Resource({"service.name": "chat-relay", "deployment": "test"}, "https://s/1")
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(keep))
    relay = provider.get_tracer("chat_relay", schema_url="https://opentelemetry.io/schemas/1.41")
    other = provider.get_tracer("fastapi", "0.165", attributes={"scope.kind": "web"})
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
    )
    request = other.start_span(
        "POST /api/chat", trace.set_span_in_context(trace.NonRecordingSpan(remote)), SpanKind.SERVER
    )
    parent = trace.set_span_in_context(request)
    with relay.start_as_current_span("chat claude", parent, SpanKind.CLIENT, VALUES) as span:
        span.add_event("first chunk", {"bytes": 12, "kinds": ["text"]})
        span.add_event("bare")
        span.set_status(Status(StatusCode.ERROR, "upstream said no"))
    links = [Link(remote, {"why": "retry of"}), Link(span.get_span_context())]
    for kind in (SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER):
        relay.start_span(f"{kind.name}", parent, kind, links=links).end()
    ok = relay.start_span("ok", parent)
    ok.set_status(Status(StatusCode.OK))
    ok.end()
    failed = relay.start_span("failed without words", parent)
    failed.set_status(Status(StatusCode.ERROR))
    failed.end()
    request.end()
    root = relay.start_span("a root of its own")
    root.record_exception(ValueError("bad"))
    root.end()
    return list(keep.get_finished_spans())


def test_the_bytes_decode_to_what_the_sdk_encodes():
    spans = _spans()
    assert len(spans) == 8
    ours = ExportTraceServiceRequest.FromString(otlp.encode(spans))
    # One thing more than the SDK's encoder: a link's trace state (trace.proto has it).
    links = [link for s in _all(ours) for link in s.links]
    assert [link.trace_state for link in links] == ["vendor=v1,other=x"] * 6
    assert _as_sdks(ours) == encode_spans(spans)
    # and again, now that the recurring attributes are kept: the same bytes
    assert otlp.encode(spans) == otlp.encode(spans)


def _all(request: ExportTraceServiceRequest) -> list:
    return [s for r in request.resource_spans for scope in r.scope_spans for s in scope.spans]


def _as_sdks(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """`request` without its links' trace states, which the SDK's encoder leaves out."""
    for span in _all(request):
        for link in span.links:
            link.ClearField("trace_state")
    return request


def test_dropped_attributes_events_and_links_are_counted():
    limits = SpanLimits(max_span_attributes=3, max_events=1, max_links=1)
    spans = _spans(limits)
    ours = ExportTraceServiceRequest.FromString(otlp.encode(spans))
    assert _as_sdks(ours) == encode_spans(spans)
    chat = next(s for s in _all(ours) if s.name == "chat claude")
    assert chat.dropped_attributes_count == len(VALUES) - 3
    assert chat.dropped_events_count == 1
    assert [s.dropped_links_count for s in _all(ours) if s.links] == [1, 1, 1]


def test_a_value_that_cannot_be_encoded_is_left_out_not_the_batch(caplog):
    spans = _spans()
    chat = next(s for s in spans if s.name == "chat claude")
    chat._attributes._dict["too_big"] = 2**64  # past what the SDK's cleaning lets through
    chat._attributes._dict["odd"] = object()
    with caplog.at_level(logging.WARNING, "chat_relay"):
        ours = ExportTraceServiceRequest.FromString(otlp.encode(spans))
    keys = {kv.key for s in _all(ours) for kv in s.attributes}
    assert "text" in keys and "too_big" not in keys and "odd" not in keys
    assert "'too_big' not exported" in caplog.text


def test_a_lone_surrogate_is_replaced_not_a_broken_request():
    spans = _spans()
    chat = next(s for s in spans if s.name == "chat claude")
    chat._attributes._dict["text"] = "a\udc80b"
    ours = ExportTraceServiceRequest.FromString(otlp.encode(spans))
    decoded = next(s for s in _all(ours) if s.name == chat.name)
    assert {kv.key: kv.value.string_value for kv in decoded.attributes}["text"] == "a?b"


def test_the_kept_attributes_are_bounded():
    otlp._kept.clear()
    spans = _spans()
    chat = next(s for s in spans if s.name == "chat claude")
    for i in range(otlp.KEPT_ATTRIBUTES + 10):
        chat._attributes._dict["id"] = f"conversation-{i}"
        otlp.encode([chat])
        assert len(otlp._kept) <= otlp.KEPT_ATTRIBUTES
    assert not any(len(str(key[3])) > otlp.KEPT_VALUE_CHARS for key in otlp._kept)


@pytest.mark.parametrize("exporter", [otlp.HttpExporter, otlp.GrpcExporter])
def test_the_exporters_take_the_fast_path(exporter, monkeypatch):
    """A release of the SDK that moved what they rely on fails here, not silently slower."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    made = exporter()
    try:
        if exporter is otlp.HttpExporter:
            assert callable(made._client.export) and made._shutdown is False
        spans = _spans()
        if exporter is otlp.GrpcExporter:
            assert _as_sdks(made._translate_data(spans)) == encode_spans(spans)
    finally:
        made.shutdown()
