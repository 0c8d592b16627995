"""BlazeFace (MediaPipe's face detector) on onnxruntime: regions -> one batched model call ->
anchor decoding -> image pixels -> weighted NMS across all regions of an image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskseg.pipeline.detect._base import (
    MIN_TILE_SHARE,
    DetectorOptions,
    FaceDetector,
    check_deadline,
    default_threads,
)
from maskseg.pipeline.detect.anchors import (
    FULL_RANGE,
    SHORT_RANGE,
    AnchorSpec,
    decode,
    generate_anchors,
)
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.detect.nms import weighted_nms
from maskseg.pipeline.detect.regions import (
    Square,
    cut_squares,
    frame_square,
    roi_squares,
    tile_squares,
)
from maskseg.pipeline.preprocess import as_rgb

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODELS = {
    "short": (SHORT_RANGE, WEIGHTS_DIR / "blazeface_short.onnx"),
    "full": (FULL_RANGE, WEIGHTS_DIR / "blazeface_full.onnx"),
}
MAX_BATCH = 32  # regions per onnxruntime call; bounds memory, a deadline is checked between
EDGE_MARGIN = 0.02  # of a tile's side: a box this close to an inner tile edge is cut off


class BlazeFace(FaceDetector):
    """MediaPipe BlazeFace, short range (128 px input) or full range (192 px).

    Args:
        model: "short" or "full".
        options: search settings; see ``DetectorOptions``.
        model_path: another ONNX file with the same inputs/outputs (default: the shipped one).
    """

    def __init__(
        self,
        model: str = "short",
        options: DetectorOptions | None = None,
        model_path: str | Path | None = None,
    ):
        super().__init__(options)
        if model not in MODELS:
            raise ValueError(f"unknown BlazeFace model {model!r}; valid: {', '.join(MODELS)}")
        self.name = "blazeface" if model == "short" else f"blazeface-{model}"
        self.spec: AnchorSpec = MODELS[model][0]
        self.model_path = Path(model_path or MODELS[model][1])
        self.anchors = generate_anchors(self.spec)
        self.score_threshold = (
            self.spec.score_threshold
            if self.options.score_threshold is None
            else self.options.score_threshold
        )
        self._session = _make_session(self.model_path, self.options)

    @property
    def min_tile_side(self) -> float:
        """Smallest tile side in image pixels: the option, else a share of the model input."""
        opt = self.options.min_tile_side
        return MIN_TILE_SHARE * self.spec.input_size if opt is None else float(opt)

    # ------------------------------------------------------------------ regions

    def regions(self, height: int, width: int, rois: np.ndarray | None = None) -> list[Square]:
        """The squares one image is searched in: ROIs if given, else by ``options.mode``."""
        opt = self.options
        if rois is not None:
            return roi_squares(rois, opt.roi_margin)
        squares = [frame_square(height, width)]
        if opt.mode == "tiles":
            tiles = tile_squares(
                height,
                width,
                opt.tile_fraction,
                opt.tile_overlap,
                self.min_tile_side,
                opt.max_tiles,
            )
            if len(tiles) > 1:  # a single tile would repeat the frame pass at best
                squares += tiles
        return squares

    # ------------------------------------------------------------------ detection

    def detect_batch(
        self,
        images: Sequence[np.ndarray],
        rois: Sequence[np.ndarray | None] | None = None,
        *,
        deadline: float | None = None,
        score_threshold: float | None = None,
        blend_floor: float | None = None,
    ) -> list[Detections]:
        """See ``FaceDetector.detect_batch``; ``deadline`` is checked before each image's
        regions are cut and before each model call of ``MAX_BATCH`` regions;
        ``score_threshold`` replaces the options' one for this call (applied as anchors are
        decoded, before the boxes are blended, exactly as a detector built with it);
        ``blend_floor``: see ``weighted_nms``."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if isinstance(images, np.ndarray) and images.ndim < 4:
            raise TypeError("detect_batch takes a list of images; use detect() for one image")
        if rois is not None and len(rois) != len(images):
            raise ValueError(f"got {len(rois)} ROI arrays for {len(images)} images")
        size = self.spec.input_size
        inputs, maps, owners, inner = [], [], [], []
        for i, image in enumerate(images):
            check_deadline(deadline, "cutting detector regions")
            image = as_rgb(image)
            h, w = image.shape[:2]
            squares = self.regions(h, w, None if rois is None else rois[i])
            tiled = rois is None and len(squares) > 1
            for k, (square, (tensor, pixel_map)) in enumerate(
                zip(squares, cut_squares(image, squares, size), strict=True)
            ):
                inputs.append(tensor)
                maps.append(pixel_map)
                owners.append(i)
                inner.append(_inner_edges(square, h, w) if tiled and k > 0 else None)
        regressors, logits = self._run(inputs, deadline)

        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        for j in range(len(inputs)):
            boxes, scores, kps = decode(regressors[j], logits[j], self.anchors, size, threshold)
            if not len(scores):
                continue
            boxes, kps = maps[j].boxes(boxes), maps[j].points(kps)
            if inner[j] is not None:
                keep = ~_touches(boxes, inner[j])
                boxes, scores, kps = boxes[keep], scores[keep], kps[keep]
            found[owners[j]].append((boxes, scores, kps))
        return [self._merge(parts, blend_floor) for parts in found]

    def _merge(
        self,
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        blend_floor: float | None = None,
    ) -> Detections:
        if not parts:
            return Detections.empty()
        boxes, scores, kps = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
        o = self.options
        return Detections(
            *weighted_nms(boxes, scores, kps, o.iou_threshold, o.max_faces, blend_floor)
        )

    def _run(
        self, inputs: list[np.ndarray], deadline: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC crops -> (regressors (N, A, 16), logits (N, A, 1)), MAX_BATCH at a time."""
        n_anchors = len(self.anchors)
        if not inputs:
            return np.zeros((0, n_anchors, 16), np.float32), np.zeros((0, n_anchors, 1), np.float32)
        regs, logs = [], []
        for start in range(0, len(inputs), MAX_BATCH):
            check_deadline(deadline, "the detector model")
            batch = np.stack(inputs[start : start + MAX_BATCH]).astype(np.float32)
            # MediaPipe's output_tensor_float_range [-1, 1]; the ONNX input is NCHW
            batch = np.ascontiguousarray((batch * (2.0 / 255.0) - 1.0).transpose(0, 3, 1, 2))
            reg, log = self._session.run(None, {"input": batch})
            regs.append(reg)
            logs.append(log)
        return np.concatenate(regs), np.concatenate(logs)


def _make_session(path: Path, options: DetectorOptions):
    """An onnxruntime session; onnxruntime is imported here so ``maskseg.pipeline.detect`` imports
    without it (only building a detector needs it)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(
            "face detection needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)"
        ) from exc
    if not path.is_file():
        raise FileNotFoundError(f"{path}: BlazeFace model file not found")
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads or default_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # warnings about unused initialisers are noise here
    # Idle threads sleep instead of spinning: the detector shares the CPU with the
    # segmentation model and the video loop, and spinning cost 30-40% here under load.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = set(ort.get_available_providers())
    providers = [p for p in options.providers if p in available] or ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=so, providers=providers)


def _inner_edges(square: Square, height: int, width: int) -> tuple[float, ...]:
    """A tile's edges that cut through the image, as (left, top, right, bottom) limits; an
    edge on the image border gets +-inf (faces cut by the frame itself are kept)."""
    margin = EDGE_MARGIN * square.side
    right, bottom = square.x + square.side, square.y + square.side
    return (
        square.x + margin if square.x > 0.5 else -np.inf,
        square.y + margin if square.y > 0.5 else -np.inf,
        right - margin if right < width - 0.5 else np.inf,
        bottom - margin if bottom < height - 0.5 else np.inf,
    )


def _touches(boxes: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Boxes reaching an inner tile edge: the face may be cut, another tile holds it whole."""
    left, top, right, bottom = edges
    return (
        (boxes[:, 0] < left) | (boxes[:, 1] < top) | (boxes[:, 2] > right) | (boxes[:, 3] > bottom)
    )
