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


class FaceOut(BaseModel):
    box: list[float] = Field(description="face box x1, y1, x2, y2 in image pixels")
    score: float | None = Field(description="detector score; null in crop mode")
    crop: list[float] = Field(description="the square that was segmented, x1, y1, x2, y2")
    mask_area: float = Field(description="mask pixels of this face / area of its box")
    mask: bool = Field(description="whether this face wears a mask (any mask pixel)")


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
