"""Make the example photos in examples/ (run once; the outputs are committed).

The source is scikit-image's "astronaut" test photo (Eileen Collins, NASA, public domain),
which ships inside the scikit-image wheel:

    pip download --no-deps scikit-image -d /tmp/sk
    unzip -p /tmp/sk/scikit_image-*.whl skimage/data/astronaut.png > /tmp/astronaut.png
    python tools/make_examples.py /tmp/astronaut.png examples/

It writes the photo as it is (a face without a mask: a scene whose correct mask is empty),
the same photo with a surgical mask drawn over the lower face, a face crop of that framed
like an MSFD crop, and the drawn mask as ground truth for both. No MSFD image is shipped:
the data set stays outside the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

# Outline of the drawn mask in the 512 x 512 photo: nose bridge, cheeks, jaw, chin.
MASK_OUTLINE = np.array(
    [
        (176, 128),
        (200, 121),
        (224, 119),
        (248, 121),
        (272, 128),
        (279, 150),
        (271, 172),
        (252, 190),
        (226, 198),
        (200, 190),
        (181, 172),
        (172, 150),
    ],
    np.int32,
)
CROP = (150, 56, 300, 206)  # x1, y1, x2, y2: square, the face filling it as in MSFD crops


def draw_mask(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A light-blue pleated surgical mask with ear loops; returns (photo with mask, truth)."""
    out = photo.copy()
    truth = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(truth, [MASK_OUTLINE], 1)
    ys, xs = np.nonzero(truth)
    shade = 1.0 - 0.18 * np.abs(xs - 226) / 55.0  # rounder look: darker towards the sides
    colour = np.array([150, 196, 224], np.float32)
    out[ys, xs] = np.clip(colour[None] * shade[:, None], 0, 255).astype(np.uint8)
    for y in (140, 156, 172):  # pleats
        cv2.line(out, (182, y), (270, y + 2), (118, 160, 190), 2, cv2.LINE_AA)
    cv2.line(out, (176, 129), (166, 112), (225, 232, 236), 2, cv2.LINE_AA)  # ear loops
    cv2.line(out, (181, 172), (168, 124), (225, 232, 236), 2, cv2.LINE_AA)
    cv2.line(out, (272, 129), (284, 112), (225, 232, 236), 2, cv2.LINE_AA)
    cv2.line(out, (271, 172), (284, 124), (225, 232, 236), 2, cv2.LINE_AA)
    out = cv2.GaussianBlur(out, (3, 3), 0.6)  # soften the drawn edges like a photo's
    keep = cv2.dilate(truth, np.ones((9, 9), np.uint8)).astype(bool)
    photo = photo.copy()
    photo[keep] = out[keep]
    return photo, truth.astype(bool)


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    dst.mkdir(parents=True, exist_ok=True)
    photo = cv2.imread(str(src), cv2.IMREAD_COLOR)[..., ::-1]
    masked, truth = draw_mask(photo)
    x1, y1, x2, y2 = CROP
    face = cv2.resize(masked[y1:y2, x1:x2], (250, 250), interpolation=cv2.INTER_AREA)
    face_truth = cv2.resize(truth[y1:y2, x1:x2].astype(np.uint8) * 255, (250, 250)) > 127

    def save(name: str, rgb: np.ndarray, quality: int = 92) -> None:
        cv2.imwrite(str(dst / name), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])

    save("astronaut.jpg", photo)
    save("astronaut_masked.jpg", masked)
    save("face.jpg", face)
    cv2.imwrite(str(dst / "astronaut_masked_truth.png"), truth.astype(np.uint8) * 255)
    cv2.imwrite(str(dst / "face_truth.png"), face_truth.astype(np.uint8) * 255)


if __name__ == "__main__":
    main()
