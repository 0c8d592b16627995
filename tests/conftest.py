"""Shared fixtures: tiny synthetic data sets made in code, and the path to the shared real data."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfsd-real" / "MSFD"
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


def signal_when(
    proc: subprocess.Popen, ready: Callable[[], bool], sig: int, what: str, timeout: float = 120
) -> tuple[str, str]:
    """Wait (the process alive) until ``ready()``, send ``sig``, and return the process's
    (stdout, stderr); it is killed if anything fails on the way."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{what} not in time"
            time.sleep(0.02)
        proc.send_signal(sig)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def wait_serving(proc: subprocess.Popen, url: str, timeout: float = 90) -> None:
    """Wait until the server process answers ``/health`` (it must stay alive meanwhile)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"the server did not start in {timeout:g} s"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)


def synthetic_face(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A skin-coloured ellipse with a light-blue 'mask' over its lower half, plus noise."""
    img = np.full((size, size, 3), rng.integers(30, 90, 3), dtype=np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (int(size * 0.35), int(size * 0.45)), 0, 0, 360, (205, 160, 130), -1)
    mask = np.zeros((size, size), np.uint8)
    top = int(size * rng.uniform(0.45, 0.55))
    cv2.ellipse(mask, (c, c), (int(size * 0.35), int(size * 0.45)), 0, 0, 360, 1, -1)
    mask[:top] = 0
    img[mask.astype(bool)] = (150, 200, 235)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), mask.astype(bool)


def real_faces_folder(tmp_path: Path, n: int) -> Path:
    """`maskseg data faces` run on the first ``n`` JPEG photos of each label of the shared
    face photos (skips when they are missing); returns the crops folder."""
    import shutil

    from maskseg.cli.main import main

    if not (FACES / "with_mask").is_dir() or not (FACES / "without_mask").is_dir():
        pytest.skip(f"shared face photos not found at {FACES}")
    photos = tmp_path / "photos"
    for label in ("with_mask", "without_mask"):
        (photos / label).mkdir(parents=True)
        names = sorted(p for p in (FACES / label).iterdir() if p.suffix.lower() == ".jpg")
        for p in names[:n]:
            shutil.copy(p, photos / label / p.name)
    assert main(["data", "faces", str(photos), "--output", str(tmp_path / "faces")]) == 0
    return tmp_path / "faces"


def write_pair(images: Path, masks: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(images / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(masks / f"{name}.png"), mask.astype(np.uint8) * 255)


@pytest.fixture
def msfd_tiny(tmp_path: Path) -> Path:
    """MSFD layout, 24 pairs of 8 'people' (3 photos each)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "MSFD"
    for person in range(8):
        for k in range(3):
            img, mask = synthetic_face(rng)
            write_pair(
                root / "1" / "face_crop",
                root / "1" / "face_crop_segmentation",
                f"faceMsak_person{person}_0_0_{k}",
                img,
                mask,
            )
    return root


def write_msfd_full(root: Path, n_photos: int = 6, seed: int = 0) -> dict[str, tuple]:
    """The full MSFD release layout in small: photos in ``1/img`` with two masked faces each,
    their crops (64 px) and masks cut at the boxes of ``1/dataset.csv``, numbered against the
    CSV's order; the first photo also holds a face without a mask and a masked face whose crop
    is missing; ``2/img`` holds a photo without crops. Returns crop stem -> (photo, box)."""
    rng = np.random.default_rng(seed)
    d = root / "1"
    for sub in ("img", "face_crop", "face_crop_segmentation"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    rows, truth = ["filename,x1,y1,x2,y2,with_mask"], {}
    for i in range(n_photos):
        photo = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (320, 240))
        name = f"{100 + i:06d}"
        boxes = [(20, 40, 100, 130), (170, 60, 250, 140)]
        if i == 0:
            boxes += [(260, 150, 310, 205), (20, 170, 70, 225)]  # unmasked, crop missing
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            face, mask = synthetic_face(rng, x2 - x1)
            face = cv2.resize(face, (x2 - x1, y2 - y1))
            mask = cv2.resize(mask.astype(np.uint8), (x2 - x1, y2 - y1)) > 0
            if k == 2:  # no mask: the skin colour where the mask would be
                face[mask] = (205, 160, 130)
            photo[y1:y2, x1:x2] = face
            rows.append(f"{name}.jpg,{x1},{y1},{x2},{y2},{int(k != 2)}")
            if k < 2:
                stem = f"{name}_{2 - k}"  # numbered against the CSV's order
                crop = cv2.resize(photo[y1:y2, x1:x2], (64, 64), interpolation=cv2.INTER_AREA)
                write_pair(
                    d / "face_crop",
                    d / "face_crop_segmentation",
                    stem,
                    crop,
                    cv2.resize(mask.astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST)
                    > 0,
                )
                truth[stem] = (f"{name}.jpg", (x1, y1, x2, y2))
        cv2.imwrite(str(d / "img" / f"{name}.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    (d / "dataset.csv").write_text("\n".join(rows) + "\n")
    (root / "2" / "img").mkdir(parents=True)
    cv2.imwrite(str(root / "2" / "img" / "000900.jpg"), np.zeros((50, 50, 3), np.uint8))
    return truth


@pytest.fixture
def msfd_full(tmp_path: Path) -> Path:
    """``write_msfd_full`` under ``tmp_path/MSFD``."""
    write_msfd_full(tmp_path / "MSFD")
    return tmp_path / "MSFD"


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "1" / "face_crop").is_dir():
        pytest.skip(f"shared data not found at {REAL_DATA}")
    return REAL_DATA


# ---------------------------------------------------------------------------- CI: no skips

# Locally a test whose data, browser or extra is missing skips with its reason. In CI
# (CI=true) everything is installed and ../shared/data is laid beside the clone, so a skip
# means a test that did not run: the run fails, naming each one.
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _SKIPPED.append(f"{report.nodeid}: {_skip_reason(report)}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _SKIPPED.append(f"{report.nodeid}: {_skip_reason(report)}")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    if os.environ.get("CI") == "true" and _SKIPPED and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:
    import os

    if os.environ.get("CI") == "true" and _SKIPPED:
        terminalreporter.section("CI=true: skipped tests fail the run")
        for line in _SKIPPED:
            terminalreporter.write_line(line)
