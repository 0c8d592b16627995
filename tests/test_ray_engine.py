"""``maskseg predict --engine ray``: a real local Ray (no mocks) writes what the local engine
writes, byte for byte, and reports a broken file as the local engine does; an engine shipped
to another process (its onnxruntime sessions rebuilt there) segments alike."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from conftest import FACES

from maskseg.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """The example photos, a few of ../shared/data/faces when it is there (a sub-folder, so
    sub-folder names are kept), and a broken JPEG."""
    root = tmp_path / "in"
    root.mkdir()
    for name in ("face.jpg", "astronaut.jpg", "astronaut_masked.jpg"):
        shutil.copy(EXAMPLES / name, root / name)
    for kind in ("with_mask", "without_mask"):
        found = sorted((FACES / kind).glob("*.jpg"))[:3] if (FACES / kind).is_dir() else []
        for path in found:
            (root / kind).mkdir(exist_ok=True)
            shutil.copy(path, root / kind / path.name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return root


def test_shipped_engine_segments_alike(tmp_path: Path):
    """The sessions rebuilt from the shipped bytes (one thread) give the same masks."""
    from maskseg.engines.ray import ship
    from maskseg.io import read_image
    from maskseg.pipeline.predictor import Predictor
    from maskseg.pipeline.request import Mode, RequestEngine
    from maskseg.pipeline.scene import ScenePredictor
    from maskseg.pipeline.wear import WearCheck

    engine = RequestEngine(ScenePredictor(Predictor.load()), wear=WearCheck())
    copy = pickle.loads(ship(engine, threads=1))
    assert copy.predictor.backend.session is not engine.predictor.backend.session
    assert copy.predictor.backend.session.get_session_options().intra_op_num_threads == 1
    image = read_image(EXAMPLES / "astronaut_masked.jpg")
    here, there = engine.segment(image, mode=Mode.scene), copy.segment(image, mode=Mode.scene)
    assert (here.mask == there.mask).all() and here.mask.any()
    assert here.record(landmarks=True) == there.record(landmarks=True)


def test_ray_engine_writes_what_the_local_engine_writes(photos: Path, tmp_path: Path, capsys):
    pytest.importorskip("ray", reason="the Ray engine needs the [ray] extra")
    import ray

    def run(engine: str) -> tuple[int, str, dict[str, bytes]]:
        out = tmp_path / engine
        args = ["predict", str(photos), "--output", str(out / "masks"), "--scene", "--json"]
        args += ["--overlay", "--summary", str(out / "summary.csv"), "--coco"]
        args += [str(out / "coco.json"), "--no-progress", "--engine", engine]
        code = main(args)
        return code, capsys.readouterr().err, _files(out)

    local_code, local_err, local = run("local")
    try:
        ray_code, ray_err, on_ray = run("ray")
    finally:
        ray.shutdown()  # in case the engine failed before stopping the Ray it started
    assert local_code == ray_code == 1  # the broken file
    assert "broken.jpg" in ray_err and "broken.jpg" in local_err
    assert len(local) == len(on_ray) >= 3 * 3 + 2
    assert sorted(local) == sorted(on_ray)
    different = [name for name in local if local[name] != on_ray[name]]
    assert not different, f"outputs that differ between the engines: {different}"
    assert not ray.is_initialized()  # the Ray it started is stopped


def test_ray_options_are_checked_before_the_model_loads(tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = main(["predict", str(EXAMPLES), "--output", str(out), "--address", "auto"])
    assert code == 2 and "--address" in capsys.readouterr().err and not out.exists()
    code = main(["predict", str(EXAMPLES), "--output", str(out), "--actors", "2"])
    assert code == 2 and "--actors" in capsys.readouterr().err and not out.exists()


def test_relative_paths_are_the_runs_own_wherever_the_work_runs(tmp_path: Path, monkeypatch):
    """A Ray worker on a cluster may run in any folder: a file's step reads and writes
    relative inputs and --output from the run's folder, and its records keep the paths as
    the user gave them (so every engine writes the same bytes)."""
    import json

    from maskseg.cli.predict import FileOptions, segment_file
    from maskseg.pipeline.predictor import Predictor
    from maskseg.pipeline.request import Mode, RequestEngine

    run = tmp_path / "run"
    (run / "in").mkdir(parents=True)
    shutil.copy(EXAMPLES / "face.jpg", run / "in" / "face.jpg")
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where a worker on another node might have started
    engine = RequestEngine(predictor=Predictor.load())
    options = FileOptions(Path("out"), json=True, cwd=str(run))
    outcome = segment_file(engine, (0, Path("in/face.jpg"), Path("face")), Mode.crop, options)
    assert outcome.failure is None and outcome.mask == Path("out/face.png")
    assert (run / "out" / "face.png").is_file() and not any(elsewhere.iterdir())
    assert json.loads((run / "out" / "face.json").read_text())["image"] == "in/face.jpg"
    # an --address where nothing answers is refused at once, not retried for minutes
    from maskseg.engines.ray import check_reachable

    with pytest.raises(ValueError, match="no Ray cluster answers there"):
        check_reachable("127.0.0.1:1", timeout_s=2)
    check_reachable("auto")  # left to Ray
