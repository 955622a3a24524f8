"""app/histograms.py: the GenAI histograms aggregated in process make the points the SDK's own
MeterProvider makes of the same measurements (buckets, sum, min, max), in either temporality,
with its exemplar filters and its cardinality limit, exported by a thread that a failing
exporter does not stop, and once more at shutdown."""

import math
import threading

import pytest
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext, TraceFlags

from app import histograms

BOUNDS = [4**i for i in range(14)]
ATTRS = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-x"}
SAMPLED = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
UNSAMPLED = SpanContext(SAMPLED.trace_id, SAMPLED.span_id, False, TraceFlags(0))


class Exporter(MetricExporter):
    """Keeps what it is given; fails when told to."""

    def __init__(self, delta: bool = False) -> None:
        kind = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        super().__init__(preferred_temporality={SdkHistogram: kind})
        self.exports: list = []
        self.failing = False
        self.exported = threading.Event()
        self.closed = False

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        if self.failing:
            raise ConnectionError("collector gone")
        self.exports.append(metrics_data)
        self.exported.set()
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.closed = True


def _metrics(exporter: Exporter, **env: str) -> histograms.Metrics:
    env.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "600000")  # exports only when asked
    return histograms.Metrics(exporter, Resource({"service.name": "relay"}), "chat_relay", "s", env)


def _points(exporter: Exporter, export: int = -1) -> list:
    (resource,) = exporter.exports[export].resource_metrics
    (scope,) = resource.scope_metrics
    (metric,) = scope.metrics
    return list(metric.data.data_points)


VALUES = [0, 1, 3.5, 4, 4.0001, 16, 5000, 67_108_864, 10**9, 12]


def test_the_points_are_the_sdks_own():
    reader = InMemoryMetricReader()
    sdk = MeterProvider(metric_readers=[reader]).get_meter("chat_relay")
    theirs = sdk.create_histogram("tokens", "{token}", explicit_bucket_boundaries_advisory=BOUNDS)
    exporter = Exporter()
    metrics = _metrics(exporter)
    ours = metrics.histogram("tokens", "{token}", "Tokens.", BOUNDS)
    for i, value in enumerate(VALUES):
        attributes = {**ATTRS, "gen_ai.token.type": "input" if i % 3 else "output"}
        theirs.record(value, attributes)
        ours.record(value, dict(reversed(attributes.items())))  # the order is not the set
    metrics.force_flush()
    (resource,) = reader.get_metrics_data().resource_metrics
    expected = resource.scope_metrics[0].metrics[0].data.data_points

    def key(point) -> tuple:
        return (
            tuple(sorted(point.attributes.items())),
            (point.count, point.sum, point.min, point.max),
            (list(point.bucket_counts), list(point.explicit_bounds)),
        )

    assert sorted(map(key, _points(exporter))) == sorted(map(key, expected))
    metric = exporter.exports[0].resource_metrics[0].scope_metrics[0].metrics[0]
    assert (metric.name, metric.unit, metric.description) == ("tokens", "{token}", "Tokens.")
    assert metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    metrics.shutdown()


def test_delta_when_the_exporter_prefers_it():
    exporter = Exporter(delta=True)
    metrics = _metrics(exporter)
    duration = metrics.histogram("duration", "s", "", [0.01, 0.02])
    duration.record(0.015, ATTRS)
    metrics.force_flush()
    duration.record(0.5, ATTRS)
    metrics.force_flush()
    first, second = _points(exporter, 0)[0], _points(exporter, 1)[0]
    assert (first.count, first.sum, second.count, second.sum) == (1, 0.015, 1, 0.5)
    assert list(second.bucket_counts) == [0, 0, 1]
    # as the SDK's: a delta starts where the last one ended
    assert second.start_time_unix_nano == first.time_unix_nano > first.start_time_unix_nano
    metrics.force_flush()  # nothing new: nothing sent
    assert len(exporter.exports) == 2
    metrics.shutdown()


@pytest.mark.parametrize(
    ("chosen", "kept"),
    [("trace_based", {0}), ("always_on", {0, 1, 2}), ("always_off", set())],
)
def test_exemplars_by_the_filter_the_operator_chose(chosen: str, kept: set[int]):
    exporter = Exporter()
    metrics = _metrics(exporter, OTEL_METRICS_EXEMPLAR_FILTER=chosen)
    duration = metrics.histogram("duration", "s", "", [1, 2, 3])
    for bucket, span in enumerate([SAMPLED, UNSAMPLED, None]):
        duration.record(bucket + 0.5, ATTRS, span)
    metrics.force_flush()
    (point,) = _points(exporter)
    by_value = {exemplar.value: exemplar for exemplar in point.exemplars}
    assert {int(v) for v in by_value} == kept  # 0: sampled, 1: not sampled, 2: no span
    if 0 in kept:
        assert (by_value[0.5].trace_id, by_value[0.5].span_id) == (
            SAMPLED.trace_id,
            SAMPLED.span_id,
        )
    metrics.force_flush()  # a collection starts the exemplars over, as the SDK's reservoirs
    assert _points(exporter)[0].exemplars == []
    metrics.shutdown()


def test_values_a_histogram_takes_not_are_left_out():
    exporter = Exporter()
    metrics = _metrics(exporter)
    duration = metrics.histogram("duration", "s", "", [1])
    for value in (-1, math.nan, math.inf, -math.inf):
        duration.record(value, ATTRS)
    metrics.force_flush()
    assert exporter.exports == []
    metrics.shutdown()


def test_attribute_sets_are_bounded_by_an_overflow_point():
    """The worst input: a label per chat. Attribute sets past the limit fold into one."""
    exporter = Exporter()
    metrics = _metrics(exporter)
    tokens = metrics.histogram("tokens", "{token}", "", BOUNDS)
    extra = 150
    for i in range(histograms.CARDINALITY_LIMIT + extra):
        tokens.record(1, {**ATTRS, "gen_ai.request.model": f"model-{i}"})
    assert len(tokens.points) == histograms.CARDINALITY_LIMIT
    metrics.force_flush()
    points = _points(exporter)
    (overflow,) = [p for p in points if p.attributes == {"otel.metric.overflow": True}]
    assert overflow.count == extra + 1 and len(points) == histograms.CARDINALITY_LIMIT
    metrics.shutdown()


def test_the_thread_exports_survives_a_failing_collector_and_shutdown_sends_the_last():
    exporter = Exporter()
    exporter.failing = True
    metrics = _metrics(exporter, OTEL_METRIC_EXPORT_INTERVAL="20")
    duration = metrics.histogram("duration", "s", "", [1])
    duration.record(0.5, ATTRS)
    threading.Event().wait(0.1)  # several failed ticks
    exporter.failing = False
    assert exporter.exported.wait(5)
    assert metrics.thread.is_alive()
    duration.record(1.5, ATTRS)
    metrics.shutdown()
    assert not metrics.thread.is_alive() and exporter.closed
    assert _points(exporter)[0].count == 2  # the last export, at shutdown
