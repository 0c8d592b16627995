"""The HTTP side of the request engine: ``Engine`` = the pipeline's ``RequestEngine`` (decode
with limits, mode choice, segmentation, records; no HTTP in it) + what only a web service
needs: the upload judged by its bytes, errors as ``ApiError`` with the status and code the API
answers, answers as Pydantic models or image responses, and the thread pool the work runs in.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.responses import Response

from maskseg import __version__
from maskseg.io import DECODE_SIDE, ImageReadError, UnusableImageError
from maskseg.pipeline import encode
from maskseg.pipeline.detect._base import check_deadline
from maskseg.pipeline.request import Segmented
from maskseg.pipeline.scene import DeadlineExceeded
from maskseg.serve.schemas import (
    RLE,
    BatchItem,
    BatchResult,
    Error,
    FaceOut,
    MaskFormat,
    Mode,
    ModelInfo,
    Polygon,
    SegmentResult,
    Timing,
)
from maskseg.serve.settings import Settings

log = logging.getLogger("maskseg.serve")

# Accepted image types, recognised by their first bytes (never by name or declared type);
# this also keeps Pillow's other decoders (some call external programs) out of reach.
SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "WebP": (b"RIFF",),  # + "WEBP" at offset 8, checked below
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
}


class ApiError(Exception):
    """An error answered as ``{"error": code, "detail": ...}`` with this status."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def sniff(data: bytes) -> str | None:
    """The image type the bytes start with, among the accepted ones; None otherwise."""
    for kind, heads in SIGNATURES.items():
        if data.startswith(heads) and (kind != "WebP" or data[8:12] == b"WEBP"):
            return kind
    return None


# ---------------------------------------------------------------------------- the engine


