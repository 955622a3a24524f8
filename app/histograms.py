"""The GenAI client metrics over OTLP: explicit-bucket histograms aggregated here, exported by
the SDK's own OTLP metric exporter (HTTP or gRPC: endpoint, headers, TLS, compression,
retries, temporality preference, the `OTEL_EXPORTER_OTLP_*` variables).

Why not the SDK's `MeterProvider`: a chat records four measurements, and each cost 8-12 µs
there (a `Measurement` object, a consumer, a storage, a view match and a lock per
measurement, each hashing the attributes again): 35 µs a chat against 6 µs here
(`python -m bench.otel --parts`); in `bench.otel`, metrics alone added 7.6% to a chat's CPU,
and 1.3% now. A record here is a bucket's bisection and a few additions under one lock.

What the SDK's reader would do, this does: the export every `OTEL_METRIC_EXPORT_INTERVAL` ms
(60 s) on a thread of its own, each export bounded by `OTEL_METRIC_EXPORT_TIMEOUT`, a last one
at shutdown; cumulative points unless the exporter prefers delta
(`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`); exemplars by `OTEL_METRICS_EXEMPLAR_FILTER`
(`trace_based` by default: the last sampled measurement per bucket, with its span); at most
2,000 attribute sets per instrument, then one overflow point, as the SDK's cardinality limit.
Not done: the exponential histogram a `..._DEFAULT_HISTOGRAM_AGGREGATION` may ask for (the
convention gives explicit buckets). Imported only when metrics are on (app/otel.py).
"""

import logging
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

log = logging.getLogger("chat_relay")

CARDINALITY_LIMIT = 2000  # the SDK's default: attribute sets per instrument
OVERFLOW = frozenset({("otel.metric.overflow", True)})
EXEMPLAR_FILTERS = frozenset({"trace_based", "always_on", "always_off"})


def _millis(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        log.warning("OpenTelemetry: %s is not a number; using %s", name, default)
        return default


class Point:
    """One attribute set's aggregation: counts per bucket, sum, min, max, exemplars."""

    __slots__ = ("attributes", "count", "counts", "exemplars", "max", "min", "start", "sum")

    def __init__(self, attributes: dict[str, Any], buckets: int, start: int) -> None:
        self.attributes, self.start = attributes, start
        self.counts = [0] * buckets
        # per bucket, the last kept measurement: (value, time, span id, trace id)
        self.exemplars: list[tuple | None] = [None] * buckets
        self.count, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf


class Histogram:
    """An explicit-bucket histogram instrument: `record` from the event loop, `collect` from
    the export thread, one lock between them."""

    def __init__(self, metrics: "Metrics", name: str, unit: str, description: str, bounds: list):
        self.metrics, self.name, self.unit, self.description = metrics, name, unit, description
        self.bounds = [float(bound) for bound in bounds]
        self.points: dict[frozenset, Point] = {}
        self.since = 0  # delta: when the last collection was (its points start there)

    def record(self, value: float, attributes: dict[str, Any], span: Any = None) -> None:
        """`value` for `attributes`; `span`: the span context it belongs to (exemplars)."""
        if not 0 <= value < math.inf:  # as the SDK: a histogram takes no negative, no NaN
            return
        key = frozenset(attributes.items())
        metrics = self.metrics
        with metrics.lock:
            point = self.points.get(key)
            if point is None:
                if len(self.points) >= CARDINALITY_LIMIT - 1:
                    key, attributes = OVERFLOW, dict(OVERFLOW)
                    point = self.points.get(key)
                if point is None:
                    point = Point(attributes, len(self.bounds) + 1, self.since or time_ns())
                    self.points[key] = point
            bucket = bisect_left(self.bounds, value)  # (bound i-1, bound i]: the SDK's
            point.counts[bucket] += 1
            point.count += 1
            point.sum += value
            point.min = min(point.min, value)
            point.max = max(point.max, value)
            keep = metrics.exemplars
            sampled = span is not None and span.trace_flags.sampled
            if keep == "always_on" or (sampled and keep == "trace_based"):
                ids = (span.span_id, span.trace_id) if span is not None else (None, None)
                point.exemplars[bucket] = (value, time_ns(), *ids)  # made an Exemplar if sent

    def collect(self, now: int, delta: bool) -> Metric | None:
        """The points so far (delta: since the last collection, then started over)."""
        with self.metrics.lock:
            points = list(self.points.values())
            if delta:
                self.points, self.since = {}, now
            data = [
                HistogramDataPoint(
                    attributes=point.attributes,
                    start_time_unix_nano=point.start,
                    time_unix_nano=now,
                    count=point.count,
                    sum=point.sum,
                    bucket_counts=list(point.counts),
                    explicit_bounds=self.bounds,
                    min=point.min,
                    max=point.max,
                    exemplars=[Exemplar(None, *kept) for kept in point.exemplars if kept],
                )
                for point in points
            ]
            for point in points:  # the SDK's reservoirs start over at each collection
                point.exemplars = [None] * len(point.exemplars)
        if not data:
            return None
        temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        return Metric(self.name, self.description, self.unit, HistogramData(data, temporality))


class Metrics:
    """The instruments of one app, and the thread that exports them."""

    def __init__(
        self,
        exporter: Any,  # the SDK's OTLP metric exporter, HTTP or gRPC
        resource: Any,
        scope: str,
        schema_url: str,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self.exporter, self.resource = exporter, resource
        self.scope = InstrumentationScope(scope, None, schema_url, None)
        self.lock = threading.Lock()
        self.instruments: list[Histogram] = []
        preferred = getattr(exporter, "_preferred_temporality", {}).get(SdkHistogram)
        self.delta = preferred == AggregationTemporality.DELTA
        chosen = env.get("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based").strip().lower()
        if chosen not in EXEMPLAR_FILTERS:
            log.warning("OpenTelemetry: exemplar filter %r unknown; using trace_based", chosen)
            chosen = "trace_based"
        self.exemplars = chosen
        self.interval = _millis(env, "OTEL_METRIC_EXPORT_INTERVAL", 60000) / 1000
        self.timeout_millis = _millis(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30000)
        self.export_lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="OtelGenAIMetrics", daemon=True)
        self.thread.start()

    def histogram(self, name: str, unit: str, description: str, bounds: list) -> Histogram:
        instrument = Histogram(self, name, unit, description, bounds)
        self.instruments.append(instrument)
        return instrument

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.force_flush()

    def force_flush(self, timeout_millis: float | None = None) -> bool:
        """Export what has been recorded (the thread's tick, and the shutdown's last)."""
        with self.export_lock:  # one export at a time: a delta is taken once
            now = time_ns()
            found = [m for m in (i.collect(now, self.delta) for i in self.instruments) if m]
            if not found:
                return True
            scopes = [ScopeMetrics(self.scope, found, self.scope.schema_url or "")]
            data = MetricsData([ResourceMetrics(self.resource, scopes, self.resource.schema_url)])
            try:
                timeout = self.timeout_millis if timeout_millis is None else timeout_millis
                return self.exporter.export(data, timeout_millis=timeout) == (
                    MetricExportResult.SUCCESS
                )
            except Exception:  # never the thread: the next tick tries again
                log.exception("OpenTelemetry: could not export metrics")
                return False

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Stop the thread, export what is left, and shut the exporter."""
        self.stopped.set()
        self.thread.join()
        self.force_flush(timeout_millis)
        self.exporter.shutdown()
