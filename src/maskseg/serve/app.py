"""The HTTP service: ``app = create_app(settings)``.

Request path: ``Gate`` (pure ASGI, before any body is read: a free in-flight slot or 503 with
Retry-After, the API key, the body size from Content-Length and then as it streams, the upload
deadline) -> FastAPI route (the upload, checked by content) -> ``Engine`` in a thread pool
(decode with the pixel limit, detect and segment, encode) under the request's deadline.

The model is loaded once per process, in the app's lifespan, and shared by all requests: the
onnxruntime sessions of the detector and the U-Net may be run from several threads at once, and
nothing else in the path keeps per-call state. Nothing is written to disk except what the
multipart parser spools to the system's temporary folder (uploads over 1 MB).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from maskseg import __version__
from maskseg.io import ImageReadError, decode_image
from maskseg.predict import DECODE_SIDE
from maskseg.serve import encode
from maskseg.serve.schemas import (
    RLE,
    BatchItem,
    BatchResult,
    Error,
    FaceOut,
    Health,
    MaskFormat,
    Mode,
    ModelInfo,
    Polygon,
    SegmentResult,
    Timing,
)
from maskseg.serve.settings import API_KEY_HEADER, Settings

log = logging.getLogger("maskseg.serve")

STATIC_DIR = Path(__file__).parent / "static"
SEGMENT_PATH = "/v1/segment"
BATCH_PATH = "/v1/segment/batch"
MULTIPART_SLACK = 64 * 1024  # multipart framing around one image, allowed above the limit
TICKET = "maskseg.ticket"  # the request's in-flight ticket, in the ASGI scope
# auto mode reads an image without faces as one face crop when it is shaped like one: nearly
# square (the MSFD crops the model was trained on are square) and small (a photo of a room is
# larger). A webcam frame (4:3) stays a scene.
CROP_ASPECT = (0.8, 1.25)
CROP_MAX_SIDE = 512
# Accepted image types, recognised by their first bytes (never by name or declared type);
# this also keeps Pillow's other decoders (some call external programs) out of reach.
SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "WebP": (b"RIFF",),  # + "WEBP" at offset 8, checked below
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
}
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ApiError(Exception):
    """An error answered as ``{"error": code, "detail": ...}`` with this status."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def error_response(status: int, code: str, detail: str, headers: dict | None = None):
    return JSONResponse(Error(error=code, detail=detail).model_dump(), status, headers)


def sniff(data: bytes) -> str | None:
    """The image type the bytes start with, among the accepted ones; None otherwise."""
    for kind, heads in SIGNATURES.items():
        if data.startswith(heads) and (kind != "WebP" or data[8:12] == b"WEBP"):
            return kind
    return None


def looks_like_crop(height: int, width: int) -> bool:
    """Whether auto mode may read a faceless image as one face crop (see CROP_ASPECT)."""
    ratio_ok = CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1]
    return ratio_ok and max(height, width) <= CROP_MAX_SIDE


def key_ok(settings: Settings, given: str | None) -> bool:
    if settings.api_key is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), settings.api_key.encode())


# ---------------------------------------------------------------------------- in-flight slots


class Slots:
    """At most ``limit`` requests in flight. A request's ticket is taken before its body is
    read and returned when its answer is sent *and* its work has ended: work that outlived a
    timed-out answer still holds its slot, so threads never pile up beyond the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.busy = 0  # touched from the event loop's thread only

    def take(self, timeout_s: float) -> Ticket | None:
        if self.busy >= self.limit:
            return None
        self.busy += 1
        return Ticket(self, timeout_s)


class Ticket:
    def __init__(self, slots: Slots, timeout_s: float):
        self._slots = slots
        self._holds = 1
        self.timeout_s = timeout_s
        self.start = time.perf_counter()
        self.deadline = time.monotonic() + timeout_s

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def hold(self) -> None:
        self._holds += 1

    def drop(self) -> None:
        self._holds -= 1
        if self._holds == 0:
            self._slots.busy -= 1


class _Abort(Exception):
    """Raised into the app by ``Gate``'s receive when it has refused the body."""


