"""The HTTP service: ``app = create_app(settings)``; ``run(settings)`` serves it with uvicorn.

Request path: uvicorn with ``connections.GuardedH11Protocol`` (request-head deadline, a JSON
503 beyond ``max_connections``) -> ``admission.Gate`` (pure ASGI: the API key, the body read
under its limits, a slot or a place in the queue) -> FastAPI route (the upload checked by
content) -> ``engine.Engine`` in a thread pool (decode with the pixel limit, detect and
segment, encode) under the work's deadline.

The model is loaded once per process, in the app's lifespan, and shared by all requests.
Nothing is written to disk except what the multipart parser spools to the system's temporary
folder (uploads over 1 MB).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from maskseg import __version__
from maskseg.serve.admission import (
    TICKET,
    Gate,
    Slots,
    Ticket,
    error_response,
    key_ok,
    unauthorized,
)
from maskseg.serve.engine import ApiError, Engine
from maskseg.serve.schemas import (
    BatchResult,
    Error,
    Health,
    MaskFormat,
    Mode,
    ModelInfo,
    SegmentResult,
)
from maskseg.serve.settings import API_KEY_HEADER, Settings

log = logging.getLogger("maskseg.serve")

STATIC_DIR = Path(__file__).parent / "static"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# ---------------------------------------------------------------------------- dependencies


api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="needed only when the server was started with a key",
)


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def require_key(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> None:
    if not key_ok(get_settings(request), key):
        raise ApiError(*unauthorized(key))


async def run_work(request: Request, fn: Callable, *args: Any) -> Any:
    """Run ``fn(*args, deadline=...)`` in the engine's pool within the work's deadline. Its
    ticket keeps the slot until the work ends, even when the answer was a timeout; the work
    itself stops at its next stage once the deadline has passed."""
    engine = get_engine(request)
    ticket: Ticket = request.scope[TICKET]
    loop = asyncio.get_running_loop()
    ticket.hold()
    future = engine.pool.submit(functools.partial(fn, *args, deadline=ticket.deadline))
    future.add_done_callback(lambda _: loop.call_soon_threadsafe(ticket.drop))
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), ticket.remaining())
    except asyncio.TimeoutError:
        raise ApiError(
            504,
            "timeout",
            f"the request was not answered within "
            f"{ticket.timeout_s:g} s; try a smaller image or retry later",
        ) from None
    except ApiError:
        raise
    except Exception:
        log.exception("segmenting an upload failed")
        raise ApiError(
            500, "internal_error", "the server failed on this request; the details are in its log"
        ) from None


async def one_image(request: Request, file: UploadFile, fn: Callable, *args: Any) -> Any:
    """The single-image endpoints: read the upload, then ``fn(data, *args, start)`` as
    ``run_work`` does (``start``: when the request arrived, for the reported timings)."""
    start = request.scope[TICKET].start
    data = await read_upload(file, get_settings(request).max_upload_bytes)
    return await run_work(request, fn, data, *args, start)


async def read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if not data:
        raise ApiError(400, "empty_upload", "the uploaded file is empty")
    if len(data) > limit:
        raise ApiError(
            413,
            "upload_too_large",
            f"{file.filename or 'the file'} is over this server's limit of {limit:,} bytes",
        )
    return data


# ---------------------------------------------------------------------------- routes


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error, "description": text} for code, text in pairs}


AUTH_ERRORS = _errors((401, "missing or wrong API key"))
UPLOAD_ERRORS = _errors(
    (400, "empty upload"),
    (408, "upload not complete in time, or slower than the minimum rate"),
    (413, "upload too large, or too many pixels"),
    (415, "not an image of an accepted type"),
    (422, "corrupt image, an image no model can use (1 pixel high), or invalid parameters"),
    (503, "slots and queue busy, or too many upload bytes held: retry after Retry-After s"),
    (504, "not answered in time"),
)
ModeQuery = Annotated[
    Mode, Query(description="auto: scene, or crop for a faceless image shaped like one face crop")
]
FormatQuery = Annotated[MaskFormat, Query(description="how the JSON carries the mask")]
ToleranceQuery = Annotated[float, Query(ge=0, le=50, description="polygon simplification, px")]
Upload = Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or TIFF image")]


def api_router() -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=AUTH_ERRORS)

    @router.get("/model", response_model=ModelInfo, summary="the model that answers")
    def model_info(engine: Annotated[Engine, Depends(get_engine)]) -> ModelInfo:
        return engine.info()

    @router.post(
        "/segment",
        response_model=SegmentResult,
        responses=UPLOAD_ERRORS,
        summary="faces and the mask of one image, as JSON",
    )
    async def segment(
        request: Request,
        file: Upload,
        mode: ModeQuery = Mode.auto,
        mask_format: FormatQuery = MaskFormat.rle,
        tolerance: ToleranceQuery = 1.0,
    ) -> SegmentResult:
        return await one_image(
            request, file, get_engine(request).as_json, mode, mask_format, tolerance
        )

    images = {"content": {"image/png": {}}, "description": "0/255 mask at the image's size"}

    @router.post(
        "/segment/mask",
        response_class=Response,
        responses={200: images, **UPLOAD_ERRORS},
        summary="the mask of one image, as a PNG",
    )
    async def segment_mask(request: Request, file: Upload, mode: ModeQuery = Mode.auto):
        return await one_image(request, file, get_engine(request).as_mask_png, mode)

    jpeg = {"content": {"image/jpeg": {}}, "description": "the image, mask tinted, boxes drawn"}

    @router.post(
        "/segment/overlay",
        response_class=Response,
        responses={200: jpeg, **UPLOAD_ERRORS},
        summary="the image with its mask tinted and faces boxed, as a JPEG",
    )
    async def segment_overlay(request: Request, file: Upload, mode: ModeQuery = Mode.auto):
        return await one_image(request, file, get_engine(request).as_overlay, mode)

    @router.post(
        "/segment/batch",
        response_model=BatchResult,
        responses=UPLOAD_ERRORS,
        summary="several images in one request; an image's error does not fail the others",
    )
    async def segment_batch(
        request: Request,
        files: Annotated[list[UploadFile], File(description="images")],
        mode: ModeQuery = Mode.auto,
        mask_format: FormatQuery = MaskFormat.rle,
        tolerance: ToleranceQuery = 1.0,
    ) -> BatchResult:
        s = get_settings(request)
        if len(files) > s.max_batch_files:
            raise ApiError(
                413,
                "too_many_files",
                f"{len(files)} files; this server takes at most {s.max_batch_files} per batch",
            )
        uploads = []
        for f in files:
            data = await f.read(s.max_upload_bytes + 1)
            if len(data) > s.max_upload_bytes:
                raise ApiError(
                    413,
                    "upload_too_large",
                    f"{f.filename or 'a file'} is over "
                    f"this server's limit of {s.max_upload_bytes:,} bytes",
                )
            uploads.append((f.filename, data))
        start = request.scope[TICKET].start
        engine = get_engine(request)
        return await run_work(request, engine.batch, uploads, mode, mask_format, tolerance, start)

    return router


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

    @app.get("/health", response_model=Health, summary="liveness and load")
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
    uvicorn.run(
        "maskseg.serve.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **uvicorn_options(settings),
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
