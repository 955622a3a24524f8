"""OpenTelemetry is the operator's choice, made with the standard OTEL_* variables: off
unless an OTLP endpoint is set (and then nothing of it is even imported), off again with
OTEL_SDK_DISABLED, and each variable read by the SDK as it documents it."""

import subprocess
import sys
import time

from app import otel
from tests.fake_upstream import answer
from tests.support import ROOT, post_chat

# A relay in a process of its own, without OTEL_*: one demo chat, then what it imported.
NOTHING_IMPORTED = """
import asyncio, sys
import httpx2, uvicorn
from app.config import Settings
from app.main import create_app

async def main():
    app = create_app(Settings(_env_file=None, demo_token_delay=0))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx2.AsyncClient() as client:
        reply = await client.post(f"http://127.0.0.1:{port}/api/chat", json={"message": "hi"})
        assert "event: done" in reply.text
    server.should_exit = True
    await task

asyncio.run(main())
wanted = ("app.genai", "opentelemetry.sdk.trace", "opentelemetry.exporter", "grpc")
print(sorted(m for m in sys.modules if m.startswith(wanted)))
"""


def test_off_without_an_endpoint_and_nothing_of_it_imported():
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no OTEL_* at all
    assert otel.configure(env) is None
    done = subprocess.run(
        [sys.executable, "-c", NOTHING_IMPORTED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_nothing_sent_when_the_sdk_is_disabled(make_relay, upstream, otlp, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    relay = make_relay()
    assert relay.state.runtime.tracing is None
    upstream.push(answer("ok"))
    assert post_chat(relay).events[-1] == "done"
    time.sleep(0.6)  # three metric export intervals, twelve span batches
    assert otlp.bodies == []


def test_the_sampler_variables_are_the_sdks(make_relay, upstream, otlp, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    relay = make_relay()
    upstream.push(answer("ok"))
    assert post_chat(relay).events[-1] == "done"
    otlp.wait_for_points("gen_ai.client.operation.duration")  # metrics still go
    time.sleep(0.3)
    assert otlp.spans == []


def test_each_signal_has_its_own_endpoint_and_exporter_switch():
    base = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}
    made = otel.configure(base)
    assert made is not None and made.metrics is None and made.tracer_provider
    made.tracer_provider.shutdown()
    off = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"}
    made = otel.configure(off)
    assert made is not None and made.tracer_provider is None and made.metrics
    made.metrics.shutdown()


def test_grpc_and_the_resource_variables(make_relay, upstream, otlp, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.grpc())
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "relay-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    relay = make_relay()
    upstream.push(answer("ok"))
    assert post_chat(relay).events[-1] == "done"
    spans = otlp.wait_for_spans(lambda spans: any(s.name.startswith("chat ") for s in spans))
    assert otlp.grpc_exports > 0
    resource = spans[0].resource
    assert resource["service.name"] == "relay-eu"
    assert resource["deployment.environment.name"] == "test"