class Gate:
    """ASGI middleware in front of the segment endpoints: answers 503 (no free slot), 401
    (wrong key), 413 (body too large: Content-Length or bytes received) and 408 (upload not
    complete in time) itself, without handing the body to the app."""

    def __init__(self, app: Any, settings: Settings, slots: Slots):
        self.app, self.settings, self.slots = app, settings, slots

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(SEGMENT_PATH):
            return await self.app(scope, receive, send)
        s = self.settings
        ticket = self.slots.take(s.timeout_s)
        if ticket is None:
            return await self._refuse(scope, receive, send, 503, "busy",
                                      f"all {s.max_in_flight} request slots are in use; "
                                      f"retry in {s.retry_after_s} s",
                                      {"Retry-After": str(s.retry_after_s)})  # fmt: skip
        try:
            await self._admit(scope, receive, send, ticket, path)
        finally:
            ticket.drop()

    async def _admit(self, scope, receive, send, ticket: Ticket, path: str) -> None:
        s = self.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not key_ok(s, headers.get(API_KEY_HEADER.lower())):
            return await self._refuse(scope, receive, send, *_unauthorized(headers))
        limit = s.max_batch_bytes if path == BATCH_PATH else s.max_upload_bytes + MULTIPART_SLACK
        too_large = (413, "upload_too_large",
                     f"the request body is over this server's limit of {limit:,} bytes "
                     f"(images up to {s.max_upload_bytes:,} bytes)")  # fmt: skip
        try:
            declared = int(headers.get("content-length", "0"))
        except ValueError:
            declared = 0
        if declared > limit:  # not read: the client is told at once and the socket closed
            return await self._refuse(scope, receive, send, *too_large, drain=False)
        scope[TICKET] = ticket
        failure: tuple | None = None
        received = 0
        complete = False

        async def bounded_receive() -> dict:
            nonlocal failure, received, complete
            if complete:  # e.g. a response listening for the client's disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), ticket.remaining())
            except asyncio.TimeoutError:
                failure = (408, "request_timeout",
                           f"the upload did not complete within {s.timeout_s:g} s")  # fmt: skip
                raise _Abort() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > limit:
                    failure = too_large
                    raise _Abort()
            return message

        async def guarded_send(message: dict) -> None:
            if failure is None:  # the app's own answer to a refused body is replaced
                await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if failure is None:
                raise
        if failure is not None:
            await error_response(*failure, {"Connection": "close"})(scope, receive, send)

    async def _refuse(self, scope, receive, send, status, code, detail, headers=None,
                      drain: bool = True) -> None:  # fmt: skip
        """Answer with an error and close the connection. The body is read (and dropped)
        first, up to the upload limit and for at most a second: closing a socket with unread
        bytes in it makes the kernel reset the connection, and the client may then see a
        reset instead of this answer."""
        if drain:
            await _drain(receive, self.settings.max_batch_bytes, min(1.0, self.settings.timeout_s))
        headers = {**(headers or {}), "Connection": "close"}
        await error_response(status, code, detail, headers)(scope, receive, send)


async def _drain(receive: Callable, limit: int, seconds: float) -> None:
    """Read and drop a request body until it ends, ``limit`` bytes or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    received = 0
    while received <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return  # the client went away
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _unauthorized(headers: dict[str, str]) -> tuple:
    given = headers.get(API_KEY_HEADER.lower())
    detail = f"this server needs an API key in the {API_KEY_HEADER} header" + (
        "; the one sent is wrong" if given else ""
    )
    return 401, "unauthorized", detail


# ---------------------------------------------------------------------------- the engine


@dataclass
class Segmented:
    """One image's answer, before it is encoded."""

    image: np.ndarray  # as decoded (reduced for very large files)
    full: tuple[int, int]  # (height, width) of the file as displayed: the mask's size
    mask: np.ndarray
    faces: list[FaceOut]
    scene_faces: list  # maskseg.scene.Face, for drawing
    mode: Mode
    decode_ms: float
    inference_ms: float


