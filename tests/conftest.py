"""Shared fixtures: tiny synthetic data sets made in code, and the path to the shared real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfsd-real" / "MSFD"
FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


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
