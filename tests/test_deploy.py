"""The deployment files: the Dockerfile lints, the manifests validate against the
Kubernetes schemas and agree with the app's settings, the nginx example is sound."""

import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx2
import pytest
import yaml

from app import otel
from app.__main__ import UVICORN_GRACE
from app.config import Settings
from app.runtime import KEPT_BYTES_PER_SLOT
from tests.support import BODY_COPIES, free_port

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def load(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def test_dockerfile_lints_clean():
    result = run(shutil.which("hadolint") or "hadolint", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_validate_against_the_kubernetes_schemas():
    result = run("kubernetes-validate", "--strict", "--quiet", *map(str, MANIFESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    kustomization = load("kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in MANIFESTS if p.name != "secret.example.yaml"
    )


def test_the_validator_does_catch_mistakes(tmp_path):
    broken = (K8S / "deployment.yaml").read_text().replace("readinessProbe:", "readinesProbe:")
    (tmp_path / "broken.yaml").write_text(broken)
    assert (
        run("kubernetes-validate", "--strict", "--quiet", str(tmp_path / "broken.yaml")).returncode
        != 0
    )


def test_manifests_agree_with_the_app():
    deployment = load("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = load("configmap.yaml")["data"]
    grace = float(config["SHUTDOWN_GRACE_SECONDS"])
    assert 'CMD ["python", "-m", "app"]' in dockerfile()
    uvicorn_grace = UVICORN_GRACE
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pause + grace + uvicorn_grace
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    for secret in ("ANTHROPIC_API_KEY", "REDIS_URL"):  # the Redis URL holds a password
        key = next(e for e in container["env"] if e["name"] == secret)
        assert key["valueFrom"]["secretKeyRef"]["name"] == "chat-relay"
        assert secret not in config
    # Every configured setting is one the app knows.
    known = {name.upper() for name in Settings.model_fields} | {"FORWARDED_ALLOW_IPS"}
    assert set(config) <= known
    # Metrics on their own port, which the Service does not expose.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == int(config["METRICS_PORT"])
    assert {p["targetPort"] for p in load("service.yaml")["spec"]["ports"]} == {"http"}
    assert "10.0.0.0/8" not in config["FORWARDED_ALLOW_IPS"]
    # The pod's user is the image's user.
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile()


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_env_example_lists_every_setting():
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", text, re.M))
    assert listed == {name.upper() for name in Settings.model_fields}


def test_nginx_example():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    # Resumed answers (GET /api/chat/<id>) stream too: the prefix, not just the one path.
    chat = conf[conf.index("location /api/chat {") :]
    chat = chat[: chat.index("}")]
    for directive in ("proxy_buffering off", "proxy_cache off", "proxy_read_timeout 120s"):
        assert directive in chat
    assert "X-Forwarded-For" in conf
    # nginx lets through the bodies the relay takes (attachments: up to 32 MiB).
    nginx_mb = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1))  # type: ignore[union-attr]
    assert nginx_mb * 2**20 >= int(load("configmap.yaml")["data"]["MAX_BODY_BYTES"])
    # The access log never holds a stream id (the capability to read and stop it).
    assert "access_log /var/log/nginx/access.log relay;" in conf
    log_format = conf[conf.index("log_format relay") : conf.index("access_log")]
    assert "$loggable_uri" in log_format and "$request " not in log_format
    assert "$request_uri" not in log_format
    nginx = nginx_binary()
    # Check the syntax with a throwaway certificate where the example expects one.
    text = conf.replace("/etc/nginx/tls/", str(ROOT / "test-artifacts" / "tls") + "/")
    tls = ROOT / "test-artifacts" / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=x",
            "-keyout",
            str(tls / "privkey.pem"),
            "-out",
            str(tls / "fullchain.pem"),
        ],
        capture_output=True,
        check=True,
    )
    (tls / "nginx.conf").write_text(text)
    result = run(str(nginx), "-t", "-q", "-c", str(tls / "nginx.conf"), "-e", "stderr")
    assert result.returncode == 0, result.stderr


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        pytest.skip("nginx not installed")
    return found


def test_nginx_logs_no_stream_id(tmp_path):
    # The example's own map and log format, in a real nginx on 127.0.0.1.
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    logging = conf[conf.index("    map $request_uri") : conf.index("    access_log")]
    port = free_port()
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\n{logging}\n  access_log {tmp_path}/access.log relay;\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}\n}}\n"
    )
    nginx = subprocess.Popen(
        [nginx_binary(), "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)]
    )
    try:
        secret = "S3cretStreamId_0123456789abcdefg"
        for _ in range(50):
            try:
                httpx2.get(f"http://127.0.0.1:{port}/api/chat/{secret}")
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        httpx2.delete(f"http://127.0.0.1:{port}/api/chat/{secret}/stream")
        httpx2.get(f"http://127.0.0.1:{port}/api/config")
    finally:
        nginx.terminate()
        nginx.wait(5)
    log = (tmp_path / "access.log").read_text()
    assert secret not in log
    assert '"GET /api/chat/- ' in log and '"DELETE /api/chat/-/stream ' in log
    assert '"GET /api/config ' in log


# Measured by bench/ (idle scenario): an idle relay's RSS, and RSS per open stream.
PROCESS_MB, STREAM_MB = 112, 0.072
# A resumable stream keeps its frames: about 54 bytes for a delta of 4 characters
# (tests/test_journal.py); 80 leaves room for 30-byte deltas. At most one a token.
JOURNAL_FRAME_MB = 80 / 2**20


def test_the_memory_limit_covers_the_worst_case():
    config = load("configmap.yaml")["data"]
    (container,) = load("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    limit_mb = int(container["resources"]["limits"]["memory"].removesuffix("Mi")) * 1.048576
    streams = int(config["MAX_CONCURRENT_STREAMS"])
    # Request bodies (images and PDFs in them) are held from their first byte read to their
    # first delta, within MAX_HELD_BODY_BYTES for the process, at BODY_COPIES each.
    held_mb = int(config["MAX_HELD_BODY_BYTES"]) / 2**20
    assert int(config["MAX_BODY_BYTES"]) <= int(config["MAX_HELD_BODY_BYTES"])
    # After its first delta a stream holds its frames (if resumable). Finished answers kept
    # for resuming have a budget of their own (app/runtime.py).
    journal_mb = int(config["MAX_TOKENS_LIMIT"]) * JOURNAL_FRAME_MB
    kept_mb = streams * KEPT_BYTES_PER_SLOT / 2**20
    worst = PROCESS_MB + streams * (STREAM_MB + journal_mb) + kept_mb + BODY_COPIES * held_mb
    # The settings are per worker, and the image runs a worker per CPU of `limits.cpu`.
    workers = math.ceil(float(container["resources"]["limits"]["cpu"]))
    worst *= workers
    assert worst <= limit_mb, f"worst case {worst:.0f} MB over the {limit_mb:.0f} MB limit"


def test_the_configmaps_opentelemetry_lines_turn_it_on():
    # Commented out (no collector is assumed); uncommented, they make traces and metrics.
    text = (ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text()
    lines = re.findall(r"^  # (OTEL_[A-Z_]+): (\S+)", text, re.M)
    env = {name: value.strip('"') for name, value in lines}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
    made = otel.configure(env)
    assert made is not None and made.tracer_provider and made.metrics
    assert not made.capture_content
    made.tracer_provider.shutdown()
    made.metrics.shutdown()
