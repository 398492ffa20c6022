"""The FastAPI app: `create_app(...)` builds it, `cnnvis serve` runs it under uvicorn.

Safety, by construction:
- request bodies over the upload limit get 413 (from Content-Length, or as the stream passes
  it); images over the pixel limit (checked from the header, before decoding) and files that
  are not images get 422; every error is JSON `{"detail": ..., "error": ...}` in plain words;
- the server writes no files: uploads are parsed in memory and downloads are made in memory;
- model work runs on a small pool of worker threads (`workers`, default 2), so a burst of
  requests queues instead of holding a graph per request; recorded forwards on one model are
  serialized by the library (`cnnvis.guard.model_lock`), and each request has its own
  recording, target and result, so concurrent requests never see each other's;
- models are loaded on first use and kept in a small LRU; model names are checked by
  `cnnvis.zoo` (unknown names get suggestions); model *files* are only served when given to
  the server at start, never named by a request;
- what a request may ask is guarded (`guards`): API requests from other sites get 403, only
  the served model and `allow_models` patterns may be chosen (hub names never), and every
  work-sized method parameter has a server-side limit (422 naming it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import CnnvisError, Hint
from ..methods import scripted_methods
from ..model import LoadedModel
from .forms import FormError, RequestTimeout, RequestTooLarge
from .guards import LimitError, cross_site_reason, work_limits
from .server import MB, Server, ServerBusy, ServerConfig, WorkStopped

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(
    model_name: str | LoadedModel = "default",
    *,
    weights: str | None = "DEFAULT",
    device: str | None = None,
    output: str | None = None,
    max_upload_mb: float = 20,
    max_pending_mb: float = 100,
    max_pixels: int = 50_000_000,
    cache_size: int = 2,
    max_results: int = 16,
    workers: int = 2,
    allowed_hosts: Sequence[str] | None = None,
    allow_models: Sequence[str] = (),
    limits: Mapping[str, int] | None = None,
    body_timeout_s: float = 60.0,
    work_timeout_s: float = 300.0,
) -> FastAPI:
    """The cnnvis web app: the page at `/`, the JSON API under `/api` (see `/docs`).

    `model_name`: the model served by default ("default", "torchvision:NAME", "timm:NAME",
    a file, or a `LoadedModel` object), with `weights` ("DEFAULT", a weights name, None for
    random init, or a state-dict file) on `device`; other models named by a request load with
    their pretrained weights. `max_upload_mb`: larger request bodies get 413; `max_pending_mb`:
    request bodies held in memory at once (being read, or waiting for a worker); past it, 503. `max_pixels`:
    larger images get 422 before they are decoded. `cache_size` models and `max_results`
    results (for downloads) are kept. `workers`: threads doing model work at once.
    `allowed_hosts`: Host headers accepted (e.g. only loopback names, against DNS rebinding).
    `allow_models`: fnmatch patterns of the models a request may choose besides the served one
    (hub names never). `limits`: work limits changed from `guards.WORK_LIMITS`, e.g.
    `{"steps": 512}`. API requests from pages on other sites get 403. A request body that has
    not arrived within `body_timeout_s` gets 408; model work stops when its client goes away,
    or after `work_timeout_s` (503).
    """
    model = model_name if isinstance(model_name, LoadedModel) else None
    config = ServerConfig(
        model_name=model.name if model is not None else str(model_name),
        weights=weights,
        device=device,
        output=output,
        max_upload_bytes=int(max_upload_mb * MB),
        max_pending_bytes=int(max_pending_mb * MB),
        max_pixels=int(max_pixels),
        cache_size=cache_size,
        max_results=max_results,
        workers=workers,
        allow_models=tuple(allow_models),
        limits=work_limits(limits),
        body_timeout_s=body_timeout_s,
        work_timeout_s=work_timeout_s,
    )
    server = Server(config, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        server.close()

    app = FastAPI(
        title="cnnvis",
        version=__version__,
        summary="See what an image classifier looks at.",
        description="The JSON API behind the cnnvis page. Errors are "
        '`{"detail": "what went wrong and what to do", "error": "ImageError"}`: 413 for an '
        "upload over the size limit, 422 for a non-image, an image over the pixel limit, or an "
        "unknown model, method, layer or target, 404 for an unknown result.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: not offline
        redoc_url=None,
    )
    app.state.cnnvis = server
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    _add_error_handlers(app)

    from .downloads import router as downloads
    from .routes import router

    app.include_router(router)
    app.include_router(downloads)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_page_headers())

    app.add_middleware(GuardMiddleware)
    return app


class GuardMiddleware:
    """Refuses API requests from other sites (403) and adds the security headers to every
    answer. Plain ASGI, not `@app.middleware("http")`: that one hides a client's disconnect
    from the routes, and the work routes stop their work on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        request = Request(scope)
        reason = cross_site_reason(request) if request.url.path.startswith("/api/") else None
        if reason is None:
            await self.app(scope, receive, send_with_headers)
            return
        log.warning("refused a cross-site request to %s: %s", request.url.path, reason)
        response = error_response(
            403,
            f"refused: {reason}; this server only answers its own page and clients that "
            "send no Origin (curl, scripts)",
            "CrossSite",
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send_with_headers)


