"""The FastAPI application: settings, the shared upstream client, routes, error handling."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from uvicorn.logging import AccessFormatter

from app import errors, otel, web
from app.api import router
from app.client import make_client
from app.config import Settings
from app.identity import Identities, NotePeer
from app.lifecycle import handle_sigterm
from app.memory import return_large_blocks, settle_gc
from app.response import QuietAbort
from app.runtime import Runtime
from app.telemetry import RedactPaths, WithRequestId, serve_metrics

log = logging.getLogger("chat_relay")
ACCESS_FORMAT = (
    '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s rid=%(request_id)s'
)


def setup_logging(level: str) -> None:
    # Our own lines are JSON objects (or plain messages); uvicorn's access lines gain the
    # request id, so the two can be joined.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(WithRequestId())
    handler.set_name("chat_relay")  # replaced, not doubled, when an app starts again
    log.handlers[:] = [h for h in log.handlers if h.get_name() != "chat_relay"] + [handler]
    log.propagate = False
    log.setLevel(level.upper())
    access_log = logging.getLogger("uvicorn.access")
    for access in access_log.handlers:
        access.addFilter(WithRequestId())
        access.setFormatter(AccessFormatter(ACCESS_FORMAT))
    if not any(isinstance(f, RedactPaths) for f in access_log.filters):
        access_log.addFilter(RedactPaths())  # stream ids are capabilities: not in logs
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietAbort) for f in error_log.filters):
        error_log.addFilter(QuietAbort())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # OpenTelemetry only when OTEL_* asks for it (app/otel.py): this app's own providers.
    otel_setup = otel.configure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setup_logging(settings.log_level)
        return_large_blocks()
        runtime = app.state.runtime = Runtime(settings, make_client(settings))
        if otel_setup is not None:
            runtime.tracing = otel_setup.genai(runtime.client.base_url, runtime.model_labels)
        handle_sigterm(runtime)
        runtime.watchdog.start()
        if runtime.hub is not None:
            runtime.hub.start()
            log.info("MCP servers: %s", ", ".join(runtime.hub.servers))
        if runtime.cluster is not None:
            runtime.cluster.start()
            log.info("replicas share resumable streams and client limits through Redis")
        stop_metrics = serve_metrics(settings.metrics_port) if settings.metrics_port else None
        if settings.mode == "demo":
            log.warning(
                "DEMO MODE: no ANTHROPIC_API_KEY is set; answers come from the embedded "
                "demo upstream, not from Claude."
            )
        else:
            log.info("live mode: upstream %s", settings.anthropic_base_url or "api.anthropic.com")
        settle_gc()
        try:
            yield
        finally:
            if stop_metrics:
                stop_metrics()
            await runtime.close()
            if otel_setup is not None:  # after the streams ended: their spans go too
                await anyio.to_thread.run_sync(otel_setup.shutdown)

    docs = settings.api_docs
    app = FastAPI(
        title="chat-relay",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # Starlette's slash redirect answers before any route checks the Host: it would
        # send `DELETE /api/chat/` with `Host: evil.example` to http://evil.example/.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.identities = Identities(settings)  # a bad RELAY_TOKENS stops the start here
    errors.install(app)
    app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # DELETE stops a resumable answer; Last-Event-ID resumes one.
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "last-event-id", "x-request-id"],
            expose_headers=["retry-after", "x-request-id"],
        )
    web.install(app)  # its headers go on every response, CORS preflights included
    # Outermost: the socket's peer noted, then the client rewritten from X-Forwarded-For.
    app.add_middleware(NotePeer, trusted=settings.forwarded_allow_ips)
    if otel_setup is not None and otel_setup.tracer_provider is not None:
        otel_setup.server_spans(app)  # outermost of all: the whole request in its span
    return app


app = create_app()
