"""Facial landmarks: MediaPipe's Face Mesh model (468 points) on onnxruntime, for detected faces.

MediaPipe's face-landmark graph (``mediapipe/modules/face_landmark``), re-done in numpy and
OpenCV around the ONNX file ``weights/face_landmark.onnx`` (converted by
``tools/convert_face_landmark.py``):

1. ROI from a detection (``face_detection_front_detection_to_roi.pbtxt``): the box centre; a
   square of 1.5 x the box's longer side; rotated by the angle of the line from the
   detection's right eye (keypoint 0) to its left eye (keypoint 1), so the eyes are level.
2. Crop (``ImageToTensorCalculator``): the rotated square is warped onto 192 x 192 (bilinear,
   border pixels replicated), its corners onto the input's corners; RGB scaled to [0, 1].
3. Model: ``landmarks`` (N, 1404) = 468 x (x, y, z) in input pixels, ``face_flag`` (N, 1) a
   logit whose sigmoid is the face-presence score (MediaPipe drops faces under 0.5).
4. Back to the image (``LandmarkProjectionCalculator``): the crop's affine map inverted
   exactly; z is scaled like x (input pixels -> image pixels).

Several faces of one image go through the model in one call.

    landmarker = FaceLandmarker()
    faces = get_detector("blazeface").detect(image)
    for face in landmarker.for_detections(image, faces):
        if face.presence >= PRESENCE_THRESHOLD:
            nose, chin = face.points[NOSE_TIP], face.points[CHIN]

onnxruntime is imported only when a ``FaceLandmarker`` is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskseg.pipeline.detect._base import DetectorOptions, check_deadline
from maskseg.pipeline.detect.detections import Detections
from maskseg.pipeline.preprocess import as_rgb

MODEL_PATH = Path(__file__).parent / "weights" / "face_landmark.onnx"
INPUT_SIZE = 192
NUM_LANDMARKS = 468
ROI_SCALE = 1.5  # RectTransformationCalculator scale_x = scale_y in MediaPipe's graph
PRESENCE_THRESHOLD = 0.5  # ThresholdingCalculator in face_landmark_cpu.pbtxt
MAX_BATCH = 32  # faces per onnxruntime call; a deadline is checked between calls
LOGIT_CLIP = 100.0

# Named points of the mesh, from MediaPipe's ``face_mesh_connections.py``
# (mediapipe/python/solutions/ in the mediapipe 0.10.21 wheel: FACEMESH_NOSE, FACEMESH_LIPS,
# FACEMESH_LEFT_EYE / RIGHT_EYE, FACEMESH_FACE_OVAL) and its canonical face model
# (mediapipe/modules/face_geometry/data/canonical_face_model_uv_visualization.png).
# "Right"/"left" are the person's, as for BlazeFace's keypoints: on a frontal photo the
# person's right is on the image's left.
NOSE_TIP = 1  # the nose tip as usually taken (FACEMESH_NOSE: ridge 5 - 4 - 1 - 19 - 94 - 2)
NOSE_TIP_UPPER = 4  # just above 1 on the ridge; the most protruding point (least depth)
RIGHT_NOSTRIL = 98  # outer edge of the nostril (ala)
LEFT_NOSTRIL = 327
UPPER_LIP_TOP = 0  # outer lip contour, on the midline
UPPER_LIP_BOTTOM = 13  # inner lip contour
LOWER_LIP_TOP = 14
LOWER_LIP_BOTTOM = 17
RIGHT_MOUTH_CORNER = 61
LEFT_MOUTH_CORNER = 291
CHIN = 152  # the bottom of the face oval
FOREHEAD = 10  # the top of the face oval
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_INNER, LEFT_EYE_OUTER = 362, 263
# FACEMESH_FACE_OVAL's edges as one closed ring: from the forehead down the person's left
# (the image's right on a frontal photo), round the chin and back up.
FACE_OVAL = tuple(
    int(i)
    for i in """10 338 297 332 284 251 389 356 454 323 361 288 397 365 379 378 400 377
    152 148 176 149 150 136 172 58 132 93 234 127 162 21 54 103 67 109""".split()
)
LANDMARK_NAMES = {
    "nose_tip": NOSE_TIP,
    "nose_tip_upper": NOSE_TIP_UPPER,
    "right_nostril": RIGHT_NOSTRIL,
    "left_nostril": LEFT_NOSTRIL,
    "upper_lip_top": UPPER_LIP_TOP,
    "upper_lip_bottom": UPPER_LIP_BOTTOM,
    "lower_lip_top": LOWER_LIP_TOP,
    "lower_lip_bottom": LOWER_LIP_BOTTOM,
    "right_mouth_corner": RIGHT_MOUTH_CORNER,
    "left_mouth_corner": LEFT_MOUTH_CORNER,
    "chin": CHIN,
    "forehead": FOREHEAD,
    "right_eye_outer": RIGHT_EYE_OUTER,
    "right_eye_inner": RIGHT_EYE_INNER,
    "left_eye_inner": LEFT_EYE_INNER,
    "left_eye_outer": LEFT_EYE_OUTER,
}


@dataclass(frozen=True)
class FaceRoi:
    """A rotated square of the image: centre (cx, cy) and side in image pixels, and the angle
    (radians, clockwise on screen since y points down) of the square's x axis.

    The model input of side S shows the square upright: input pixel (u, v) is image point
    ``centre + side / S * R(angle) @ (u - S/2, v - S/2)``, so the input's corners are the
    square's corners (MediaPipe's crop).
    """

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cx", "cy", "side", "angle"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not (math.isfinite(self.side) and self.side > 0):
            raise ValueError(f"ROI side must be > 0, got {self.side}")
        for name in ("cx", "cy", "angle"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"ROI {name} must be finite, got {getattr(self, name)}")

    def _rotation(self) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def matrix(self, size: int = INPUT_SIZE) -> np.ndarray:
        """The 2 x 3 affine map image pixels -> input pixels (``cv2.warpAffine``'s M)."""
        a = (size / self.side) * self._rotation().T
        t = size / 2.0 - a @ np.array([self.cx, self.cy])
        return np.hstack([a, t[:, None]])

    def to_image(self, points: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
        """Input-pixel points (..., 2) -> image pixels (float64)."""
        q = np.asarray(points, np.float64) - size / 2.0
        return q @ ((self.side / size) * self._rotation()).T + np.array([self.cx, self.cy])

    def to_input(self, points: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
        """Image-pixel points (..., 2) -> input pixels (float64); inverse of ``to_image``."""
        m = self.matrix(size)
        return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]

    def corners(self) -> np.ndarray:
        """(4, 2) image pixels of the input's top-left, top-right, bottom-right, bottom-left."""
        unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
        return self.to_image(unit * INPUT_SIZE)


@dataclass(frozen=True)
class FaceLandmarks:
    """One face's mesh, in the image's pixels.

    Attributes:
        points: float32 (468, 2) x, y.
        depth: float32 (468,) MediaPipe's z scaled to image pixels like x: depth relative to
            the face's centre, smaller = nearer the camera (rough; for ordering, not metric).
        presence: the face-presence score, sigmoid of the model's face-flag logit, in [0, 1]
            (MediaPipe keeps a face at >= ``PRESENCE_THRESHOLD``).
        roi: the rotated square that was cropped for the model.
    """

    points: np.ndarray
    depth: np.ndarray
    presence: float
    roi: FaceRoi

    def __post_init__(self) -> None:
        points = np.array(self.points, np.float32).reshape(NUM_LANDMARKS, 2)
        depth = np.array(self.depth, np.float32).reshape(NUM_LANDMARKS)
        for name, arr in (("points", points), ("depth", depth)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "presence", float(self.presence))

    def point(self, name: str) -> np.ndarray:
        """A named point (``LANDMARK_NAMES``), (2,) x, y."""
        if name not in LANDMARK_NAMES:
            raise KeyError(f"unknown landmark {name!r}; valid: {', '.join(LANDMARK_NAMES)}")
        return self.points[LANDMARK_NAMES[name]]

    def oval(self) -> np.ndarray:
        """(36, 2) the face outline (``FACE_OVAL``) as a closed polygon."""
        return self.points[list(FACE_OVAL)]

    def box(self) -> np.ndarray:
        """(4,) x1, y1, x2, y2 around the face oval."""
        oval = self.oval()
        return np.concatenate([oval.min(axis=0), oval.max(axis=0)])


def roi_from_detection(box: np.ndarray, keypoints: np.ndarray, scale: float = ROI_SCALE) -> FaceRoi:
    """MediaPipe's face ROI for one detection: box centre, ``scale`` x the box's longer side,
    rotated so the eyes (keypoints 0 -> 1) lie on the ROI's x axis."""
    x1, y1, x2, y2 = np.asarray(box, np.float64).reshape(4)
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    angle = math.atan2(kp[1, 1] - kp[0, 1], kp[1, 0] - kp[0, 0])
    side = scale * max(x2 - x1, y2 - y1)
    return FaceRoi((x1 + x2) / 2.0, (y1 + y2) / 2.0, side, angle)


def rois_from_detections(detections: Detections, scale: float = ROI_SCALE) -> list[FaceRoi]:
    """``roi_from_detection`` for every face of a ``Detections``."""
    return [
        roi_from_detection(box, kps, scale)
        for box, kps in zip(detections.boxes, detections.keypoints, strict=True)
    ]


def crop_roi(image: np.ndarray, roi: FaceRoi, size: int = INPUT_SIZE) -> np.ndarray:
    """The ROI warped upright onto a (size, size, C) uint8 crop (bilinear, border replicated,
    as MediaPipe's ImageToTensorCalculator)."""
    return cv2.warpAffine(
        image,
        roi.matrix(size),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def presence_scores(flag_logits: np.ndarray) -> np.ndarray:
    """Face-presence scores: sigmoid of the face-flag logits (clipped to +-100), float64."""
    x = np.clip(np.asarray(flag_logits, np.float64), -LOGIT_CLIP, LOGIT_CLIP)
    return 1.0 / (1.0 + np.exp(-x))


def decode_landmarks(
    landmarks: np.ndarray, flag_logits: np.ndarray, rois: Sequence[FaceRoi]
) -> list[FaceLandmarks]:
    """Model outputs -> one ``FaceLandmarks`` per ROI.

    Args:
        landmarks: (N, 1404) or (N, 468, 3) x, y, z in input pixels.
        flag_logits: (N, 1) or (N,) face-flag logits.
        rois: the N ROIs the inputs were cropped from.
    """
    n = len(rois)
    raw = np.asarray(landmarks, np.float64).reshape(n, NUM_LANDMARKS, 3)
    scores = presence_scores(flag_logits).reshape(n)
    return [
        FaceLandmarks(
            points=roi.to_image(raw[i, :, :2]),
            depth=raw[i, :, 2] * (roi.side / INPUT_SIZE),
            presence=float(scores[i]),
            roi=roi,
        )
        for i, roi in enumerate(rois)
    ]


class FaceLandmarker:
    """MediaPipe Face Mesh on onnxruntime: 468 landmarks and a face-presence score per face.

    Args:
        model_path: another ONNX file with the same input/outputs (default: the shipped one).
        threads: onnxruntime intra-op threads; None: ``default_threads()``.
        providers: onnxruntime execution providers, in order of preference.
        roi_scale: ROI side as a multiple of the detection box's longer side.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        roi_scale: float = ROI_SCALE,
    ):
        from maskseg.pipeline.detect.blazeface import _make_session

        self.model_path = Path(model_path or MODEL_PATH)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: face-landmark model file not found")
        if not roi_scale > 0:
            raise ValueError(f"roi_scale must be > 0, got {roi_scale}")
        self.roi_scale = float(roi_scale)
        options = DetectorOptions(threads=threads, providers=tuple(providers))
        self._session = _make_session(self.model_path, options)

    def rois(self, detections: Detections) -> list[FaceRoi]:
        """The ROI of each detection (``rois_from_detections`` with this ``roi_scale``)."""
        return rois_from_detections(detections, self.roi_scale)

    def for_detections(
        self, image: np.ndarray, detections: Detections, *, deadline: float | None = None
    ) -> list[FaceLandmarks]:
        """Landmarks for every detection of ``image``, in the detections' order."""
        return self.for_rois(image, self.rois(detections), deadline=deadline)

    def for_rois(
        self, image: np.ndarray, rois: Sequence[FaceRoi], *, deadline: float | None = None
    ) -> list[FaceLandmarks]:
        """Landmarks in each ROI of ``image`` (RGB uint8; see ``FaceDetector``), all ROIs in
        one model call (``MAX_BATCH`` at most; ``deadline`` is checked before each call)."""
        image = as_rgb(image)
        rois = list(rois)
        if not rois:
            return []
        crops = [crop_roi(image, roi) for roi in rois]
        landmarks, logits = self.run(np.stack(crops), deadline=deadline)
        return decode_landmarks(landmarks, logits, rois)

    def run(
        self, crops: np.ndarray, *, deadline: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, 192, 192, 3) RGB crops -> raw outputs: landmarks (N, 1404) in input
        pixels and face-flag logits (N, 1)."""
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"expected uint8 crops of shape (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), "
                f"got {crops.dtype} {crops.shape}"
            )
        outs, flags = [], []
        for start in range(0, len(crops), MAX_BATCH):
            check_deadline(deadline, "the face-landmark model")
            batch = crops[start : start + MAX_BATCH].astype(np.float32) * (1.0 / 255.0)
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # [0, 1], NCHW
            lm, flag = self._session.run(None, {"input": batch})
            outs.append(lm)
            flags.append(flag)
        if not outs:
            return np.zeros((0, NUM_LANDMARKS * 3), np.float32), np.zeros((0, 1), np.float32)
        return np.concatenate(outs), np.concatenate(flags)

    def __repr__(self) -> str:
        return f"FaceLandmarker(model_path={str(self.model_path)!r})"
