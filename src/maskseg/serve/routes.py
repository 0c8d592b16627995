"""The API's routes (``/v1``): the shared state they depend on (engine, settings, the key),
reading an upload, running the work in the engine's pool under the request's deadline, and
the endpoints with their documented errors."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response
from fastapi.security import APIKeyHeader

from maskseg.serve.admission import CHALLENGE, TICKET, Ticket, key_ok, unauthorized
from maskseg.serve.engine import ApiError, Engine
from maskseg.serve.schemas import BatchResult, Error, MaskFormat, Mode, ModelInfo, SegmentResult
from maskseg.serve.settings import API_KEY_HEADER, Settings

log = logging.getLogger("maskseg.serve")


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
        raise ApiError(*unauthorized(key), CHALLENGE)


def _query_names(dependant: Any) -> set[str]:
    """The query parameter names a route (FastAPI's ``Dependant``) and its dependencies take."""
    names = {getattr(f, "alias", None) or f.name for f in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def known_query(request: Request) -> None:
    """Refuse a query parameter the endpoint does not take: a misspelt option
    (``detect_treshold``) would otherwise be ignored without a word, and the answer would
    look like one made with it."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ApiError(
            422,
            "invalid_request",
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; {request.url.path} takes: {takes}",
        )


# A batch's images stop this share of the request's time (at most BATCH_MARGIN_S) before
# its deadline, so the images done so far are answered, with "timeout" for the rest,
# before the whole request would be answered 504 and lose them.
BATCH_MARGIN = 0.25
BATCH_MARGIN_S = 2.0


async def run_work(request: Request, fn: Callable, *args: Any, margin_s: float = 0.0) -> Any:
    """Run ``fn(*args, deadline=...)`` in the engine's pool within the work's deadline. Its
    ticket keeps the slot until the work ends, even when the answer was a timeout; the work
    itself stops at its next stage once the deadline (less ``margin_s``) has passed."""
    engine = get_engine(request)
    ticket: Ticket = request.scope[TICKET]
    loop = asyncio.get_running_loop()
    ticket.hold()
    deadline = ticket.deadline - margin_s
    future = engine.pool.submit(functools.partial(fn, *args, deadline=deadline))
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
DetectThresholdQuery = Annotated[
    float | None,
    Query(
        ge=0,
        le=1,
        description="minimum face detection score for this request (default: the server's "
        "--detect-threshold); lower finds more faces, and more non-faces for the gate to reject",
    ),
]
LandmarksQuery = Annotated[
    bool, Query(description="also return each face's 468 Face Mesh points (the wear check's)")
]
Upload = Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or TIFF image")]


def api_router() -> APIRouter:
    router = APIRouter(
        prefix="/v1",
        # the key first: a client without one learns nothing about the parameters
        dependencies=[Depends(require_key), Depends(known_query)],
        responses=AUTH_ERRORS,
    )

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
        landmarks: LandmarksQuery = False,
        detect_threshold: DetectThresholdQuery = None,
    ) -> SegmentResult:
        as_json = functools.partial(
            get_engine(request).as_json, landmarks=landmarks, detect_threshold=detect_threshold
        )
        return await one_image(request, file, as_json, mode, mask_format, tolerance)

    images = {"content": {"image/png": {}}, "description": "0/255 mask at the image's size"}

    @router.post(
        "/segment/mask",
        response_class=Response,
        responses={200: images, **UPLOAD_ERRORS},
        summary="the mask of one image, as a PNG",
    )
    async def segment_mask(
        request: Request,
        file: Upload,
        mode: ModeQuery = Mode.auto,
        detect_threshold: DetectThresholdQuery = None,
    ):
        fn = functools.partial(get_engine(request).as_mask_png, detect_threshold=detect_threshold)
        return await one_image(request, file, fn, mode)

    jpeg = {"content": {"image/jpeg": {}}, "description": "the image, mask tinted, boxes drawn"}

    @router.post(
        "/segment/overlay",
        response_class=Response,
        responses={200: jpeg, **UPLOAD_ERRORS},
        summary="the image with its mask tinted and faces boxed, as a JPEG",
    )
    async def segment_overlay(
        request: Request,
        file: Upload,
        mode: ModeQuery = Mode.auto,
        detect_threshold: DetectThresholdQuery = None,
    ):
        fn = functools.partial(get_engine(request).as_overlay, detect_threshold=detect_threshold)
        return await one_image(request, file, fn, mode)

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
        landmarks: LandmarksQuery = False,
        detect_threshold: DetectThresholdQuery = None,
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
        batch = functools.partial(
            get_engine(request).batch, detect_threshold=detect_threshold, landmarks=landmarks
        )
        margin = min(BATCH_MARGIN_S, BATCH_MARGIN * s.timeout_s)
        args = (uploads, mode, mask_format, tolerance, start)
        return await run_work(request, batch, *args, margin_s=margin)

    return router
