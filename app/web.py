"""The chat page: static files from `static/`, and the headers every response carries."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.telemetry import take_request_id

STATIC = Path(__file__).resolve().parent.parent / "static"

# The page needs nothing but its own origin: no inline script or style, no CDN, no frames;
# `blob:` images are the thumbnails of the files it attaches.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class ResponseHeaders:
    """Adds the security headers and the request id to every response. One pure ASGI
    middleware for both: every frame of a stream passes through it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*SECURITY_HEADERS, (b"x-request-id", take_request_id(scope).encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CachedStatic(StaticFiles):
    """Vendored files carry their version in their name, so they never change: cache them
    for good. Our own files revalidate (cheaply, by ETag) so a deploy shows at once."""

    def file_response(self, full_path, stat_result, scope, status_code=200):  # type: ignore[no-untyped-def]
        response = super().file_response(full_path, stat_result, scope, status_code)
        # The path inside static/, not the absolute one: an install path that happens to
        # contain /vendor/ must not make every file immutable.
        immutable = Path(full_path).is_relative_to(STATIC / "vendor")
        response.headers["cache-control"] = (
            "public, max-age=31536000, immutable" if immutable else "no-cache"
        )
        return response


def install(app: FastAPI) -> None:
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", CachedStatic(directory=STATIC), name="static")
    app.add_middleware(ResponseHeaders)
