"""OpenTelemetry, when the operator asks for it: the providers, made from the standard
`OTEL_*` variables, and the hook the stream's upstream requests go through.

Off unless an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the traces or metrics
one); `OTEL_SDK_DISABLED=true` turns it off whatever is set. Off, nothing of OpenTelemetry is
imported here (this module's own imports are the standard library's) and `traced` costs a
test of one attribute per upstream request. On, each piece of the SDK reads its own
variables, as the SDK documents them: the resource (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`), the sampler (`OTEL_TRACES_SAMPLER`, `..._ARG`), the batch
processor (`OTEL_BSP_*`), the span limits, the exporters (endpoint, headers, timeout,
compression, certificates); app/histograms.py reads the metric reader's
(`OTEL_METRIC_EXPORT_INTERVAL`, `..._TIMEOUT`, `OTEL_METRICS_EXEMPLAR_FILTER`) as the SDK
does. Only the protocol is chosen here, because the SDK leaves that to a distro:
`http/protobuf` (the default) or `grpc`, per signal.

The providers belong to the app that made them (passed explicitly, never set globally), so
two relays in one process each export their own, and a relay's lifespan flushes and shuts
down what it made.
"""

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from app.genai import GenAI

log = logging.getLogger("chat_relay")

SERVICE_NAME = "chat-relay"  # unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name one
# Values of OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT that put content on spans
# (opentelemetry-util-genai's: the relay records no events, so EVENT_ONLY puts none).
CAPTURE_ON_SPANS = frozenset({"true", "span_only", "span_and_event"})
# Requests that are not chats: a probe every few seconds would be most of the traces.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# How long the shutdown waits for the last spans and metrics to reach the collector.
FLUSH_MILLIS = 5000

S = TypeVar("S")


@dataclass
class Otel:
    """What an app made of the `OTEL_*` variables: a provider per signal that is on."""

    tracer_provider: Any  # opentelemetry.sdk.trace.TracerProvider, or None
    metrics: Any  # app.histograms.Metrics, or None
    capture_content: bool

    def server_spans(self, app: Any) -> None:
        """The request's SERVER span, continuing an incoming `traceparent`, around each
        request but the probes' (app/serverspan.py, imported only now: tracing is on)."""
        from app.serverspan import ServerSpans

        app.add_middleware(
            ServerSpans, tracer_provider=self.tracer_provider, untraced=UNTRACED_PATHS
        )

    def genai(self, base_url: Any, model_labels: frozenset[str]) -> "GenAI":
        """The GenAI instrumentation of the app's streams (imported only now: it is on).
        `base_url`: the upstream's; `model_labels`: the models metrics name as they are
        (the rest are "other", as in Prometheus's labels)."""
        from opentelemetry.trace import NoOpTracerProvider

        from app.genai import GenAI

        def label(model: str) -> str:
            return model if model in model_labels else "other"

        tracer_provider = self.tracer_provider or NoOpTracerProvider()  # metrics only
        return GenAI(tracer_provider, self.metrics, base_url, label, self.capture_content)

    def shutdown(self) -> None:
        """Export what is pending, then stop the exporters' threads (the app's lifespan)."""
        if self.tracer_provider is not None:
            _quietly(self.tracer_provider.force_flush, FLUSH_MILLIS)
            _quietly(self.tracer_provider.shutdown)
        if self.metrics is not None:  # its shutdown is its last export
            _quietly(self.metrics.shutdown, FLUSH_MILLIS)


def _quietly(step: Callable[..., Any], *args: Any) -> None:
    """A step of the shutdown: an unreachable collector must not fail it."""
    try:
        step(*args)
    except Exception:
        log.warning("OpenTelemetry: could not flush on shutdown", exc_info=True)


def _wanted(signal: str, env: Mapping[str, str]) -> bool:
    """Whether `signal` (TRACES, METRICS) has an OTLP endpoint and is not turned off."""
    if env.get(f"OTEL_{signal}_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _grpc(signal: str, env: Mapping[str, str]) -> bool:
    protocol = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    protocol = protocol.strip().lower()
    if protocol not in ("grpc", "http/protobuf"):
        log.warning("OpenTelemetry: protocol %r is not supported; using http/protobuf", protocol)
    return protocol == "grpc"


def configure(env: Mapping[str, str] = os.environ) -> Otel | None:
    """The providers the variables ask for; None (and nothing imported) when they ask for
    none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    traces, metrics = _wanted("TRACES", env), _wanted("METRICS", env)
    if not (traces or metrics):
        return None
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    capture = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower()
    return Otel(
        _tracer_provider(resource, _grpc("TRACES", env)) if traces else None,
        _metrics(resource, _grpc("METRICS", env)) if metrics else None,
        capture in CAPTURE_ON_SPANS,
    )


def _tracer_provider(resource: Any, grpc: bool) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from app.otlp import GrpcExporter, HttpExporter  # the SDK's, encoding spans faster

    # The sampler comes from OTEL_TRACES_SAMPLER; the batch settings from OTEL_BSP_*.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(GrpcExporter() if grpc else HttpExporter()))
    return provider


def _metrics(resource: Any, grpc: bool) -> Any:
    from app.genai import SCHEMA_URL
    from app.histograms import Metrics  # aggregated here, exported by the SDK's exporter

    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    # OTEL_METRIC_EXPORT_*, OTEL_METRICS_EXEMPLAR_FILTER: read by Metrics as the SDK reads them
    return Metrics(OTLPMetricExporter(), resource, "chat_relay", SCHEMA_URL)


def traced(attempt: Callable[[S], Awaitable[None]]) -> Callable[[S], Awaitable[None]]:
    """One upstream request of a stream, in a CLIENT span when the stream is traced
    (`stream.tracing`, app/genai.py): a retry, or a step of an answer, gets its own."""

    @functools.wraps(attempt)
    async def wrapper(stream: S) -> None:
        tracing = stream.tracing  # type: ignore[attr-defined]
        if tracing is None:
            return await attempt(stream)
        with tracing.attempt(stream):
            return await attempt(stream)

    return wrapper
