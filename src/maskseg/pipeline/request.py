"""One image in, its mask and faces out, the same way for every front end.

A front end (the CLI's ``predict``, ``maskseg serve``, a batch engine) hands bytes or a path to
``RequestEngine.run``: the image is decoded under the pixel limit and reduced to what the
models need (``maskseg.io.decode_image``), read as a face crop or as a scene (``Mode``; ``auto``
picks one per image), segmented, and described as plain records. Nothing here knows about HTTP
or files: errors are ``maskseg.io.ImageReadError`` (and its ``UnusableImageError``) and
``maskseg.pipeline.scene.DeadlineExceeded``; encodings of the mask (COCO RLE, polygons, PNG)
are in ``maskseg.pipeline.encode``.

With a ``WearCheck`` (``maskseg.pipeline.wear``), every face is also judged after
segmentation: Face Mesh landmarks (one batch per image) and its part of the mask give
``"wear": {"verdict", "nose", "mouth", "chin", "coverage"}`` in its record, or ``{"verdict":
null, "reason": ...}`` when it cannot be judged. In crop mode the one face is the picture and
the landmarks' ROI is built from the whole picture (``maskseg.pipeline.wear.picture_roi``).
Each face's part of the mask is what its crop window holds; where windows overlap, a pixel
belongs to the face with a mask whose box centre is nearest (in units of the box's size; a
face without a mask owns none), so the parts never overlap and together make the whole mask
(``Segmented.face_parts``).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from maskseg.io import DECODE_SIDE, DEFAULT_MAX_PIXELS, ImageSource, decode_image
from maskseg.pipeline.detect._base import check_deadline
from maskseg.pipeline.encode import encode_rle
from maskseg.pipeline.scene import Face, ScenePredictor
from maskseg.pipeline.wear import Wear, WearCheck

# auto mode reads an image without faces as one face crop when it is shaped like one: nearly
# square (the MSFD crops the model was trained on are square) and small (a photo of a room is
# larger). A webcam frame (4:3) stays a scene.
CROP_ASPECT = (0.8, 1.25)
CROP_MAX_SIDE = 512


class Mode(str, Enum):
    """How an image is read.

    auto: as a scene; when no face is found and the image is shaped like one face crop
    (``looks_like_crop``), as a crop. scene: detect faces, segment each. crop: the whole image
    is one face crop.
    """

    auto = "auto"
    scene = "scene"
    crop = "crop"


def looks_like_crop(height: int, width: int) -> bool:
    """Whether auto mode may read a faceless image as one face crop (see CROP_ASPECT)."""
    ratio_ok = CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1]
    return ratio_ok and max(height, width) <= CROP_MAX_SIDE


def window(face: Face, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A scene face's crop window in the mask, clipped to it: x0, y0, x1, y1 (as pasted)."""
    from maskseg.pipeline.detect.crops import pixel_rect

    x, y, side = pixel_rect(face.crop)
    h, w = shape
    return max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)


def face_parts(mask: np.ndarray, faces: list[Face]) -> list[tuple[int, int, np.ndarray]]:
    """Each scene face's part of a full-frame mask: (x0, y0, bool part of its crop window).

    A face left without a mask (``Face.mask`` false: it pasted no pixel) owns none, so a face
    listed as unmasked never carries its neighbour's mask into the wear check, the summary or
    COCO. A pixel inside the windows of several faces with masks belongs to the one whose box
    centre is nearest, measured in units of each box's longer side (ties: the earlier face),
    so the parts are disjoint and, since every mask pixel was pasted from the window of a face
    with a mask, together they are the mask."""
    windows = [window(f, mask.shape) for f in faces]
    boxes = [np.asarray(f.box, np.float64).reshape(4) for f in faces]
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
    sizes = [max(b[2] - b[0], b[3] - b[1], 1e-6) for b in boxes]
    painted = [bool(f.mask) for f in faces]
    parts = []
    for k, (x0, y0, x1, y1) in enumerate(windows):
        part = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), bool)
        if part.size and painted[k]:
            part[:] = mask[y0:y1, x0:x1]
        for j, (a0, b0, a1, b1) in enumerate(windows):
            ix0, iy0, ix1, iy1 = max(x0, a0), max(y0, b0), min(x1, a1), min(y1, b1)
            if j == k or not painted[j] or ix0 >= ix1 or iy0 >= iy1:
                continue
            yy, xx = np.mgrid[iy0:iy1, ix0:ix1] + 0.5
            dk = np.hypot(xx - centres[k][0], yy - centres[k][1]) / sizes[k]
            dj = np.hypot(xx - centres[j][0], yy - centres[j][1]) / sizes[j]
            lose = (dj < dk) | ((dj == dk) & (j < k))
            part[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] &= ~lose
        parts.append((x0, y0, part))
    return parts


