# chat-relay: multi-stage. uv installs the locked runtime dependencies in a builder; the
# runtime image gets the virtualenv and the code, runs as a non-root user, and holds no
# secret, no dev dependency and no test.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
# Only for builds behind a TLS-intercepting proxy: a CA bundle for uv to trust. Build-time
# only; the runtime stage below never sees it.
ARG SSL_CERT_FILE
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
COPY pyproject.toml uv.lock .python-version ./
RUN uv sync --locked --no-dev --no-install-project
COPY app ./app
COPY static ./static

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 relay \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin relay
WORKDIR /app
COPY --from=builder /app /app
# FORWARDED_ALLOW_IPS: the proxies whose X-Forwarded-For is trusted. WEB_CONCURRENCY, if
# set, is the number of uvicorn workers; unset, one per CPU the container may use.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FORWARDED_ALLOW_IPS=127.0.0.1 \
    SHUTDOWN_GRACE_SECONDS=20
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# uvicorn on 0.0.0.0:8000, a worker per CPU the container may use (app/__main__.py; the app
# rewrites X-Forwarded-For itself, from FORWARDED_ALLOW_IPS). The relay drains for
# SHUTDOWN_GRACE_SECONDS on SIGTERM before uvicorn's own shutdown starts; uvicorn's
# graceful timeout (5 s) then only covers what is left.
CMD ["python", "-m", "app"]