class Engine:
    """The loaded models and the thread pool they run in; one per process.

    Args:
        settings: model, backend, threads, limits.
        predictor: a loaded ``Predictor`` to use instead of loading ``settings.model``.
    """

    def __init__(self, settings: Settings, predictor: Any = None):
        from maskseg.inference import Predictor
        from maskseg.scene import SceneConfig, ScenePredictor

        self.settings = settings
        if predictor is None:
            options = {"threads": settings.threads} if settings.threads else {}
            predictor = Predictor.load(settings.model, backend=settings.backend, **options)
        self.predictor = predictor
        config = SceneConfig(detector=settings.detector, threads=settings.threads or None)
        self.scene = ScenePredictor(predictor, config)
        self.pool = ThreadPoolExecutor(settings.max_in_flight, thread_name_prefix="maskseg")
        # onnxruntime's first run is slow (allocations, kernel choice): not the first user's
        blank = np.full((256, 256, 3), 128, np.uint8)
        self.scene.segment(blank)
        predictor.predict(blank)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def info(self) -> ModelInfo:
        s, p = self.settings, self.predictor
        name = Path(s.model).name if s.model and Path(s.model).suffix else s.model
        from maskseg.inference import DEFAULT_MODEL

        c = self.scene.config
        return ModelInfo(
            name=name or DEFAULT_MODEL,
            architecture=p.config.model.name,
            input_size=p.size,
            threshold=p.threshold,
            backend=p.backend.describe(),
            int8=p.info.get("int8") == "yes",
            detector=f"{c.detector} ({c.mode}, score >= {c.score_threshold})",
            version=__version__,
            limits={"max_upload_bytes": s.max_upload_bytes, "max_batch_bytes": s.max_batch_bytes,
                    "max_batch_files": s.max_batch_files, "max_pixels": s.max_pixels,
                    "max_in_flight": s.max_in_flight, "timeout_s": s.timeout_s},
        )  # fmt: skip

    def decode(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        if sniff(data) is None:
            raise ApiError(415, "unsupported_type", "the upload is not an image of an accepted "
                           f"type ({', '.join(SIGNATURES)}), judged by its content")  # fmt: skip
        try:
            return decode_image(data, max_pixels=self.settings.max_pixels, min_side=DECODE_SIDE)
        except ImageReadError as exc:
            if "over the limit" in exc.reason:
                limit = self.settings.max_pixels / 1e6
                detail = exc.reason.split(" (raise")[0].replace("the limit", "this server's limit")
                raise ApiError(413, "too_many_pixels", f"{detail} ({limit:g} MP)") from None
            reason = f"the image cannot be decoded: {exc.reason}"
            raise ApiError(422, "corrupt_image", reason) from None
        except Exception:  # a decoder's own failure on hostile bytes is still the client's
            log.warning("image decoding failed", exc_info=True)
            raise ApiError(422, "corrupt_image", "the image cannot be decoded") from None

    def segment(self, data: bytes, mode: Mode) -> Segmented:
        """Decode and segment one upload (in a worker thread)."""
        t0 = time.perf_counter()
        image, full = self.decode(data)
        t1 = time.perf_counter()
        ran, scene_faces = mode, []
        if mode != Mode.crop:
            result = self.scene.segment(image, size=full)
            mask, scene_faces = result.mask, result.faces
            ran = Mode.scene
            if mode == Mode.auto and not scene_faces and looks_like_crop(*full):
                ran = Mode.crop
        if ran == Mode.crop:
            mask = self.predictor.predict(image, size=full)
            h, w = full
            box = [0.0, 0.0, float(w), float(h)]
            faces = [FaceOut(box=box, score=None, crop=box, mask_area=round(float(mask.mean()), 4),
                             mask=bool(mask.any()))]  # fmt: skip
        else:
            faces = [FaceOut(**f.as_record()) for f in scene_faces]
        t2 = time.perf_counter()
        return Segmented(image, full, mask, faces, scene_faces, ran,
                         (t1 - t0) * 1e3, (t2 - t1) * 1e3)  # fmt: skip

    def as_json(
        self, data: bytes, mode: Mode, fmt: MaskFormat, tolerance: float, start: float
    ) -> SegmentResult:
        seg = self.segment(data, mode)
        t = time.perf_counter()
        h, w = seg.full
        rle = polygons = None
        if fmt == MaskFormat.rle:
            rle = RLE(**encode.encode_rle(seg.mask))
        elif fmt == MaskFormat.polygons:
            polygons = [Polygon(**p) for p in encode.mask_polygons(seg.mask, tolerance)]
        return SegmentResult(
            mode=seg.mode, requested_mode=mode, width=w, height=h,
            mask_area=round(float(seg.mask.mean()), 6), faces=seg.faces, rle=rle,
            polygons=polygons, timing=_timing(seg, t, start),
        )  # fmt: skip

    def as_mask_png(self, data: bytes, mode: Mode, start: float) -> Response:
        seg = self.segment(data, mode)
        t = time.perf_counter()
        body = encode.png_bytes(seg.mask)
        return Response(body, media_type="image/png", headers=_headers(seg, t, start))

    def as_overlay(self, data: bytes, mode: Mode, start: float) -> Response:
        from maskseg.viz import annotate

        seg = self.segment(data, mode)
        t = time.perf_counter()
        # an image decoded reduced is drawn at its decoded size
        body = encode.jpeg_bytes(annotate(seg.image, seg.mask, seg.scene_faces, seg.full[1]))
        return Response(body, media_type="image/jpeg", headers=_headers(seg, t, start))

    def batch(
        self, files: list[tuple[str | None, bytes]], mode: Mode, fmt: MaskFormat,
        tolerance: float, start: float,
    ) -> BatchResult:  # fmt: skip
        items = []
        for name, data in files:
            try:
                if not data:
                    raise ApiError(400, "empty_upload", "the file is empty")
                result = self.as_json(data, mode, fmt, tolerance, time.perf_counter())
                items.append(BatchItem(filename=name, result=result))
            except ApiError as exc:
                items.append(BatchItem(filename=name, error=Error(error=exc.code,
                                                                  detail=exc.detail)))  # fmt: skip
        ok = sum(i.result is not None for i in items)
        return BatchResult(items=items, ok=ok, failed=len(items) - ok,
                           total_ms=round((time.perf_counter() - start) * 1e3, 2))  # fmt: skip


def _timing(seg: Segmented, encode_start: float, start: float) -> Timing:
    now = time.perf_counter()
    return Timing(decode_ms=round(seg.decode_ms, 2), inference_ms=round(seg.inference_ms, 2),
                  encode_ms=round((now - encode_start) * 1e3, 2),
                  total_ms=round((now - start) * 1e3, 2))  # fmt: skip


def _headers(seg: Segmented, encode_start: float, start: float) -> dict[str, str]:
    t = _timing(seg, encode_start, start)
    return {
        "Server-Timing": f"decode;dur={t.decode_ms}, inference;dur={t.inference_ms}, "
        f"encode;dur={t.encode_ms}, total;dur={t.total_ms}",
        "X-Maskseg-Mode": seg.mode.value,
        "X-Maskseg-Faces": str(len(seg.faces)),
    }


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


def require_key(
    request: Request, key: Annotated[str | None, Depends(api_key_header)]
) -> None:  # fmt: skip
    if not key_ok(get_settings(request), key):
        status, code, detail = _unauthorized({API_KEY_HEADER.lower(): key} if key else {})
        raise ApiError(status, code, detail)


async def run_work(request: Request, fn: Callable, *args: Any) -> Any:
    """Run ``fn(*args)`` in the engine's pool within the request's deadline (its ticket keeps
    the slot until the work ends, even when the answer was a timeout)."""
    engine = get_engine(request)
    ticket: Ticket = request.scope[TICKET]
    loop = asyncio.get_running_loop()
    ticket.hold()
    future = engine.pool.submit(fn, *args)
    future.add_done_callback(lambda _: loop.call_soon_threadsafe(ticket.drop))
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), ticket.remaining())
    except asyncio.TimeoutError:
        raise ApiError(504, "timeout", f"the request was not answered within "
                       f"{ticket.timeout_s:g} s; try a smaller image or retry later"
                       ) from None  # fmt: skip
    except ApiError:
        raise
    except Exception:
        log.exception("segmenting an upload failed")
        raise ApiError(500, "internal_error", "the server failed on this request; the "
                       "details are in its log") from None  # fmt: skip


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
        raise ApiError(413, "upload_too_large", f"{file.filename or 'the file'} is over "
                       f"this server's limit of {limit:,} bytes")  # fmt: skip
    return data


