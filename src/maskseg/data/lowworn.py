"""Masks worn low, made from labelled pairs: an MSFD mask pasted onto a face without one.

The mask-presence gate learnt "mask" from masks worn over nose and mouth; a mask pulled under
the nose, onto the chin or down to the neck shows the gate only its top edge in a window
framed like MSFD's crops, and it says "no mask" (maskedface-seg's chin-worn masks). Real
photos of low-worn masks with pixel labels are not available to train shipped weights on
(maskedface-seg's licence forbids it), so they are composited: the mask pixels of an MSFD
pair are moved onto an unmasked face from ``faces/without_mask``, aligned by the detector's
keypoints (the eyes), shifted down the face by a drawn amount, matched to the face's
brightness and feathered at the edge. The label is the pasted alpha >= 0.5, pixel-exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskseg.pipeline.detect.anchors import KEYPOINT_NAMES

# the rows of ``Detections.keypoints`` a mask is placed by
RIGHT_EYE = KEYPOINT_NAMES.index("right_eye")
LEFT_EYE = KEYPOINT_NAMES.index("left_eye")
MOUTH = KEYPOINT_NAMES.index("mouth_center")


@dataclass(frozen=True)
class Pasted:
    """One composite: the picture, its mask label and how far the mask was moved down
    (in eye-to-mouth distances; 0 = where it sat on its own face)."""

    image: np.ndarray  # RGB uint8 (H, W, 3)
    label: np.ndarray  # bool (H, W)
    drop: float


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, shift) taking the two points ``src``
    (2, 2) onto ``dst`` (2, 2) exactly."""
    s = complex(*(src[1] - src[0]))
    d = complex(*(dst[1] - dst[0]))
    if abs(s) < 1e-6 or abs(d) < 1e-6:
        raise ValueError("keypoints do not define a similarity (the eyes coincide)")
    z = d / s  # rotation and scale as one complex factor
    a, b = z.real, z.imag
    rot = np.array([[a, -b], [b, a]])
    shift = dst[0] - rot @ src[0]
    return np.c_[rot, shift]


def face_transform(source_keypoints: np.ndarray, keypoints: np.ndarray, drop: float) -> np.ndarray:
    """The 2 x 3 map from the source face onto the target face: the eyes onto the eyes (a
    masked face's mouth and nose keypoints are the detector's guesses under the mask, so only
    the eyes align), then ``drop`` eye-to-mouth distances down the target face, along the line
    from its eyes' midpoint to its mouth, so a tilted face drops the mask along itself."""
    src = np.asarray(source_keypoints, np.float64).reshape(-1, 2)
    dst = np.asarray(keypoints, np.float64).reshape(-1, 2)
    m = similarity(src[[RIGHT_EYE, LEFT_EYE]], dst[[RIGHT_EYE, LEFT_EYE]])
    down = dst[MOUTH] - (dst[RIGHT_EYE] + dst[LEFT_EYE]) / 2
    m[:, 2] += drop * down
    return m


def paste_mask(
    face: np.ndarray,
    face_keypoints: np.ndarray,
    source: np.ndarray,
    source_mask: np.ndarray,
    source_keypoints: np.ndarray,
    drop: float,
    feather: float = 0.04,
    match_light: bool = True,
) -> Pasted:
    """Paste ``source``'s mask pixels onto ``face``, aligned by keypoints and moved down.

    Args:
        face: RGB uint8 picture of a face without a mask (any size).
        face_keypoints, source_keypoints: BlazeFace keypoints (6, 2) in each picture's pixels.
        source, source_mask: an MSFD pair (RGB crop, bool mask).
        drop: how far down the face to move the mask, in eye-to-mouth distances (0: worn as
            on its own face; about 0.4: under the nose; 0.8: on the chin; 1.2: at the neck).
        feather: edge softness: the sigma of a Gaussian on the alpha, as a share of the
            eye-to-mouth distance, so no model can key on a hard seam.
        match_light: scale the mask's brightness by the target face's over the source's
            (each measured on the skin around the eyes, outside any mask), clipped to
            0.6-1.6: a mask photographed in one light pasted into another looks stuck on.

    Returns:
        ``Pasted``: the composite and its label (alpha >= 0.5 inside the picture).
    """
    m = face_transform(source_keypoints, face_keypoints, drop)
    src_pts = np.asarray(source_keypoints, np.float32).reshape(-1, 2)
    dst_pts = np.asarray(face_keypoints, np.float32).reshape(-1, 2)
    h, w = face.shape[:2]
    alpha = cv2.warpAffine(
        source_mask.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0
    )
    scale = float(np.linalg.norm(dst_pts[MOUTH] - (dst_pts[RIGHT_EYE] + dst_pts[LEFT_EYE]) / 2))
    sigma = max(0.5, feather * scale)
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    label = alpha >= 0.5
    pasted = cv2.warpAffine(
        source.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    if match_light:
        gain = _light(face, dst_pts) / max(1.0, _light(source, src_pts, source_mask))
        pasted *= float(np.clip(gain, 0.6, 1.6))
    a = alpha[..., None]
    out = a * pasted + (1 - a) * face.astype(np.float32)
    return Pasted(np.clip(out + 0.5, 0, 255).astype(np.uint8), label, float(drop))


def _light(image: np.ndarray, pts: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean grey level of a band around the eyes (skin, hair, brows: the upper face a mask
    never covers), outside ``mask``."""
    h, w = image.shape[:2]
    eyes = (pts[RIGHT_EYE] + pts[LEFT_EYE]) / 2
    r = max(2.0, float(np.linalg.norm(pts[RIGHT_EYE] - pts[LEFT_EYE])))
    x1, x2 = int(max(0, eyes[0] - r)), int(min(w, eyes[0] + r))
    y1, y2 = int(max(0, eyes[1] - 0.5 * r)), int(min(h, eyes[1] + 0.5 * r))
    if x2 <= x1 or y2 <= y1:
        return float(image.mean())
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    if mask is not None:
        keep = ~mask[y1:y2, x1:x2].astype(bool)
        if keep.sum() >= 16:
            return float(grey[keep].mean())
    return float(grey.mean())


def visible_share(label: np.ndarray, rect: np.ndarray) -> float:
    """The share of a square window (x1, y1, x2, y2, may reach past the picture) that is
    label: how much of a pasted mask the gate's crop shows."""
    x1, y1, x2, y2 = (int(round(v)) for v in rect)
    area = max(1, (x2 - x1) * (y2 - y1))
    h, w = label.shape
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if cx2 <= cx1 or cy2 <= cy1:
        return 0.0
    return float(label[cy1:cy2, cx1:cx2].sum()) / area
