"""The web app: one static page, the JSON API, and the rules every request meets.

Routes: GET / (the page) and its /app.js and /style.css, GET /healthz, GET /api/models, POST /api/predict
(the image file as the raw body). The page's three files are read once when the app is made, so no path a
client sends is ever opened. Every error is JSON {"error": message}; requests whose Host is not a loopback
name are refused while the server listens on loopback. Predictions run in worker threads
(at most `jobs` at once, which also bounds the memory of decoding), never on the event loop.
"""
from __future__ import annotations

import ipaddress
import os
from importlib.resources import files
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import UserError
from .models import Models

MAX_BYTES = 5_000_000      # request body limit: a phone photo fits
PAGE = {"/": ("index.html", "text/html; charset=utf-8"),
        "/app.js": ("app.js", "text/javascript; charset=utf-8"),
        "/style.css": ("style.css", "text/css; charset=utf-8")}
# The page loads nothing but its own files and talks to nothing but this server (no CDN, fonts or images).
HEADERS = [(b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
            b"img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            b"frame-ancestors 'none'"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
           (b"cache-control", b"no-store")]
LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]
SEND_AN_IMAGE = ("send the image file itself as the request body, with its type as Content-Type "
                 "(image/png, image/jpeg, ...)")


class TooLarge(Exception):
    """The request body passed the limit."""


class Guard:
    """ASGI middleware: requests for a Host that is not allowed are refused (400); every response gets the
    security headers."""

    def __init__(self, app, *, hosts: list[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        host = Headers(scope=scope).get("host", "")
        name = host.split("]")[0] + "]" if host.startswith("[") else host.split(":")[0]  # without the port
        if "*" in self.hosts or name.lower() in self.hosts:
            return await self.app(scope, receive, with_headers)
        await error(400, f"Host {host!r} is not served here")(scope, receive, with_headers)


def error(status: int, message: str) -> JSONResponse:
    """A JSON error response: {"error": message}."""
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (TooLarge) as soon as it passes `limit` bytes: the declared length is
    checked first, and the bytes are counted as they arrive whatever was declared."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def allowed_hosts(host: str) -> list[str]:
    """Host headers the app answers: listening on a loopback address, only loopback names (so a web page that
    rebinds its own DNS name to 127.0.0.1 cannot talk to the server); listening wider, any."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return [*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host] if loopback else ["*"]


def create_app(models: Models, *, max_bytes: int = MAX_BYTES, host: str = "127.0.0.1",
               jobs: int | None = None) -> Starlette:
    """The ASGI app serving `models` (loaded once, before the app is made)."""
    static = files(__package__) / "static"
    page = {route: (static.joinpath(name).read_bytes(), kind) for route, (name, kind) in PAGE.items()}
    limiter = anyio.CapacityLimiter(jobs or max(2, min(4, os.cpu_count() or 1)))

    async def page_file(request: Request) -> Response:
        body, kind = page[request.url.path]
        return Response(body, media_type=kind)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"models": models.describe(), "max_bytes": max_bytes, "max_pixels": models.max_pixels})

    async def predict(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not kind.startswith("image/") and kind != "application/octet-stream":
            return error(415, f"Content-Type {kind or 'missing'}: {SEND_AN_IMAGE}")
        try:
            data = await read_body(request, max_bytes)
        except TooLarge:
            return error(413, f"the image is over the limit of {max_bytes:,} bytes; scale it down first")
        if not data:
            return error(400, f"empty body: {SEND_AN_IMAGE}")
        try:
            answer = await anyio.to_thread.run_sync(models.predict, data, limiter=limiter)
        except UserError as e:
            return error(400, str(e))
        return JSONResponse(answer)

    routes = [Route(path, page_file) for path in PAGE]
    routes += [Route("/healthz", healthz), Route("/api/models", list_models),
               Route("/api/predict", predict, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _crash},
                     middleware=[Middleware(Guard, hosts=allowed_hosts(host))])


async def _http_error(request: Request, exc: Any) -> Response:
    response = error(exc.status_code, exc.detail)
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def _crash(request: Request, exc: Exception) -> Response:
    return error(500, f"internal error ({type(exc).__name__}); the server goes on answering")