@dataclass
class Segmented:
    """One image's answer, before any encoding."""

    image: np.ndarray  # as decoded (reduced for very large files)
    full: tuple[int, int]  # (height, width) of the file as displayed: the mask's size
    mask: np.ndarray
    mode: Mode  # the mode that ran (auto resolved)
    faces: list[Face] = field(default_factory=list)  # scene mode's faces (for drawing)
    decode_ms: float = 0.0
    inference_ms: float = 0.0  # segmentation and the wear check
    wear: list[Wear] | None = None  # per face (record order), when the wear check ran
    landmarks: list[np.ndarray | None] | None = None  # per face: (468, 2) full-size pixels
    wear_ms: float = 0.0

    def face_parts(self) -> list[tuple[int, int, np.ndarray]]:
        """Per face (record order): (x0, y0, its part of the mask). In crop mode the one
        face's part is the whole mask; in scene mode see ``face_parts``."""
        if self.mode == Mode.crop:
            return [(0, 0, self.mask)]
        return face_parts(self.mask, self.faces)

    def face_records(self, landmarks: bool = False) -> list[dict[str, Any]]:
        """Per face: box, score, crop, mask share of the box, mask or not; ``wear`` when the
        wear check ran; with ``landmarks``, the 468 points ([x, y] in the mask's pixels, to
        0.1 px; None where the model failed). In crop mode the one face is the whole
        picture, with no detector score."""
        if self.mode == Mode.crop:
            h, w = self.full
            box = [0.0, 0.0, float(w), float(h)]
            area = round(float(self.mask.mean()), 4)
            face = {"box": box, "score": None, "crop": box, "mask_area": area}
            records = [{**face, "mask": bool(self.mask.any())}]
        else:
            records = [f.as_record() for f in self.faces]
        if self.wear is not None:
            for record, wear in zip(records, self.wear, strict=True):
                record["wear"] = wear.as_record()
        if landmarks and self.landmarks is not None:
            for record, points in zip(records, self.landmarks, strict=True):
                record["landmarks"] = None if points is None else np.round(points, 1).tolist()
        return records

    def record(self, landmarks: bool = False) -> dict[str, Any]:
        """Image size, mode, faces and the mask's share of the image."""
        h, w = self.full
        return {
            "width": w,
            "height": h,
            "mode": self.mode.value,
            "faces": self.face_records(landmarks),
            "mask_area": round(float(self.mask.mean()), 6),
        }