def _page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}


# errors


def error_response(status: int, detail: str, kind: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": kind}, status_code=status)


def _methods_words(hint: Hint) -> str:
    if hint.detail == "torchscript":
        return f"methods that work: {', '.join(scripted_methods())}"
    return "see /api/methods"


# How the web page and API say each `Hint` of an error: as the endpoint to look at.
WEB_HINTS: dict[str, Callable[[Hint], str]] = {
    "layers": lambda hint: "see /api/layers",
    "methods": _methods_words,
    "models": lambda hint: "see /api/models",
    "samples": lambda hint: "see /api/samples",
    "max-pixels": lambda hint: "",  # the server's limit is the server's
    "output": lambda hint: (
        f"start the server with --output KEY{', one of ' + hint.detail if hint.detail else ''}"
    ),
}


# What is left of a refused body is read and dropped, up to this much, before the 413 goes out
DRAIN_BYTES = 64 * 2**20
DRAIN_SECONDS = 5.0


async def _drain(request: Request) -> None:
    """Read and drop the rest of a refused request body (up to DRAIN_BYTES / DRAIN_SECONDS).

    Closing a connection with unread data makes the kernel reset it, and the reset can reach
    the client before it has read the 413 (seen: httpx got the headers and then "peer closed
    connection without sending complete message body"). Bigger or slower bodies are cut off.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    drained = 0
    while drained < DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(request.receive(), deadline - loop.time())
        except TimeoutError:
            return
        if message.get("type") != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CnnvisError)
    async def library_error(request: Request, error: CnnvisError) -> JSONResponse:
        return error_response(422, error.render(WEB_HINTS), type(error).__name__)

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, error: RequestTooLarge) -> JSONResponse:
        if error.unread:
            await _drain(request)
        response = error_response(413, str(error), "TooLarge")
        response.headers["Connection"] = "close"
        return response

    @app.exception_handler(RequestTimeout)
    async def too_slow(request: Request, error: RequestTimeout) -> JSONResponse:
        response = error_response(408, str(error), "Timeout")
        response.headers["Connection"] = "close"
        return response

    @app.exception_handler(ServerBusy)
    async def busy(request: Request, error: ServerBusy) -> JSONResponse:
        await _drain(request)
        response = error_response(503, str(error), "Busy")
        response.headers["Retry-After"] = "1"
        response.headers["Connection"] = "close"
        return response

    @app.exception_handler(WorkStopped)
    async def stopped(request: Request, error: WorkStopped) -> JSONResponse:
        log.warning("stopped %s: %s", request.url.path, error)
        return error_response(
            503,
            f"stopped: {error}; ask for less work (see /api/limits) or start the server with "
            "a larger --work-timeout",
            "Stopped",
        )

    @app.exception_handler(LimitError)
    async def over_limit(request: Request, error: LimitError) -> JSONResponse:
        return error_response(422, str(error), "LimitError")

    @app.exception_handler(FormError)
    async def bad_form(request: Request, error: FormError) -> JSONResponse:
        return error_response(422, str(error), "FormError")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{where or 'request'}: {item.get('msg', 'is not valid')}")
        return error_response(422, "; ".join(parts), "FormError")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "HTTPError")
        return error_response(error.status_code, str(error.detail), kind)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(
            500, f"the server failed unexpectedly ({type(error).__name__}: {error})", "Internal"
        )


__all__ = ["STATIC", "create_app"]
