"""Spans in OTLP's protobuf, written directly, for the SDK's own OTLP exporters.

The exporters' encoder builds a protobuf object per span, per attribute and per value before
serializing them: 100-135 µs for a chat's two spans here, more than the spans cost to make
(`python -m bench.otel --parts`). This writes the same `ExportTraceServiceRequest` field by
field in 28-44 µs, and keeps the bytes of the attributes that recur (the operation, the
provider, the model, the server: most of a span's), so a recurring attribute costs one dict
lookup. tests/test_otlp.py checks the bytes decode, with `opentelemetry-proto`, to what the
SDK's encoder makes, for every kind of value, event, link, status and parent (and a link's
trace state, which trace.proto has and the SDK's encoder leaves out).

Everything else stays the SDK's: the exporters below are its OTLP/HTTP and OTLP/gRPC span
exporters (endpoint, headers, TLS, compression, timeouts, retries: the `OTEL_EXPORTER_OTLP_*`
variables), with only the encoding replaced. Imported only when tracing is on (app/otel.py).
"""

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

log = logging.getLogger("chat_relay")

_double = struct.Struct("<d").pack
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
INT64 = range(-(2**63), 2**63)
# Span.flags: the parent's remoteness is known, and whether it is remote.
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200
# Encoded attributes kept for reuse: at most this many, of short values only, so the cache
# stays under a megabyte however varied the attributes are (it starts over when full).
KEPT_ATTRIBUTES = 4096
KEPT_VALUE_CHARS = 64
_kept: dict[tuple[int, str, type, Any], bytes] = {}
_SCALARS = frozenset({bool, int, float})


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return bytes((n,))
    n &= 0xFFFF_FFFF_FFFF_FFFF  # a negative int64 is its two's complement, in ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a message, string or bytes): numbers here are all < 16."""
    return bytes((number << 3 | 2,)) + _varint(len(payload)) + payload


def _text(number: int, text: str) -> bytes:
    # A lone surrogate is not UTF-8, and a receiver would refuse the whole request for it.
    return _field(number, text.encode("utf-8", "replace"))


def _any_value(value: Any) -> bytes:
    """An AnyValue's fields (common.proto), for the values SDK attributes hold."""
    kind = type(value)
    if kind is str:
        return _text(1, value)
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if value not in INT64:
            raise ValueError("an attribute's int is outside int64")
        return b"\x18" + _varint(value)
    if kind is float:
        return b"\x21" + _double(value)
    if value is None:
        return b""
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(v)) for v in value))
    raise ValueError(f"an attribute's value of type {kind.__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _text(1, key) + _field(2, _any_value(value))


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue field `number`. A value that cannot be encoded is left out, as the
    SDK's encoder leaves it out (logged), rather than losing the batch."""
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        kind = value.__class__
        kept = None
        if kind in _SCALARS or (kind is str and len(value) <= KEPT_VALUE_CHARS):
            # the kind is in the key because True == 1 == 1.0 to a dict
            kept = (number, key, kind, value)
            encoded = _kept.get(kept)
            if encoded is not None:
                out.append(encoded)
                continue
        try:
            encoded = _field(number, _key_value(key, value))
        except ValueError as error:
            log.warning("OpenTelemetry: attribute %r not exported: %s", key[:100], error)
            continue
        if kept is not None:
            if len(_kept) >= KEPT_ATTRIBUTES:
                _kept.clear()
            _kept[kept] = encoded
        out.append(encoded)
    return b"".join(out)


def _counted(number: int, count: int) -> bytes:
    """A uint32 field, left out at zero as proto3 leaves it."""
    return bytes((number << 3,)) + _varint(count) if count else b""


def _flags(parent: Any) -> int:
    return HAS_IS_REMOTE | IS_REMOTE if parent is not None and parent.is_remote else HAS_IS_REMOTE


def _ids(context: Any) -> bytes:
    """A span's or a link's trace_id, span_id and trace_state fields (1, 2, 3 in both)."""
    ids = b"\x0a\x10" + context.trace_id.to_bytes(16, "big")
    ids += b"\x12\x08" + context.span_id.to_bytes(8, "big")
    state = context.trace_state
    return ids + _text(3, ",".join(f"{k}={v}" for k, v in state.items())) if state else ids


def _span(span: ReadableSpan) -> bytes:
    """A Span message (trace.proto), field by field in the schema's order."""
    context, parent = span.context, span.parent
    parts = [_ids(context)]
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts += (
        _text(5, span.name),
        b"\x30" + _varint(span.kind.value + 1),  # the API's kinds start at 0, OTLP's at 1
        b"\x39" + _fixed64(span.start_time or 0),
        b"\x41" + _fixed64(span.end_time or 0),
        _attributes(9, span.attributes),
        _counted(10, span.dropped_attributes),
    )
    for event in span.events:
        body = b"\x09" + _fixed64(event.timestamp) + _text(2, event.name)
        body += _attributes(3, event.attributes) + _counted(4, event.dropped_attributes)
        parts.append(_field(11, body))
    parts.append(_counted(12, span.dropped_events))
    for link in span.links:
        linked = link.context
        body = _ids(linked) + _attributes(4, link.attributes) + _counted(5, link.dropped_attributes)
        parts.append(_field(13, body + b"\x35" + _fixed32(_flags(linked))))
    parts.append(_counted(14, span.dropped_links))
    status = span.status
    code = status.status_code.value
    described = _text(2, status.description) if status.description else b""
    parts.append(_field(15, described + (b"\x18" + _varint(code) if code else b"")))
    parts.append(b"\x85\x01" + _fixed32(_flags(parent)))  # field 16, fixed32
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    """An InstrumentationScope message (common.proto)."""
    if scope is None:
        return b""
    body = _text(1, scope.name) if scope.name else b""
    if scope.version:
        body += _text(2, scope.version)
    return body + _attributes(3, scope.attributes)


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest: the spans grouped by resource, then by scope, in the
    order first seen (the resource and the scopes are each one object per provider and
    tracer: grouped by identity, not by hashing their attributes for every span)."""
    grouped: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope
        scopes = grouped.setdefault(id(resource), (resource, {}))[1]
        scopes.setdefault(id(scope), (scope, []))[1].append(_field(2, _span(span)))
    out = []
    for resource, scopes in grouped.values():
        body = [_field(1, _attributes(1, resource.attributes))]
        for scope, encoded in scopes.values():
            schema = getattr(scope, "schema_url", "")
            scope_spans = _field(1, _scope(scope)) + b"".join(encoded)
            body.append(_field(2, scope_spans + (_text(3, schema) if schema else b"")))
        if resource.schema_url:
            body.append(_text(3, resource.schema_url))
        out.append(_field(1, b"".join(body)))
    return b"".join(out)


class HttpExporter(HttpSpanExporter):
    """The SDK's OTLP/HTTP span exporter, sending `encode`'s bytes through its own client
    (retries, compression, headers). If a release of the SDK moves that client, this falls
    back to the SDK's whole export, slower but right (tests/test_otlp.py notices)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        if client is None or getattr(self, "_shutdown", True):
            return super().export(spans)
        try:
            data = encode(spans)
        except Exception:  # never the batch processor's thread
            log.exception("OpenTelemetry: could not encode %d spans", len(spans))
            return SpanExportResult.FAILURE
        exported = client.export(data)
        return SpanExportResult.SUCCESS if exported.success else SpanExportResult.FAILURE


class GrpcExporter(GrpcSpanExporter):
    """The SDK's OTLP/gRPC span exporter: its request message parsed from `encode`'s bytes
    (in C, a few µs a span) instead of built an object at a time."""

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(encode(data))