class RequestEngine:
    """Decode, choose the mode, segment. Safe to call from several threads at once (the
    runtimes' sessions are; nothing here keeps per-call state).

    Args:
        scene: the scene predictor (its ``predictor`` segments crops); None: crop mode only.
        predictor: what segments crops (anything with ``predict(image, size)``: a
            ``Predictor`` or a classical method); default: the scene's.
        max_pixels: images with more pixels are refused from their header.
        decode_side: the long side decoding keeps (see ``maskseg.io.decode_image``).
        wear: the wear check run on every face after segmentation; None: none.
    """

    def __init__(
        self,
        scene: ScenePredictor | None = None,
        *,
        predictor: Any = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        decode_side: int = DECODE_SIDE,
        wear: WearCheck | None = None,
    ):
        if scene is None and predictor is None:
            raise ValueError("give a scene predictor, a crop predictor or both")
        self.scene = scene
        self.predictor = predictor if predictor is not None else scene.predictor
        self.max_pixels = max_pixels
        self.decode_side = decode_side
        self.wear = wear

    def decode(self, source: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
        """(RGB image, full (height, width)); ``ImageReadError`` naming the problem."""
        return decode_image(source, max_pixels=self.max_pixels, min_side=self.decode_side)

    def segment(
        self,
        image: np.ndarray,
        full: tuple[int, int] | None = None,
        mode: Mode = Mode.auto,
        deadline: float | None = None,
        detect_threshold: float | None = None,
    ) -> Segmented:
        """Segment a decoded image (``full``: the size the mask must have, when the image
        was decoded reduced). ``deadline`` (time.monotonic) stops a scene's work between
        stages with ``DeadlineExceeded``. ``detect_threshold``: the face detector's minimum
        score for this image instead of the scene's (serve's per-request option)."""
        full = full or image.shape[:2]
        t = time.perf_counter()
        ran, faces = Mode(mode), []
        if ran != Mode.crop and self.scene is None:
            raise ValueError(f"{ran.value} mode finds faces first: give a scene predictor")
        if ran != Mode.crop:
            result = self.scene.segment(
                image, size=full, deadline=deadline, score_threshold=detect_threshold
            )
            mask, faces, ran = result.mask, result.faces, Mode.scene
            if mode == Mode.auto and not faces and looks_like_crop(*full):
                ran = Mode.crop
        if ran == Mode.crop:
            mask = self.predictor.predict(image, size=full)
        seg = Segmented(image, full, mask, ran, faces)
        if self.wear is not None:
            w = time.perf_counter()
            seg.wear, seg.landmarks = self.wear.check(
                image,
                seg.face_parts(),
                full=full,
                faces=None if ran == Mode.crop else faces,
                deadline=deadline,
            )
            seg.wear_ms = (time.perf_counter() - w) * 1e3
        seg.inference_ms = (time.perf_counter() - t) * 1e3
        return seg

    def run(
        self, source: ImageSource, mode: Mode = Mode.auto, deadline: float | None = None
    ) -> Segmented:
        """Decode ``source`` (a path, bytes or a binary file object) and segment it."""
        t = time.perf_counter()
        image, full = self.decode(source)
        decode_ms = (time.perf_counter() - t) * 1e3
        check_deadline(deadline, "segmenting (the time went on decoding)")
        seg = self.segment(image, full, mode, deadline)
        seg.decode_ms = decode_ms
        return seg


# ---------------------------------------------------------------- reports over many images

# the folder summary's columns (``--summary``): one row per face
SUMMARY_COLUMNS = (
    "file",
    "face",
    "score",
    "verdict",
    "nose",
    "mouth",
    "chin",
    "coverage",
    "mask_area",
    "mask_pixels",
    "reason",
)
NOT_JUDGED = "not judged"
COCO_CATEGORY = {"id": 1, "name": "face_mask", "supercategory": "face"}


def summary_rows(
    file: str, records: list[dict[str, Any]], parts: list[tuple[int, int, np.ndarray]]
) -> list[dict[str, Any]]:
    """One summary row per face (``SUMMARY_COLUMNS``); yes/no parts as 1/0, a face not
    judged with an empty verdict and its reason; the detector score (empty in crop mode), by
    which a compliance count can set aside the doubtful detections listed without a mask."""
    rows = []
    for k, (record, (_, _, part)) in enumerate(zip(records, parts, strict=True)):
        wear = record.get("wear") or {}
        judged = wear.get("verdict") is not None
        flags = {p: str(int(bool(wear[p]))) if judged else "" for p in ("nose", "mouth", "chin")}
        rows.append(
            {
                "file": file,
                "face": k,
                "score": "" if record.get("score") is None else record["score"],
                "verdict": wear.get("verdict") or "",
                **flags,
                "coverage": wear["coverage"] if judged else "",
                "mask_area": record["mask_area"],
                "mask_pixels": int(part.sum()),
                "reason": wear.get("reason") or "",
            }
        )
    return rows


def summary_csv(rows: list[dict[str, Any]]) -> bytes:
    """The summary's bytes: a header and the rows (UTF-8, ``\\n`` line ends)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def coco_dataset() -> dict[str, Any]:
    """An empty COCO instances dataset with the one category, ``face_mask``."""
    return {
        "info": {"description": "maskseg predict: face masks and how they are worn"},
        "images": [],
        "annotations": [],
        "categories": [dict(COCO_CATEGORY)],
    }


def add_coco_image(
    dataset: dict[str, Any],
    file: str,
    mask_file: str,
    seg: Any,
    records: list[dict[str, Any]],
    parts: list[tuple[int, int, np.ndarray]],
) -> None:
    """One image and one annotation per face: bbox = the face's box as [x, y, width,
    height], its detector score (null in crop mode), segmentation = COCO RLE (compressed
    string) of the face's part of the mask at the image's full size, area = its pixels,
    ``face`` = its number in the image (from 0, as the summary's ``face`` column and the
    JSON's ``faces`` list), ``attributes`` = the face's wear record (when the wear check
    ran)."""
    h, w = seg.full
    image_id = len(dataset["images"]) + 1
    dataset["images"].append(
        {"id": image_id, "file_name": file, "width": w, "height": h, "mask_file": mask_file}
    )
    for k, (record, (x0, y0, part)) in enumerate(zip(records, parts, strict=True)):
        full = np.zeros((h, w), bool)
        full[y0 : y0 + part.shape[0], x0 : x0 + part.shape[1]] = part
        x1, y1, x2, y2 = record["box"]
        annotation = {
            "id": len(dataset["annotations"]) + 1,
            "image_id": image_id,
            "category_id": COCO_CATEGORY["id"],
            "bbox": [round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
            "score": record["score"],
            "segmentation": encode_rle(full),
            "area": int(part.sum()),
            "iscrowd": 0,
            "face": k,
        }
        if "wear" in record:
            annotation["attributes"] = dict(record["wear"])
        dataset["annotations"].append(annotation)
