"""The U-Net vs classical comparison: right split, every file written, bad pairs skipped."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from maskseg.config import DataConfig
from maskseg.data.pairs import Sample, find_pairs
from maskseg.data.splits import make_splits
from maskseg.evaluate.compare import example_ids, gap_line, markdown_table, run_compare

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mfsd-real" / "MSFD"
OUTPUTS = ("results.md", "results.json", "per_image.csv", "bar_chart.png", "examples.png")
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real MSFD pairs not found at {DATA} (see shared/data/README.md)"
)


class StandIn:
    """Stands in for maskseg.Predictor: the lower half of every image is mask."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += len(images)
        masks = [np.zeros(im.shape[:2], bool) for im in images]
        for m in masks:
            m[m.shape[0] // 2 :] = True
        return masks


def _summary(method: str, score: float) -> dict:
    s = {"method": method, "ms_median": 1.0}
    for m in ("iou", "dice", "precision", "recall"):
        s[m], s[m + "_std"] = score, 0.1
    return s


def test_gap_line_and_table():
    rows = [_summary("unet", 0.9), _summary("otsu", 0.7), _summary("grabcut", 0.8)]
    line = gap_line(rows)
    assert "0.900 vs 0.800" in line and "(grabcut)" in line and "+0.100" in line
    assert "No U-Net" in gap_line(rows[1:])
    table = markdown_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert table[2].startswith("| unet | 0.900 ± 0.100")


def test_example_ids_are_spread_and_bounded():
    samples = [
        Sample(f"id{i:02d}", np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), bool))
        for i in range(10)
    ]
    assert example_ids(samples, 3) == ["id00", "id04", "id09"]
    assert len(example_ids(samples, 50)) == 10
    assert example_ids(samples, 0) == []


def _copy_real_pairs(dst: Path, n: int = 12) -> Path:
    """Copy the first n real pairs (distinct people) into a temporary MSFD-layout folder."""
    root = dst / "MSFD"
    for sub in ("face_crop", "face_crop_segmentation"):
        (root / "1" / sub).mkdir(parents=True)
    for pair in find_pairs(DATA).pairs[:n]:
        shutil.copy(pair.image, root / "1" / "face_crop" / pair.image.name)
        shutil.copy(pair.mask, root / "1" / "face_crop_segmentation" / pair.mask.name)
    return root


@pytest.mark.slow
@needs_data
def test_compare_on_real_pairs_writes_everything(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = _copy_real_pairs(tmp_path)
    d = DataConfig()
    ids = [p.id for p in find_pairs(root).pairs]
    test_ids = make_splits(ids, d.test_fraction, d.folds, d.seed, d.group_regex).test
    assert len(test_ids) >= 2
    broken = next(p for p in find_pairs(root).pairs if p.id == test_ids[0])
    broken.image.write_bytes(broken.image.read_bytes()[:200])  # truncated JPEG

    stand_in = StandIn()
    with caplog.at_level(logging.WARNING):
        result = run_compare(root, tmp_path / "out", predictor=stand_in, n_examples=4)

    assert f"skipping pair {test_ids[0]}" in caplog.text
    for name in OUTPUTS:
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    names = [s["method"] for s in result["methods"]]
    assert names[0] == "unet" and {"otsu", "grabcut", "watershed"} <= set(names)
    assert result["split"]["n_test"] == len(test_ids) - 1
    assert [pid for pid, _ in result["split"]["skipped"]] == [test_ids[0]]
    assert set(result["split"]["test_ids"]) == set(test_ids[1:])
    assert stand_in.calls == len(test_ids)  # one warm-up call plus one per readable image

    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["gap"] == result["gap"] and "U-Net" in stored["gap"]
    assert all("params" in s for s in stored["methods"] if s["method"] != "unet")
    with open(tmp_path / "out" / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(names) * (len(test_ids) - 1)
    unet_rows = [float(r["iou"]) for r in rows if r["method"] == "unet"]
    assert np.mean(unet_rows) == pytest.approx(result["methods"][0]["iou"], abs=1e-3)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| unet |" in md and "Gap:" in md and "skipped" in md


@pytest.mark.slow
@needs_data
def test_compare_classical_only_without_examples(tmp_path: Path):
    root = _copy_real_pairs(tmp_path, n=8)
    result = run_compare(root, tmp_path / "out", methods=["prior", "otsu"], n_examples=0)
    assert [s["method"] for s in result["methods"]] == ["prior", "otsu"]
    assert "No U-Net" in result["gap"]
    assert not (tmp_path / "out" / "examples.png").exists()


@pytest.mark.slow
@needs_data
def test_compare_with_shipped_unet(tmp_path: Path):
    inference = pytest.importorskip("maskseg.pipeline.predictor")
    if not inference.available_models():
        pytest.skip("no shipped U-Net weights in maskseg/weights yet")
    root = _copy_real_pairs(tmp_path)
    predictor = inference.Predictor.from_pretrained()
    result = run_compare(root, tmp_path / "out", predictor=predictor, methods=["otsu"])
    unet, otsu = result["methods"]
    assert unet["method"] == "unet" and otsu["method"] == "otsu"
    assert unet["iou"] > 0.8 and unet["iou"] > otsu["iou"]  # real faces: the U-Net wins
    assert predictor.backend.describe() in result["machine"]  # the runtime that ran it


def test_unknown_method_fails_before_reading_data(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        run_compare(tmp_path / "missing", tmp_path / "out", methods=["magic"])
