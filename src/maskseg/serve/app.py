"""The HTTP service: ``app = create_app(settings)``; ``run(settings)`` serves it with uvicorn.

Request path: uvicorn with ``connections.GuardedH11Protocol`` (request-head deadline, a JSON
503 beyond ``max_connections``) -> ``admission.Gate`` (pure ASGI middleware: the API key, the
body read under its limits, a slot or a place in the queue) -> the routes of ``routes`` (the
upload checked by content) -> ``engine.Engine`` in a thread pool (decode with the pixel limit,
detect and segment, encode) under the work's deadline. This module is the app factory: the
model's lifespan, the middleware, the error handlers, the page, and uvicorn's settings.

The model is loaded once per process, in the app's lifespan, and shared by all requests.
Nothing is written to disk except what the multipart parser spools to the system's temporary
folder (uploads over 1 MB).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from maskseg import __version__
from maskseg.serve.admission import (
    Gate,
    Slots,
    error_response,
)
from maskseg.serve.engine import ApiError, Engine
from maskseg.serve.routes import api_router
from maskseg.serve.schemas import (
    Health,
)
from maskseg.serve.settings import Settings

log = logging.getLogger("maskseg.serve")

STATIC_DIR = Path(__file__).parent / "static"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(settings: Settings | None = None, predictor: Any = None) -> FastAPI:
    """The service as an ASGI app; the model loads when the app starts (its lifespan).

    Args:
        settings: limits, model, key (default: ``Settings()``).
        predictor: an already loaded ``Predictor`` to serve instead of ``settings.model``.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = await asyncio.to_thread(Engine, settings, predictor)
        log.info("model ready: %s", app.state.engine.scene.describe())
        try:
            yield
        finally:
            app.state.engine.close()

    app = _fastapi(
        title="maskseg",
        version=__version__,
        summary="Segment the face mask a person wears: photos in, masks out.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = None
    app.state.slots = Slots(settings.max_in_flight, settings.queue)
    app.add_middleware(Gate, settings=settings, slots=app.state.slots)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return error_response(
            exc.status_code,
            code.get(exc.status_code, "http_error"),
            str(exc.detail),
            getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", _validation_detail(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            500, "internal_error", "the server failed on this request; the details are in its log"
        )

    # HEAD too: uptime monitors often probe with it
    @app.api_route(
        "/health", methods=["GET", "HEAD"], response_model=Health, summary="liveness and load"
    )
    def health(request: Request) -> Health:
        slots: Slots = request.app.state.slots
        return Health(
            status="ok",
            model_loaded=request.app.state.engine is not None,
            in_flight=slots.busy,
            max_in_flight=slots.limit,
            queued=len(slots.waiting),
            max_queue=slots.queue,
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"},
        )

    app.include_router(api_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _fastapi(**kwargs: Any) -> FastAPI:
    """The app object. With ``fastapi-offline`` (a ``[serve]`` dependency) ``/docs`` loads
    Swagger UI from files this server ships, so it works offline; without it, FastAPI's own
    page loads it from a CDN. ReDoc is not served: its bundle loads its logo from a CDN."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(redoc_url=None, **kwargs)
    return FastAPIOffline(
        static_url="/docs-assets", favicon_url="/static/favicon.svg", redoc_url=None, **kwargs
    )


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (``run`` puts the settings in the
    environment); a worker process sets up its own logging, as the CLI does."""
    from maskseg.console import setup_logging

    setup_logging()
    return create_app(Settings.from_env())


def run(settings: Settings) -> None:
    """Serve with uvicorn until interrupted (``maskseg serve``)."""
    import os

    import uvicorn

    from maskseg.serve.settings import SETTINGS_ENV

    if not settings.loopback and settings.api_key is None:
        log.warning(
            "listening on %s without an API key: anyone who can reach this address "
            "can use the service (set one with --api-key or MASKSEG_API_KEY)",
            settings.host,
        )
    os.environ[SETTINGS_ENV] = settings.to_json()
    # the options read the settings back from the environment, as each worker process does:
    # a protocol class bound to them in this process could not be sent to a worker process
    uvicorn.run(
        "maskseg.serve.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **uvicorn_options(),
        log_level="info",
    )


def uvicorn_options(settings: Settings | None = None) -> dict[str, Any]:
    """uvicorn's connection settings for this service. ``limit_concurrency`` stays off: it
    answers every request with a plain-text 503 once that many connections are open, idle
    ones included; ``GuardedH11Protocol`` bounds connections (JSON 503) and request heads,
    and ``Gate`` bounds the work. ``settings`` given: the protocol bound to them (a server
    in this process); None: read from the environment (``run``'s worker processes)."""
    from maskseg.serve.connections import GuardedH11Protocol

    protocol = GuardedH11Protocol.for_settings(settings) if settings else GuardedH11Protocol
    s = settings or Settings.from_env()
    return {
        "http": protocol,
        "timeout_keep_alive": s.keep_alive_s,
        "limit_concurrency": None,
        "timeout_graceful_shutdown": 5,
        "server_header": False,
    }
