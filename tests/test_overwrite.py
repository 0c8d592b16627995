"""Nothing the user gave a command is ever overwritten, and outputs are not read back as inputs.

Each case runs the real command on tiny files made here and checks the refusal (exit status 2,
a message naming the input, the input's bytes unchanged, nothing written) or, where the run
is allowed, what it wrote.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskseg.cli.main import main
from maskseg.cli.predict import predict_paths
from maskseg.files import OverwriteError, find_overwrites, is_within, refuse_overwrite
from maskseg.io import read_mask

OTSU = ["--method", "otsu", "--no-progress"]  # a classical method: the model does not matter


def photo(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    """A small RGB noise picture (an image no mask could be mistaken for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def digest(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones too) with the sha256 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    from maskseg.config import Config, DataConfig, ModelConfig
    from maskseg.models import create_model
    from maskseg.train.checkpoint import save_weights

    cfg = Config(data=DataConfig(image_size=32), model=ModelConfig(base_channels=4, depth=2))
    path = tmp_path / "models" / "tiny.safetensors"
    path.parent.mkdir()
    save_weights(path, create_model(cfg.model), cfg)
    return path


def refused(capsys, name: str) -> str:
    """The command's error: a refusal naming ``name``."""
    err = capsys.readouterr().err
    assert "refusing to write over the input(s)" in err and name in err, err
    return err


# ---------------------------------------------------------------- the helpers


def test_helpers_compare_resolved_paths_and_hard_links(tmp_path: Path):
    a = photo(tmp_path / "in" / "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "in")
    os.link(a, tmp_path / "hard.png")
    assert is_within(tmp_path / "in" / "sub" / "x.png", tmp_path / "in")
    assert is_within(tmp_path / "in", tmp_path / "in")
    assert not is_within(tmp_path / "input", tmp_path / "in")  # a prefix of the name is not
    assert find_overwrites([tmp_path / "link" / "a.png"], [a]) == [(tmp_path / "link" / "a.png", a)]
    assert find_overwrites([tmp_path / "hard.png"], [a]) == [(tmp_path / "hard.png", a)]
    assert find_overwrites([tmp_path / "in" / "b.png"], [a]) == []
    with pytest.raises(OverwriteError, match=r"a\.png.*nothing was written.*say so"):
        refuse_overwrite([tmp_path / "x.png", a], [a], "say so")


# ---------------------------------------------------------------- predict


def test_predict_into_its_own_folder_refuses_to_replace_the_photo(tmp_path: Path, capsys):
    """`predict inplace --output inplace` replaced the RGB photo.png with its mask."""
    folder = tmp_path / "inplace"
    photo(folder / "photo.png")
    before = digest(folder)
    assert main(["predict", str(folder), "--output", str(folder), *OTSU]) == 2
    err = capsys.readouterr().err
    assert "photo.png" in err and "refusing" in err and "--output" in err
    assert "is the input folder" in err
    assert digest(folder) == before  # the photo's bytes, and nothing new


def test_predict_refuses_an_output_named_like_another_input(tmp_path: Path, capsys):
    """`predict examples/ --output examples/` overwrote face_truth.png (its own output name)."""
    folder = tmp_path / "examples"
    photo(folder / "face.jpg", seed=1)
    truth = np.zeros((24, 32), np.uint8)
    truth[12:] = 255
    cv2.imwrite(str(folder / "face_truth.png"), truth)
    before = digest(folder)
    assert main(["predict", str(folder), "--output", str(folder), *OTSU]) == 2
    err = capsys.readouterr().err
    assert "face_truth.png" in err and "refusing to write over the input(s)" in err
    assert digest(folder) == before


def test_predict_into_its_own_folder_is_allowed_while_nothing_collides(tmp_path: Path, capsys):
    folder = tmp_path / "photos"
    photo(folder / "a.jpg")
    original = (folder / "a.jpg").read_bytes()
    assert main(["predict", str(folder), "--output", str(folder), *OTSU]) == 0
    assert read_mask(folder / "a.png").shape == (24, 32)
    assert (folder / "a.jpg").read_bytes() == original
    # a second run would read that mask and write its mask over it: refused, untouched
    before = digest(folder)
    assert main(["predict", str(folder), "--output", str(folder), *OTSU]) == 2
    refused(capsys, "a.png")
    assert digest(folder) == before


def test_predict_refuses_an_overlay_over_an_input(tmp_path: Path, capsys):
    folder = tmp_path / "in"
    photo(folder / "p.jpg")
    photo(folder / "p_overlay.jpg", seed=2)  # a photo that happens to have that name
    before = digest(folder)
    args = ["predict", str(folder), "--output", str(folder), "--overlay", *OTSU]
    assert main(args) == 2
    refused(capsys, "p_overlay.jpg")
    assert digest(folder) == before


def test_predict_plans_deduplicated_names_before_writing(tmp_path: Path, capsys):
    """a.png beside a.jpg is written as a_png.png: an input of that name is refused first."""
    photo(tmp_path / "in" / "a.jpg")
    photo(tmp_path / "in" / "a.png", seed=1)
    out = tmp_path / "out"
    photo(out / "a_png.png", seed=2)  # given as an input too
    before = digest(out)
    args = ["predict", str(tmp_path / "in"), str(out / "a_png.png"), "--output", str(out), *OTSU]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refusing to write over the input(s)" in err and "a_png.png" in err
    assert digest(out) == before  # not even a.png was written


def test_predict_refuses_to_replace_other_files_of_its_input_folder(tmp_path: Path, capsys):
    """A user's own d.json (not an image, so not segmented) beside d.jpg was replaced by
    d.jpg's JSON record; a dangling link y.png beside y.jpg by y.jpg's mask."""
    notes = tmp_path / "notes"
    photo(notes / "d.jpg")
    (notes / "d.json").write_text('{"my": "notes"}')
    before = digest(notes)
    assert main(["predict", str(notes), "--output", str(notes), "--json", *OTSU]) == 2
    refused(capsys, "d.json")
    assert digest(notes) == before
    links = tmp_path / "links"
    photo(links / "y.jpg")
    (links / "y.png").symlink_to(tmp_path / "nowhere.png")
    assert main(["predict", str(links), "--output", str(links), *OTSU]) == 2
    refused(capsys, "y.png")
    assert (links / "y.png").is_symlink() and not (links / "y.png").exists()


def test_predict_names_around_a_sub_folder_named_like_an_output(tmp_path: Path, capsys):
    """k.jpg's mask k.png would be the folder of k.png/m.jpg's mask: it gets k_jpg.png, and
    the run goes on (it used to stop half-way with FileExistsError)."""
    src = tmp_path / "in"
    photo(src / "k.jpg")
    photo(src / "k.png" / "m.jpg", seed=1)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--output", str(out), *OTSU]) == 1  # k.png/ is no image
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "k.png/m.png",
        "k_jpg.png",
    ]


def test_predict_does_a_file_given_twice_once(tmp_path: Path, caplog):
    src = tmp_path / "in"
    photo(src / "a.jpg")
    (tmp_path / "link.jpg").symlink_to(src / "a.jpg")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        args = ["predict", str(src), str(src / "a.jpg"), str(tmp_path / "link.jpg")]
        assert main([*args, "--output", str(out), *OTSU]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert caplog.text.count("given twice") == 2


def test_predict_unwritable_outputs_are_one_line_errors(tmp_path: Path, capsys):
    photo(tmp_path / "a.jpg")
    (tmp_path / "file").write_text("x")
    for args, message in {
        ("--output", str(tmp_path / "file")): "is a file, not a folder",
        ("--output", str(tmp_path / "o"), "--coco", str(tmp_path / "file" / "c.json")): (
            "is a file, not a folder"
        ),
    }.items():
        assert main(["predict", str(tmp_path / "a.jpg"), *args, *OTSU]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()  # refused before anything was made


def test_predict_an_empty_folder_writes_nothing(tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    args = ["--summary", str(out / "s.csv"), "--coco", str(out / "c.json")]
    assert main(["predict", str(tmp_path / "empty"), "--output", str(out), *args, *OTSU]) == 1
    captured = capsys.readouterr()
    assert "no input images found in" in captured.err and "wrote" not in captured.out
    assert not out.exists()


def test_predict_a_file_that_cannot_be_written_fails_alone(tmp_path: Path, capsys):
    """An output path taken by a folder (or a full disk) fails that file only: the others
    and the summary are still written."""
    src = tmp_path / "in"
    photo(src / "a.jpg")
    photo(src / "b.jpg", seed=1)
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)  # a folder where a.jpg's mask goes
    assert main(["predict", str(src), "--output", str(out), *OTSU]) == 1
    err = capsys.readouterr().err
    assert "a.jpg" in err and "cannot write" in err and "a.png" in err, err
    assert read_mask(out / "b.png").shape == (24, 32)


def test_predict_refuses_through_links(tmp_path: Path, capsys):
    src = tmp_path / "in"
    photo(src / "p.png")
    before = digest(src)
    (tmp_path / "alias").symlink_to(src)  # another name of the same folder
    assert main(["predict", str(src / "p.png"), "--output", str(tmp_path / "alias"), *OTSU]) == 2
    refused(capsys, "p.png")
    out = tmp_path / "out"
    out.mkdir()
    os.link(src / "p.png", out / "p.png")  # a hard link: the same file under the output name
    assert main(["predict", str(src / "p.png"), "--output", str(out), *OTSU]) == 2
    refused(capsys, "p.png")
    assert digest(src) == before and sorted(os.listdir(out)) == ["p.png"]


def test_predict_twice_into_a_subfolder_does_not_read_its_outputs(tmp_path: Path, caplog):
    """`predict in --output in/out` twice made in/out/out/... and *_overlay_overlay.jpg."""
    src = tmp_path / "in"
    photo(src / "face.jpg")
    photo(src / "sub" / "b.png", seed=1)
    out = src / "out"
    args = ["predict", str(src), "--output", str(out), "--overlay", *OTSU]
    assert main(args) == 0
    first = digest(out)
    assert sorted(first) == ["face.png", "face_overlay.jpg", "sub/b.png", "sub/b_overlay.jpg"]
    with caplog.at_level(logging.INFO, logger="maskseg.cli.predict"):
        assert main(args) == 0
    assert sorted(digest(out)) == sorted(first)  # no out/out, no *_overlay_overlay.jpg
    assert not (out / "out").exists() and not list(out.rglob("*_overlay_overlay*"))
    lines = [r.getMessage() for r in caplog.records if "inside the output folder" in r.message]
    assert len(lines) == 1 and "left out 4 file(s)" in lines[0] and str(out) in lines[0]


def test_predict_scene_json_outputs_are_planned_too(tmp_path: Path):
    """--scene --json --overlay: the .json and _overlay.jpg names are checked before any
    file is segmented or written."""

    class Scene:
        calls = 0

        def segment(self, image, size=None):
            Scene.calls += 1
            raise AssertionError("segmented before the outputs were checked")

    src = tmp_path / "in"
    photo(src / "p.jpg")
    (src / "p.json").write_text('{"mine": true}')  # given explicitly: an input like any other
    before = digest(src)
    with pytest.raises(OverwriteError, match=r"p\.json"):
        predict_paths(
            Scene(),
            [src / "p.jpg", src / "p.json"],
            src,
            overlay_images=True,
            progress=False,
            write_json=True,
        )
    assert Scene.calls == 0 and digest(src) == before


def test_predict_scene_cli_refuses_before_writing(tmp_path: Path, capsys):
    src = tmp_path / "in"
    photo(src / "group.png", 64, 80)
    before = digest(src)
    args = [
        "predict",
        str(src),
        "--scene",
        "--json",
        "--overlay",
        "--output",
        str(src),
        "--no-progress",
    ]
    assert main(args) == 2
    refused(capsys, "group.png")
    assert digest(src) == before


# ---------------------------------------------------------------- video


def clip(path: Path, n: int = 3) -> Path:
    from maskseg.video.synthetic import backdrop, write_clip

    path.parent.mkdir(parents=True, exist_ok=True)
    bg = backdrop(48, 64, 0)
    return write_clip(path, (np.roll(bg, 2 * i, axis=1) for i in range(n)))


@pytest.mark.parametrize("flag", ["--output", "--json", "--masks"])
def test_video_refuses_to_write_over_its_source(tmp_path: Path, flag: str, capsys):
    src = clip(tmp_path / "v" / "clip.avi")
    before = digest(tmp_path / "v")
    assert main(["video", str(src), flag, str(src), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "refusing to write over the input(s)" in err and "clip.avi" in err and flag in err
    assert digest(tmp_path / "v") == before  # no temporary file either


def test_video_refuses_a_link_to_its_source(tmp_path: Path, capsys):
    src = clip(tmp_path / "v" / "clip.avi")
    (tmp_path / "v" / "out.avi").symlink_to(src)
    before = src.read_bytes()
    assert main(["video", str(src), "--output", str(tmp_path / "v" / "out.avi")]) == 2
    refused(capsys, "clip.avi")
    assert src.read_bytes() == before and (tmp_path / "v" / "out.avi").is_symlink()


def test_video_outputs_must_differ(tmp_path: Path, capsys):
    src = clip(tmp_path / "clip.avi")
    same = tmp_path / "out" / "x.mp4"
    assert main(["video", str(src), "--output", str(same), "--json", str(same)]) == 2
    err = capsys.readouterr().err
    assert "--output and --json are the same path" in err and "x.mp4" in err
    masks = tmp_path / "out" / "m"
    assert (
        main(["video", str(src), "--json", str(masks / "000001.png"), "--masks", str(masks)]) == 2
    )
    assert "is a frame mask of --masks" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing opened for writing


def test_run_video_refuses_a_sink_over_its_source(tmp_path: Path):
    """The library path: a sink made by hand for the file being read is discarded unwritten."""
    from maskseg.video import JsonLinesSink, open_source, run_video

    src = clip(tmp_path / "clip.avi")
    before = digest(tmp_path)
    with open_source(src) as source:
        sink = JsonLinesSink(src)
        with pytest.raises(OverwriteError, match=r"clip\.avi"):
            run_video(source, None, [sink])  # type: ignore[arg-type]  (refused before use)
    assert digest(tmp_path) == before  # the clip, and no temporary file left


# ---------------------------------------------------------------- the other commands


def test_pack_refuses_to_replace_a_member(tiny_model: Path, capsys):
    before = tiny_model.read_bytes()
    assert main(["pack", str(tiny_model), "--half", "--output", str(tiny_model)]) == 2
    refused(capsys, "tiny.safetensors")
    assert tiny_model.read_bytes() == before
    assert sorted(os.listdir(tiny_model.parent)) == ["tiny.safetensors"]


def test_export_refuses_to_replace_its_source(tmp_path: Path, capsys):
    from maskseg.pipeline.predictor import shipped_files

    onnx = shipped_files()["unet-msfd"].get("onnx")
    if onnx is None:
        pytest.skip("no shipped ONNX file")
    model = tmp_path / "m.onnx"
    shutil.copyfile(onnx, model)
    before = model.read_bytes()
    assert main(["export", str(model), "--output", str(model), "--no-parity"]) == 2
    err = capsys.readouterr().err
    assert "refusing to write over the input(s)" in err and "m.onnx" in err
    assert model.read_bytes() == before and os.listdir(tmp_path) == ["m.onnx"]


def face_photos(root: Path) -> Path:
    photo(root / "with_mask" / "a.jpg", 48, 48)
    photo(root / "without_mask" / "b.jpg", 48, 48, seed=1)
    return root


def test_data_faces_refuses_an_output_inside_the_photo_folders(tmp_path: Path, capsys):
    root = face_photos(tmp_path / "faces")
    before = digest(root)
    for label in ("with_mask", "without_mask"):
        out = root / label / "crops"
        assert main(["data", "faces", str(root), "--output", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"{label}" in err and "read as photos" in err
    assert digest(root) == before


def test_data_faces_into_its_root_leaves_the_photos_alone(tmp_path: Path, capsys):
    root = face_photos(tmp_path / "faces")
    before = digest(root)
    assert main(["data", "faces", str(root), "--output", str(root), "--no-progress"]) == 0
    after = digest(root)
    assert {k: after[k] for k in before} == before and "index.json" in after
    # a second run reads the same two photos, not the crops
    assert main(["data", "faces", str(root), "--output", str(root), "--no-progress"]) == 0
    assert "with_mask: 1 photos" in capsys.readouterr().out


def test_gate_refuses_to_replace_its_model(
    tiny_model: Path, msfd_tiny: Path, tmp_path: Path, capsys
):
    before = tiny_model.read_bytes()
    args = [
        "gate",
        str(tiny_model),
        "--faces",
        str(tmp_path / "faces"),
        "--data",
        str(msfd_tiny),
        "--output",
        str(tiny_model),
    ]
    assert main(args) == 2
    refused(capsys, "tiny.safetensors")
    assert tiny_model.read_bytes() == before


def test_evaluate_refuses_to_replace_an_input(tiny_model: Path, tmp_path: Path, capsys):
    data = tmp_path / "data"
    (data / "masks").mkdir(parents=True)
    for k in range(3):
        photo(data / "images" / f"p{k}.jpg", seed=k)
        cv2.imwrite(str(data / "masks" / f"p{k}.png"), np.full((24, 32), 255, np.uint8))
    # a pair whose image has the name of the report's picture, written into its folder
    photo(data / "images" / "worst_cases.png", seed=9)
    cv2.imwrite(str(data / "masks" / "worst_cases.png"), np.zeros((24, 32), np.uint8))
    before = digest(data)
    args = ["evaluate", "--data", str(data), "--model", str(tiny_model), "--split", "all"]
    assert main([*args, "--output", str(data / "images")]) == 2
    refused(capsys, "worst_cases.png")
    report = tmp_path / "report"
    report.mkdir()
    (report / "summary.json").write_text("{}")  # given as --splits: an input
    assert main([*args, "--splits", str(report / "summary.json"), "--output", str(report)]) == 2
    refused(capsys, "summary.json")
    assert digest(data) == before and (report / "summary.json").read_text() == "{}"


def test_compare_refuses_to_replace_its_parameters(msfd_tiny: Path, tmp_path: Path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    tuned = report / "results.json"
    tuned.write_text('{"methods": {}}')
    args = [
        "compare",
        "--data",
        str(msfd_tiny),
        "--no-unet",
        "--methods",
        "otsu",
        "--tuned",
        str(tuned),
        "--output",
        str(report),
    ]
    assert main(args) == 2
    refused(capsys, "results.json")
    assert tuned.read_text() == '{"methods": {}}' and os.listdir(report) == ["results.json"]


def test_data_faces_run_again_leaves_no_stale_crops(tmp_path: Path, capsys):
    """Crops are numbered by the photos' order: run again after a photo was removed, the
    earlier run's extra crops used to stay beside the new ones, listed nowhere."""
    import json
    import shutil

    face = Path(__file__).resolve().parents[1] / "examples" / "face.jpg"
    root = tmp_path / "faces"
    for k in range(3):
        (root / "with_mask").mkdir(parents=True, exist_ok=True)
        shutil.copy(face, root / "with_mask" / f"p{k}.jpg")
    (root / "without_mask").mkdir()
    out = tmp_path / "crops"
    args = ["data", "faces", str(root), "--output", str(out), "--no-progress"]
    assert main(args) == 0
    assert len(list((out / "with").glob("*.jpg"))) == 3
    (root / "with_mask" / "p0.jpg").unlink()
    assert main(args) == 0
    listed = {c["crop"] for c in json.loads((out / "index.json").read_text())["crops"]}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "with").glob("*.jpg")}
    assert on_disk == listed and len(listed) == 2
    assert Path(json.loads((out / "index.json").read_text())["root"]).is_absolute()