class Engine:
    """The loaded models and the thread pool they run in; one per process.

    Args:
        settings: model, backend, threads, limits.
        predictor: a loaded ``Predictor`` to use instead of loading ``settings.model``.
    """

    def __init__(self, settings: Settings, predictor: Any = None):
        from maskseg.pipeline.predictor import Predictor
        from maskseg.pipeline.request import RequestEngine
        from maskseg.pipeline.scene import ScenePredictor
        from maskseg.pipeline.scene_config import SceneConfig
        from maskseg.pipeline.wear import WearCheck

        self.settings = settings
        if predictor is None:
            options = {"threads": settings.threads} if settings.threads else {}
            predictor = Predictor.load(settings.model, backend=settings.backend, **options)
        self.predictor = predictor
        config = SceneConfig(
            detector=settings.detector,
            score_threshold=settings.detect_threshold,
            threads=settings.threads or None,
        )
        self.scene = ScenePredictor(predictor, config)
        self.wear = WearCheck()  # every face's wear verdict (one landmark batch per image)
        self.requests = RequestEngine(
            self.scene, max_pixels=settings.max_pixels, decode_side=DECODE_SIDE, wear=self.wear
        )
        self.pool = ThreadPoolExecutor(settings.max_in_flight, thread_name_prefix="maskseg")
        # onnxruntime's first run is slow (allocations, kernel choice): not the first user's
        blank = np.full((256, 256, 3), 128, np.uint8)
        self.scene.segment(blank)
        if config.face_learned is not None:  # read at start, not in a request's thread
            _ = self.scene.learned, self.scene.finder.checker.landmarker
        predictor.predict(blank)
        self.wear.check(blank, [(0, 0, np.ones((256, 256), bool))])

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def info(self) -> ModelInfo:
        s, p = self.settings, self.predictor
        name = Path(s.model).name if s.model and Path(s.model).suffix else s.model
        from maskseg.pipeline.predictor import DEFAULT_MODEL

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
            limits={
                "max_upload_bytes": s.max_upload_bytes,
                "max_batch_bytes": s.max_batch_bytes,
                "max_batch_files": s.max_batch_files,
                "max_pixels": s.max_pixels,
                "max_in_flight": s.max_in_flight,
                "queue": s.queue,
                "queue_timeout_s": s.queue_timeout_s,
                "timeout_s": s.timeout_s,
                "upload_timeout_s": s.upload_timeout_s,
                "min_upload_rate": s.min_upload_rate,
            },
        )

    def decode(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        if sniff(data) is None:
            raise ApiError(
                415,
                "unsupported_type",
                "the upload is not an image of an accepted "
                f"type ({', '.join(SIGNATURES)}), judged by its content",
            )
        try:
            return self.requests.decode(data)
        except UnusableImageError as exc:  # e.g. 4095 x 1: nothing a model could use
            raise ApiError(422, "unusable_image", exc.reason) from None
        except ImageReadError as exc:
            if "over the limit" in exc.reason:  # "... MP, over the limit of N MP (raise ...)"
                detail = exc.reason.split(" (raise")[0].replace("the limit", "this server's limit")
                raise ApiError(413, "too_many_pixels", detail) from None
            reason = f"the image cannot be decoded: {exc.reason}"
            raise ApiError(422, "corrupt_image", reason) from None
        except Exception:  # a decoder's own failure on hostile bytes is still the client's
            log.warning("image decoding failed", exc_info=True)
            raise ApiError(422, "corrupt_image", "the image cannot be decoded") from None

    def segment(
        self,
        data: bytes,
        mode: Mode,
        deadline: float | None = None,
        detect_threshold: float | None = None,
    ) -> Segmented:
        """Decode and segment one upload (in a worker thread). ``deadline`` (time.monotonic):
        past it the work stops at the next stage with a 504 ``ApiError``.
        ``detect_threshold``: the request's minimum detection score (None: the server's)."""
        t = time.perf_counter()
        image, full = self.decode(data)
        decode_ms = (time.perf_counter() - t) * 1e3
        try:
            check_deadline(deadline, "segmenting")
            seg = self.requests.segment(image, full, mode, deadline, detect_threshold)
        except DeadlineExceeded:
            raise timed_out() from None
        seg.decode_ms = decode_ms
        return seg

    def as_json(
        self,
        data: bytes,
        mode: Mode,
        fmt: MaskFormat,
        tolerance: float,
        start: float,
        deadline: float | None = None,
        landmarks: bool = False,
        detect_threshold: float | None = None,
    ) -> SegmentResult:
        seg = self.segment(data, mode, deadline, detect_threshold)
        t = time.perf_counter()
        h, w = seg.full
        rle = polygons = None
        if fmt == MaskFormat.rle:
            rle = RLE(**encode.encode_rle(seg.mask))
        elif fmt == MaskFormat.polygons:
            polygons = [Polygon(**p) for p in encode.mask_polygons(seg.mask, tolerance)]
        return SegmentResult(
            mode=seg.mode,
            requested_mode=mode,
            width=w,
            height=h,
            mask_area=round(float(seg.mask.mean()), 6),
            faces=[FaceOut(**f) for f in seg.face_records(landmarks)],
            rle=rle,
            polygons=polygons,
            timing=_timing(seg, t, start),
        )

    def as_mask_png(
        self,
        data: bytes,
        mode: Mode,
        start: float,
        deadline: float | None = None,
        detect_threshold: float | None = None,
    ) -> Response:
        seg = self.segment(data, mode, deadline, detect_threshold)
        t = time.perf_counter()
        body = encode.png_bytes(seg.mask)
        return Response(body, media_type="image/png", headers=_headers(seg, t, start))

    def as_overlay(
        self,
        data: bytes,
        mode: Mode,
        start: float,
        deadline: float | None = None,
        detect_threshold: float | None = None,
    ) -> Response:
        from maskseg.pipeline.annotate import annotate

        seg = self.segment(data, mode, deadline, detect_threshold)
        t = time.perf_counter()
        # an image decoded reduced is drawn at its decoded size
        shown = annotate(seg.image, seg.mask, seg.faces, seg.full[1], wear=seg.wear)
        body = encode.jpeg_bytes(shown)
        return Response(body, media_type="image/jpeg", headers=_headers(seg, t, start))

    def batch(
        self,
        files: list[tuple[str | None, bytes]],
        mode: Mode,
        fmt: MaskFormat,
        tolerance: float,
        start: float,
        deadline: float | None = None,
        detect_threshold: float | None = None,
        landmarks: bool = False,
    ) -> BatchResult:
        items = []
        for name, data in files:
            try:
                if not data:
                    raise ApiError(400, "empty_upload", "the file is empty")
                try:  # the images not reached in time are not worked on
                    check_deadline(deadline, "the next image of the batch")
                except DeadlineExceeded:
                    raise timed_out() from None
                result = self.as_json(
                    data,
                    mode,
                    fmt,
                    tolerance,
                    time.perf_counter(),
                    deadline,
                    landmarks=landmarks,
                    detect_threshold=detect_threshold,
                )
                items.append(BatchItem(filename=name, result=result))
            except ApiError as exc:
                items.append(
                    BatchItem(filename=name, error=Error(error=exc.code, detail=exc.detail))
                )
        ok = sum(i.result is not None for i in items)
        return BatchResult(
            items=items,
            ok=ok,
            failed=len(items) - ok,
            total_ms=round((time.perf_counter() - start) * 1e3, 2),
        )


def timed_out() -> ApiError:
    """The error for work stopped at its deadline (its answer has already gone out as 504)."""
    return ApiError(504, "timeout", "the request ran past its deadline")


def _timing(seg: Segmented, encode_start: float, start: float) -> Timing:
    now = time.perf_counter()
    return Timing(
        decode_ms=round(seg.decode_ms, 2),
        inference_ms=round(seg.inference_ms, 2),
        encode_ms=round((now - encode_start) * 1e3, 2),
        total_ms=round((now - start) * 1e3, 2),
    )


def _headers(seg: Segmented, encode_start: float, start: float) -> dict[str, str]:
    t = _timing(seg, encode_start, start)
    return {
        "Server-Timing": f"decode;dur={t.decode_ms}, inference;dur={t.inference_ms}, "
        f"encode;dur={t.encode_ms}, total;dur={t.total_ms}",
        "X-Maskseg-Mode": seg.mode.value,
        "X-Maskseg-Faces": str(len(seg.face_records())),
    }