# ---------------------------------------------------------------------------- routes

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": text}
    for code, text in [
        (400, "empty upload"),
        (401, "missing or wrong API key"),
        (408, "upload not complete in time"),
        (413, "upload too large, or too many pixels"),
        (415, "not an image of an accepted type"),
        (422, "corrupt image or invalid parameters"),
        (503, "all request slots busy: retry after Retry-After seconds"),
        (504, "not answered in time"),
    ]
}
ModeQuery = Annotated[Mode, Query(description="auto: scene, or crop for a faceless image "
                                              "shaped like one face crop")]  # fmt: skip
FormatQuery = Annotated[MaskFormat, Query(description="how the JSON carries the mask")]
ToleranceQuery = Annotated[float, Query(ge=0, le=50, description="polygon simplification, px")]
Upload = Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or TIFF image")]


def api_router() -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=ERRORS)

    @router.get("/model", response_model=ModelInfo, summary="the model that answers")
    def model_info(engine: Annotated[Engine, Depends(get_engine)]) -> ModelInfo:
        return engine.info()

    @router.post("/segment", response_model=SegmentResult,
                 summary="faces and the mask of one image, as JSON")  # fmt: skip
    async def segment(
        request: Request, file: Upload, mode: ModeQuery = Mode.auto,
        mask_format: FormatQuery = MaskFormat.rle, tolerance: ToleranceQuery = 1.0,
    ) -> SegmentResult:  # fmt: skip
        return await one_image(request, file, get_engine(request).as_json, mode, mask_format,
                               tolerance)  # fmt: skip

    images = {"content": {"image/png": {}}, "description": "0/255 mask at the image's size"}

    @router.post("/segment/mask", response_class=Response, responses={200: images},
                 summary="the mask of one image, as a PNG")  # fmt: skip
    async def segment_mask(request: Request, file: Upload, mode: ModeQuery = Mode.auto):
        return await one_image(request, file, get_engine(request).as_mask_png, mode)

    jpeg = {"content": {"image/jpeg": {}}, "description": "the image, mask tinted, boxes drawn"}

    @router.post("/segment/overlay", response_class=Response, responses={200: jpeg},
                 summary="the image with its mask tinted and faces boxed, as a JPEG")  # fmt: skip
    async def segment_overlay(request: Request, file: Upload, mode: ModeQuery = Mode.auto):
        return await one_image(request, file, get_engine(request).as_overlay, mode)

    @router.post("/segment/batch", response_model=BatchResult,
                 summary="several images in one request; an image's error does not fail "
                 "the others")  # fmt: skip
    async def segment_batch(
        request: Request,
        files: Annotated[list[UploadFile], File(description="images")],
        mode: ModeQuery = Mode.auto, mask_format: FormatQuery = MaskFormat.rle,
        tolerance: ToleranceQuery = 1.0,
    ) -> BatchResult:  # fmt: skip
        s = get_settings(request)
        if len(files) > s.max_batch_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files; this server takes at "
                           f"most {s.max_batch_files} per batch")  # fmt: skip
        uploads = []
        for f in files:
            data = await f.read(s.max_upload_bytes + 1)
            if len(data) > s.max_upload_bytes:
                raise ApiError(413, "upload_too_large", f"{f.filename or 'a file'} is over "
                               f"this server's limit of {s.max_upload_bytes:,} bytes")  # fmt: skip
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
    app.state.slots = Slots(settings.max_in_flight)
    app.add_middleware(Gate, settings=settings, slots=app.state.slots)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, code.get(exc.status_code, "http_error"),
                              str(exc.detail), getattr(exc, "headers", None))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", _validation_detail(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "the server failed on this request; "
                              "the details are in its log")  # fmt: skip

    @app.get("/health", response_model=Health, summary="liveness and load")
    def health(request: Request) -> Health:
        slots: Slots = request.app.state.slots
        return Health(status="ok", model_loaded=request.app.state.engine is not None,
                      in_flight=slots.busy, max_in_flight=slots.limit)  # fmt: skip

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html",
                            headers={"Content-Security-Policy": PAGE_POLICY,
                                     "Cache-Control": "no-cache"})  # fmt: skip

    app.include_router(api_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _fastapi(**kwargs: Any) -> FastAPI:
    """The app object. With ``fastapi-offline`` (a ``[serve]`` dependency) ``/docs`` and
    ``/redoc`` load Swagger UI and ReDoc from files this server ships, so they work offline;
    without it, FastAPI's own pages load them from a CDN."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(**kwargs)
    return FastAPIOffline(static_url="/docs-assets", favicon_url="/static/favicon.svg", **kwargs)


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (``run`` puts the settings in the
    environment)."""
    return create_app(Settings.from_env())


def run(settings: Settings) -> None:
    """Serve with uvicorn until interrupted (``maskseg serve``)."""
    import os

    import uvicorn

    from maskseg.serve.settings import SETTINGS_ENV

    if not settings.loopback and settings.api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach this address "
                    "can use the service (set one with --api-key or MASKSEG_API_KEY)",
                    settings.host)  # fmt: skip
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run(
        "maskseg.serve.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=5,
        server_header=False,
        log_level="info",
    )
