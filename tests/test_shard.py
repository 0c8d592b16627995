"""``--shard K/N``: the spec, and N shards of a run covering every file exactly once with the
names the whole run would give them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.cli.main import main
from maskseg.cli.predict import predict_paths
from maskseg.engines.shard import Shard, parse_shard


class Bright:
    """A stand-in segmenter: pixels brighter than the middle grey, at the asked size."""

    def predict(self, image: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        mask = (image.mean(axis=2) > 127).astype(np.uint8)
        if size is not None:
            mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        return mask > 0


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """11 images (two in a sub-folder, ``a.jpg`` beside ``a.png``), a broken JPEG and a
    folder named like an image: 13 entries to deal out."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"p{k:02d}.jpg" for k in range(7)] + ["a.jpg", "a.png", "sub/p00.jpg", "sub/q.png"]
    for name in names:
        cv2.imwrite(str(root / name), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "folder.jpg").mkdir()
    return root


@pytest.mark.parametrize(
    ("text", "shard"), [("1/4", Shard(1, 4)), ("4/4", Shard(4, 4)), (" 2 / 3 ", Shard(2, 3))]
)
def test_parse_shard(text: str, shard: Shard):
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0/4", "K counts from 1 to N"),
        ("5/4", "K counts from 1 to N"),
        ("1/0", "N must be at least 1"),
        ("3", "expected K/N"),
        ("-1/4", "expected K/N"),
        ("a/b", "expected K/N"),
        ("1/2/3", "expected K/N"),
    ],
)
def test_bad_shard_specs_are_refused(text: str, says: str):
    with pytest.raises(ValueError, match=says):
        parse_shard(text)


def test_shard_takes_every_nth_from_the_kth():
    items = list(range(10))
    assert Shard(1, 3).take(items) == [0, 3, 6, 9]
    assert Shard(3, 3).take(items) == [2, 5, 8]
    assert Shard(1, 1).take(items) == items


@pytest.mark.parametrize("count", [1, 3, 20])
def test_shards_cover_every_file_once(photos: Path, tmp_path: Path, count: int):
    whole_out = tmp_path / "whole"
    whole = predict_paths(Bright(), [photos], whole_out, progress=False, on_skip=lambda p, r: None)
    assert len(whole.written) == 11 and len(whole.failed) == 2

    written: list[Path] = []
    failed: list[Path] = []
    out = tmp_path / f"shards{count}"
    for k in range(1, count + 1):
        part = predict_paths(
            Bright(),
            [photos],
            out,
            progress=False,
            on_skip=lambda p, r: None,
            shard=Shard(k, count),
        )
        assert part.total == 13
        written += part.written
        failed += [path for path, _ in part.failed]
    # every file exactly once, under the name the whole run gives it, with the same mask
    assert sorted(p.relative_to(out) for p in written) == sorted(
        p.relative_to(whole_out) for p in whole.written
    )
    assert len(set(written)) == len(written)
    assert sorted(failed) == sorted(path for path, _ in whole.failed)
    for path in whole.written:
        assert (out / path.relative_to(whole_out)).read_bytes() == path.read_bytes()
    assert {p.name for p in written} >= {"a.png", "a_png.png", "p00.png"}


def test_shard_option_on_the_command_line(photos: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(photos), "--output", str(out), "--method", "otsu", "--no-progress"]
    # 12 files (a.jpg, a.png, broken.jpg, p00.jpg, ...) in 6 shares: the 2nd takes the 2nd and 8th
    assert main([*args, "--no-wear", "--shard", "2/6"]) == 0
    assert sorted(p.name for p in out.rglob("*.png")) == ["a_png.png", "p04.png"]
    # 13 entries in 20 shares: the 20th gets none, which is not an error
    assert main([*args, "--no-wear", "--shard", "20/20"]) == 0
    assert "shard 20/20: none of the run's 13 input(s) falls to it" in capsys.readouterr().out
    # into the input folder, the second job would scan the first job's masks as inputs
    before = sorted(p.name for p in photos.rglob("*"))
    same = ["predict", str(photos), "--output", str(photos), "--method", "otsu", "--no-wear"]
    assert main([*same, "--shard", "1/2"]) == 2
    assert "which holds the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in photos.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("0/3", "K counts from 1 to N"),
        ("4/3", "K counts from 1 to N"),
        ("1/0", "N must be at least 1"),
        ("1-3", "expected K/N"),
    ],
)
def test_bad_shard_option_fails_before_anything_runs(tmp_path: Path, capsys, spec: str, says: str):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(tmp_path), "--output", str(out), "--shard", spec])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--shard" in err and says in err
    assert not out.exists()


def test_sharded_coco_files_concatenate_into_one(photos: Path, tmp_path: Path):
    """Each job's COCO ids are the whole run's: the jobs' images and annotations lists,
    concatenated, load in pycocotools and hold every file the whole run holds."""
    import json

    out = tmp_path / "out"
    merged = {"images": [], "annotations": []}
    for k in (1, 2, 3):
        coco = tmp_path / f"coco_{k}.json"
        predict_paths(
            Bright(), [photos], out, progress=False, on_skip=lambda p, r: None,
            shard=Shard(k, 3), coco=coco,
        )  # fmt: skip
        part = json.loads(coco.read_text())
        merged["images"] += part["images"]
        merged["annotations"] += part["annotations"]
        categories = part["categories"]
    whole = tmp_path / "whole.json"
    predict_paths(
        Bright(), [photos], tmp_path / "w", progress=False, on_skip=lambda p, r: None, coco=whole
    )
    expected = json.loads(whole.read_text())
    names = sorted(im["file_name"] for im in merged["images"])
    assert names == sorted(im["file_name"] for im in expected["images"]) and len(names) == 11
    assert len({im["id"] for im in merged["images"]}) == len(merged["images"])
    assert len({a["id"] for a in merged["annotations"]}) == len(merged["annotations"])
    assert len(merged["annotations"]) == len(expected["annotations"]) > 0
    ids = {im["id"] for im in merged["images"]}
    assert all(a["image_id"] in ids for a in merged["annotations"])
    pycocotools = pytest.importorskip("pycocotools.coco")
    dataset = {**merged, "categories": categories}
    (tmp_path / "merged.json").write_text(json.dumps(dataset))
    assert len(pycocotools.COCO(str(tmp_path / "merged.json")).getImgIds()) == 11
