"""Video pipeline speed: frames/s and milliseconds per stage of ``maskseg video``.

    python benchmarks/bench_video.py [--faces 1 2 3] [--frames 150] [--runs 3]
                                     [--backends torch onnx] [--prefetch 0 4] [--codec h264]
                                     [--write-ahead 0 2] [--detect-threads 1]
                                     [--set grow_rounds=0 ...] [--models unet-msfd unet-msfd-fast]
                                     [--redo-model none unet-msfd-fast] [--face-check off on]

Builds 640x480 clips (in a temporary folder) of 1-3 real face crops (the shared MSFD crops)
moving a few pixels per frame over a background, runs the video loop on each (decode, detect
or re-detect around tracked faces, segment all faces in one batch, smooth, overlay, encode)
and prints the median over ``--runs`` of frames/s and of each stage's ms per frame. Decode
runs in a reader thread when prefetch > 0, so the stages can add up to more than the wall
time; likewise detection (with decoding) runs ahead in a thread of its own when detect-ahead > 0,
and overlay and encode in a writer thread when write-ahead > 0. Backends that
are not installed or have no shipped model file are skipped. ``--set NAME=VALUE`` changes a
scene setting (``maskseg.pipeline.scene_config``; ``grow_rounds=0``: no grow and redo);
``--redo-model`` segments the grown windows with another model (``ScenePredictor(redo=...)``);
``--segment-every K ...`` segments each followed face every K-th frame between full detections
(``VideoOptions.segment_every``); ``--carry-window off on`` first cuts a face due for the model
from its carried window (``VideoOptions.carry_window``); ``--threads 0 1`` runs the segmenter's
onnxruntime session at one thread per core, then at one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2

from maskseg.console import cpu_description
from maskseg.pipeline.predictor import Predictor
from maskseg.pipeline.scene import ScenePredictor
from maskseg.pipeline.scene_config import scene_config
from maskseg.pipeline.wear import WearCheck
from maskseg.video import (
    VideoFileSink,
    VideoOptions,
    VideoSegmenter,
    default_codec,
    open_source,
    run_video,
)
from maskseg.video.synthetic import moving_faces, write_clip

ROOT = Path(__file__).resolve().parents[1]
CROPS = ROOT.parent / "shared" / "data" / "mfsd-real" / "MSFD" / "1" / "face_crop"
STAGES = ("decode", "detect", "segment", "face check", "wear", "overlay", "encode")


FACES = (
    "faceMsak_t1_JustinTrudeau_0002.jpg",
    "faceMask1_ttt_6591_2_3.jpg",
    "faceMsak_t1_KyriakosMitsotakis_0002.jpg",
)


def make_clip(folder: Path, n_faces: int, n_frames: int) -> Path:
    files = [CROPS / n for n in FACES if (CROPS / n).is_file()] + sorted(CROPS.glob("*.jpg"))
    crops = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files[:n_faces]]
    frames = (frame for frame, _ in moving_faces(crops, n_frames, side=150, speed=3.0, seed=1))
    return write_clip(folder / f"faces{n_faces}.mp4", frames)


def run_once(
    clip: Path,
    scene: ScenePredictor,
    options: VideoOptions,
    out: Path,
    codec: str,
    max_frames: int | None = None,
    wear=None,
):
    with open_source(clip) as source:
        sink = VideoFileSink(out, source.fps, source.size, codec)
        segmenter = VideoSegmenter(scene, options, wear=wear)
        return run_video(source, segmenter, [sink], max_frames=max_frames)


def add_switch(ap: argparse.ArgumentParser, option: str, what: str) -> None:
    """``--OPTION off|on ...`` for a boolean ``VideoOptions`` field, its default the field's;
    both: alternated in one run."""
    ap.add_argument(
        "--" + option.replace("_", "-"),
        nargs="+",
        choices=["off", "on"],
        default=["on" if getattr(VideoOptions, option) else "off"],
        help=f"{what} (VideoOptions.{option}); both: alternated in one run",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    ap.add_argument(
        "--models",
        nargs="+",
        default=[None],
        help="shipped model names or files, each run in this one process (default: the default)",
    )
    ap.add_argument(
        "--prefetch",
        type=int,
        nargs="+",
        default=[0],
        help="frames decoded ahead in a reader thread (0: none)",
    )
    ap.add_argument(
        "--write-ahead",
        type=int,
        nargs="+",
        default=[0, VideoOptions.write_ahead],
        help="frames queued for the writer thread (0: none)",
    )
    ap.add_argument(
        "--detect-ahead",
        type=int,
        nargs="+",
        default=[0, VideoOptions.detect_ahead],
        help="frames located ahead in a detect thread (0: none)",
    )
    ap.add_argument(
        "--detect-threads",
        type=int,
        default=VideoOptions.detect_threads,
        help="detector threads (0: the detector's default)",
    )
    ap.add_argument(
        "--spinning", action="store_true", help="onnxruntime: idle segmenter threads spin"
    )
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[0],
        metavar="T",
        help="onnxruntime threads of the segmenter (0: one per core, the default); several: "
        "one after another",
    )
    ap.add_argument("--codec", default=default_codec(), choices=["h264", "mp4v"])
    ap.add_argument("--detect-every", type=int, default=VideoOptions.detect_every)
    ap.add_argument(
        "--hold-growth",
        nargs="+",
        default=["on"],
        choices=["on", "off"],
        help="grow-and-redo decided on full detections and held (on) or every frame (off); "
        "both: alternated in one run",
    )
    ap.add_argument("--mode", default="tiles", choices=["frame", "tiles"])
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a scene setting"
    )
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="torch backend precision (auto: bf16 where the CPU has it)",
    )
    ap.add_argument(
        "--redo-model",
        nargs="+",
        default=["none"],
        metavar="M",
        help="model for the grown windows of grow and redo (ScenePredictor redo; none: the "
        "model itself); several: alternated in one run",
    )
    ap.add_argument(
        "--wear",
        nargs="+",
        choices=["off", "on"],
        default=["off", "on"],
        help="without and with the wear check (landmarks and verdicts per face)",
    )
    ap.add_argument(
        "--segment-every",
        type=int,
        nargs="+",
        default=[VideoOptions.segment_every],
        metavar="K",
        help="each followed face segmented every K-th frame between full detections "
        "(VideoOptions.segment_every); several: alternated in one run",
    )
    add_switch(
        ap,
        "carry_window",
        "a face due for the model first cut from its carried window",
    )
    add_switch(
        ap,
        "hold_taken_back",
        "a face whose growth was taken back not grown again before the next full detection",
    )
    ap.add_argument(
        "--face-check",
        nargs="+",
        choices=["off", "on"],
        default=["on"],
        help="without and with the learned face check (SceneConfig.face_learned); both: "
        "alternated in one run",
    )
    a = ap.parse_args()
    if not CROPS.is_dir():
        raise SystemExit(f"shared data not found at {CROPS}")

    print(
        f"CPU: {cpu_description()}, load average "
        f"{os.getloadavg()[0]:.1f} (shared machine: medians of {a.runs} runs)"
    )
    print(
        f"clip: 640x480, {a.frames} frames; codec {a.codec}; full detection ({a.mode}) every "
        f"{a.detect_every} frames, re-detection around tracked faces between"
    )
    print(f"detector threads: {a.detect_threads or 'default'}")
    # the video's one detector is its scene's, built at the video's threads
    config = VideoOptions(detect_threads=a.detect_threads or None).scene_config(
        scene_config([f"mode={a.mode}", *a.set])
    )
    if a.set:
        print(f"scene settings: {', '.join(a.set)}")
    head = (
        f"{'backend':<60} {'faces':>5} {'wear':>4} {'hold':>4} {'every':>5} {'cw':>3} "
        f"{'prefetch':>8} {'detect':>6} {'write':>5} {'fps':>6} "
        + " ".join(f"{s:>8}" for s in STAGES)
    )
    print(head + f" {'full det':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = {n: make_clip(folder, n, a.frames) for n in a.faces}
        runs = ((m, b, t) for m in a.models for b in a.backends for t in a.threads)
        for model, backend, threads in runs:
            if backend == "torch" and threads:
                continue  # --threads sets onnxruntime's sessions only
            try:
                options = (
                    {"precision": a.precision}
                    if backend == "torch"
                    else {"spinning": a.spinning, "threads": threads}
                )
                predictor = Predictor.load(model, backend=backend, **options)
            except (ImportError, ValueError, FileNotFoundError) as exc:
                print(f"{backend}: skipped ({exc})")
                continue
            scenes = {
                (r, fc): ScenePredictor(
                    predictor,
                    config if fc == "on" else replace(config, face_learned=None),
                    redo=None if r == "none" else Predictor.load(r, backend=backend, **options),
                )
                for r in a.redo_model
                for fc in a.face_check
            }
            name = (f"{model}: " if model else "") + predictor.backend.describe()
            for n, clip in clips.items():
                combos = [
                    (d, w, x, j, h, r, fc, k, cw, tb)
                    for fc in a.face_check
                    for k in a.segment_every
                    for cw in a.carry_window
                    for tb in a.hold_taken_back
                    for r in a.redo_model
                    for h in a.hold_growth
                    for j in a.wear
                    for d in a.prefetch
                    for x in a.detect_ahead
                    for w in a.write_ahead
                ]
                for depth, ahead, det_ahead, judge, hold, redo, fc, every, cw, tb in combos:
                    scene = scenes[(redo, fc)]
                    wear = WearCheck() if judge == "on" else None
                    options = VideoOptions(
                        detect_every=a.detect_every,
                        prefetch=depth,
                        write_ahead=ahead,
                        detect_ahead=det_ahead,
                        detect_threads=a.detect_threads or None,
                        hold_growth=hold == "on",
                        segment_every=every,
                        carry_window=cw == "on",
                        hold_taken_back=tb == "on",
                    )
                    warm = folder / "warm.mp4"
                    run_once(clip, scene, options, warm, a.codec, 20, wear)  # warm-up
                    runs = [
                        run_once(clip, scene, options, folder / "out.mp4", a.codec, None, wear)
                        for _ in range(a.runs)
                    ]
                    fps = statistics.median(r.fps for r in runs)
                    ms = {
                        s: statistics.median(r.ms_per_frame().get(s, 0.0) for r in runs)
                        for s in STAGES
                    }
                    full = statistics.median(r.full_detections for r in runs)
                    row = (
                        f"{n:>5} {judge:>4} {hold:>4} {every:>5} {cw:>3} {depth:>8} {det_ahead:>6} "
                        f"{ahead:>5} {fps:>6.1f} "
                    )
                    label = name if redo == "none" else f"redo {redo}: {name}"
                    if tb == "on":
                        label = f"taken back held: {label}"
                    if fc == "off":
                        label = f"no face check: {label}"
                    print(
                        f"{label[:60]:<60} {row}"
                        + " ".join(f"{ms[s]:>8.1f}" for s in STAGES)
                        + f" {full:>8.0f}"
                    )


if __name__ == "__main__":
    main()
