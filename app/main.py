"""The FastAPI application: settings, the shared upstream client, routes, error handling."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import errors, web
from app.api import router
from app.client import make_client
from app.config import Settings

log = logging.getLogger("chat_relay")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(levelname)s:     %(message)s"
        )
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        app.state.client = make_client(settings)
        if settings.mode == "demo":
            log.warning(
                "DEMO MODE: no ANTHROPIC_API_KEY is set; answers come from the embedded "
                "demo upstream, not from Claude."
            )
        else:
            log.info(
                "live mode: upstream %s",
                settings.anthropic_base_url or "api.anthropic.com",
            )
        try:
            yield
        finally:
            await app.state.client.close()

    app = FastAPI(title="chat-relay", lifespan=lifespan)
    app.state.settings = settings
    errors.install(app)
    app.include_router(router)
    web.install(app)
    return app


app = create_app()
