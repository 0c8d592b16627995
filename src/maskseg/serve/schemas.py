"""Pydantic models of every JSON body the API sends (they also make the OpenAPI schema)."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

from maskseg.pipeline.request import Mode  # how an image is read: auto, scene or crop


class MaskFormat(str, Enum):
    """How the JSON carries the full-image mask: COCO RLE, polygons, or not at all."""

    rle = "rle"
    polygons = "polygons"
    none = "none"


class RLE(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed counts, column-major, starting with 0s")


class Polygon(BaseModel):
    exterior: list[int] = Field(description="flat [x1, y1, x2, y2, ...] in image pixels")
    holes: list[list[int]] = Field(default_factory=list)


class Verdict(str, Enum):
    """How the mask is worn (``maskseg.pipeline.wear``)."""

    correct = "correct"
    nose_exposed = "nose_exposed"
    nose_mouth_exposed = "nose_mouth_exposed"
    chin_exposed = "chin_exposed"
    no_mask = "no_mask"


class WearOut(BaseModel):
    verdict: Verdict | None = Field(
        description="correct: nose, mouth and chin covered; nose_exposed; nose_mouth_exposed; "
        "chin_exposed; no_mask; null: the face could not be judged (see reason)"
    )
    nose: bool | None = Field(None, description="the mask covers the nose (null: not judged)")
    mouth: bool | None = Field(None, description="the mask covers the mouth")
    chin: bool | None = Field(None, description="the mask covers the chin")
    coverage: float | None = Field(
        None, description="share of the lower face (nose bridge to chin) covered by the mask"
    )
    reason: str | None = Field(None, description="why the face was not judged")


class FaceOut(BaseModel):
    box: list[float] = Field(description="face box x1, y1, x2, y2 in image pixels")
    score: float | None = Field(description="detector score; null in crop mode")
    crop: list[float] = Field(description="the square that was segmented, x1, y1, x2, y2")
    mask_area: float = Field(description="mask pixels of this face / area of its box")
    mask: bool = Field(description="whether this face wears a mask (any mask pixel)")
    wear: WearOut | None = Field(
        None, description="how the mask is worn, from face landmarks and the mask"
    )
    landmarks: list[list[float]] | None = Field(
        None,
        description="with landmarks=true: the 468 Face Mesh points [x, y] in image pixels "
        "(null where the landmark model failed)",
    )


class Timing(BaseModel):
    decode_ms: float
    inference_ms: float
    encode_ms: float
    total_ms: float = Field(description="from the request's arrival to the answer")


class SegmentResult(BaseModel):
    mode: Mode = Field(description="the mode that ran (auto resolves to scene or crop)")
    requested_mode: Mode
    width: int
    height: int
    mask_area: float = Field(description="mask pixels / image pixels")
    faces: list[FaceOut]
    rle: RLE | None = Field(None, description="with mask_format=rle")
    polygons: list[Polygon] | None = Field(None, description="with mask_format=polygons")
    timing: Timing


class Error(BaseModel):
    error: str = Field(description="a stable code, e.g. upload_too_large")
    detail: str = Field(description="what was wrong, for people")


class BatchItem(BaseModel):
    filename: str | None
    result: SegmentResult | None = None
    error: Error | None = None


class BatchResult(BaseModel):
    items: list[BatchItem]
    ok: int
    failed: int
    total_ms: float


class Health(BaseModel):
    status: str
    model_loaded: bool
    in_flight: int
    max_in_flight: int
    queued: int = Field(0, description="requests whose upload has arrived, waiting for a slot")
    max_queue: int = 0


class ModelInfo(BaseModel):
    name: str = Field(description="the model's name or file")
    architecture: str
    input_size: int = Field(description="side of the square network input, px")
    threshold: float
    backend: str = Field(description="runtime, precision and threads")
    int8: bool
    detector: str
    version: str = Field(description="maskseg version")
    limits: dict[str, int | float]
