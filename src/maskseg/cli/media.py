"""Commands that segment photos and videos: ``predict`` (files and folders; the file writer is
``maskseg.cli.predict``) and ``video`` (files, cameras, streams)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from maskseg.cli.batch import add_batch_args, batch_runner, check_batch_options
from maskseg.cli.common import (
    METHODS,
    AddCommand,
    add_model_args,
    load_predictor,
    non_negative_float,
    positive_int,
    unit_float,
)
from maskseg.cli.scene_args import GIVEN_DETECTOR_OPTIONS, add_detector_args, scene_config_from_args
from maskseg.console import exit_status
from maskseg.io import DECODE_SIDE, DEFAULT_MAX_PIXELS

# ``maskseg.pipeline.request.Mode``'s values (not imported: the parser stays light)
PREDICT_MODES = ("auto", "scene", "crop")
# predict's default mode: crop, as before auto mode's rule was measured
# (docs/shipped-model-plan.md, "One mode for any picture")
DEFAULT_PREDICT_MODE = "crop"


def _check_predict_options(a: argparse.Namespace) -> None:
    """Options that mean nothing in the mode asked for fail before the model loads."""
    if a.no_wear:
        for option, given in (("--landmarks", a.landmarks), ("--summary", a.summary)):
            if given:
                raise ValueError(f"{option} needs the wear check: drop --no-wear")
    if a.landmarks and not a.json:
        raise ValueError("--landmarks adds the points to the JSON: add --json")
    if a.mode != "crop":
        if a.method != "unet":
            raise ValueError(
                f"--mode {a.mode} segments detected faces with the U-Net; add --crop to run "
                f"{a.method} on whole pictures, or drop --method"
            )
        return
    given = getattr(a, GIVEN_DETECTOR_OPTIONS, ())
    if given:
        raise ValueError(
            f"{', '.join(given)}: the face detector does not run in crop mode; add --scene "
            "(or --mode auto) for whole photos, or drop the detector options"
        )


def cmd_predict(a: argparse.Namespace) -> int:
    from maskseg.cli.predict import predict_paths
    from maskseg.cli.run_report import announce_stop, report_run

    _check_predict_options(a)
    check_batch_options(a)
    if a.method == "unet":
        segmenter = load_predictor(a)
    else:
        from maskseg.evaluate.baselines import get_method

        segmenter = get_method(a.method)
    if a.mode != "crop":
        from maskseg.pipeline.scene import ScenePredictor

        segmenter = ScenePredictor(segmenter, scene_config_from_args(a))

    def report(path: Path, reason: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)

    wear = None
    if not a.no_wear:
        from maskseg.pipeline.wear import WearCheck

        wear = WearCheck()
    from maskseg.console import stop_on_signals

    with stop_on_signals(on_first=announce_stop) as stop:
        res = predict_paths(
            segmenter,
            a.inputs,
            a.output,
            a.overlay,
            not a.no_progress,
            a.max_pixels,
            on_skip=report,
            write_json=a.json,
            wear=wear,
            landmarks=a.landmarks,
            summary=a.summary,
            coco=a.coco,
            mode=a.mode,
            shard=a.shard,
            runner=batch_runner(a),
            stop=stop,
        )
    return report_run(res, a, wear is not None)


def video_options(a: argparse.Namespace) -> Any:
    """The ``VideoOptions`` of ``maskseg video``'s flags; a flag not given keeps the option's
    default."""
    from maskseg.video import VideoOptions

    given: dict[str, Any] = {}
    if a.gate_frames is not None:
        given["gate_frames"] = a.gate_frames
    if a.cut_threshold is not None:  # 0: no cut detection
        given["cut_threshold"] = a.cut_threshold or None
    if a.hold_look is not None:  # 0: never held
        given["hold_look"] = a.hold_look or None
    if a.segment_every is not None:
        given["segment_every"] = a.segment_every
    return VideoOptions(
        detect_every=a.detect_every, smooth=not a.no_smooth, wear_every=a.wear_every, **given
    )


def cmd_video(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from maskseg import video
    from maskseg.console import show_progress
    from maskseg.pipeline.predictor import DEFAULT_MODEL
    from maskseg.pipeline.scene import ScenePredictor

    if not (a.output or a.json or a.masks or a.show):
        raise ValueError("nothing to write: give --output, --json, --masks or --show")
    problem = video.gui_problem() if a.show else None
    if problem and not (a.output or a.json or a.masks):
        raise ValueError(
            f"--show: no preview window can open ({problem}), and nothing else to write"
        )
    to_stdout = a.json is not None and str(a.json) == "-"
    json_path = None if to_stdout else a.json
    video.sinks.check_outputs(a.source, a.output, json_path, a.masks)  # before anything opens
    with video.open_source(a.source) as source:  # a bad source fails before the model loads
        options = video_options(a)
        wear = None
        if not a.no_wear:
            from maskseg.pipeline.wear import WearCheck

            wear = WearCheck()
        # the scene's one detector runs at the video's detector threads
        redo = None if a.redo_model in (None, "none") else load_predictor(a, a.redo_model)
        config = options.scene_config(scene_config_from_args(a))
        scene = ScenePredictor(load_predictor(a), config, redo=redo)
        segmenter = video.VideoSegmenter(scene, options, wear)
        sinks: list[Any] = []
        try:
            if a.output:
                sinks.append(video.VideoFileSink(a.output, source.fps, source.size, a.codec))
            if a.json:
                sinks.append(video.JsonLinesSink(sys.stdout if to_stdout else a.json))
            if a.masks:
                sinks.append(video.MaskFolderSink(a.masks))
            if problem:
                print(f"warning: no preview window: {problem}", file=sys.stderr)
            elif a.show:
                sinks.append(video.PreviewSink())
        except BaseException:
            for sink in sinks:
                getattr(sink, "discard", sink.close)()
            raise
        bar = tqdm(
            total=source.frame_count,
            desc="video",
            unit="frame",
            disable=not show_progress(not a.no_progress),
        )
        with video.stop_on_signals() as stop:
            stats = video.run_video(
                source,
                segmenter,
                sinks,
                stop,
                a.max_frames,
                on_frame=lambda frame, result: bar.update(),
            )
        bar.close()
    shown = (a.output, "standard output" if to_stdout else a.json, a.masks)
    written = ", ".join(str(p) for p in shown if p) or "nothing"
    stopped = f"; stopped by {stats.stopped}" if stats.stopped else ""
    model = a.model or DEFAULT_MODEL
    report = sys.stderr if to_stdout else sys.stdout  # JSON lines alone on standard output
    print(f"{source.describe()}, model {model}: wrote {written}{stopped}", file=report)
    print(stats.summary(), file=report)
    limited = stats.stopped or (a.max_frames is not None and stats.frames >= a.max_frames)
    if not limited and source.ended_early(stats.frames):
        print(
            f"warning: {source.name}: decoding ended after {stats.frames} of the "
            f"{source.frame_count} frames its header gives (truncated or damaged?)",
            file=sys.stderr,
        )
    # a run cut short by a signal exits as the shell expects (128 + the signal's number), so
    # `maskseg video ... && next-step` does not take its partial files for finished ones
    return exit_status(stats.stopped, 0)


def add_predict(add: AddCommand) -> None:
    p = add("predict", "write DIR/<stem>.png masks for image files and folders")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--output", required=True, type=Path, help="folder for the masks")
    add_model_args(p)
    p.add_argument(
        "--method",
        default="unet",
        choices=["unet", *METHODS],
        help="segmenter: the U-Net or a classical method",
    )
    p.add_argument(
        "--overlay",
        action="store_true",
        help="also write <stem>_overlay.jpg, at the size the image was decoded at: images "
        f"with a long side of {2 * DECODE_SIDE} px or more are decoded reduced, so their "
        "overlay is smaller than the image (the mask always has the image's full size)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--mode",
        choices=PREDICT_MODES,
        default=DEFAULT_PREDICT_MODE,
        help="how a picture is read: scene (whole photos: detect faces, segment each face's "
        "window, paste into one full-frame mask), crop (the picture is one face crop), auto "
        "(a scene, except a picture where no face is found and whose shape is a face "
        "crop's: then a crop; tight crops where faces are found are read as scenes) "
        f"(default: {DEFAULT_PREDICT_MODE})",
    )
    mode.add_argument(
        "--scene", dest="mode", action="store_const", const="scene", help="= --mode scene"
    )
    mode.add_argument(
        "--crop", dest="mode", action="store_const", const="crop", help="= --mode crop"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="also write <stem>.json (image size, mode, and per face: box, score, mask "
        "share of the box, mask or not; without --scene the one face is the picture)",
    )
    p.add_argument(
        "--no-wear",
        action="store_true",
        help="skip the wear check (default: per face, Face Mesh landmarks judge whether the "
        "mask covers nose, mouth and chin: a verdict in the JSON and the overlay)",
    )
    p.add_argument(
        "--landmarks",
        action="store_true",
        help="add each face's 468 Face Mesh points ([x, y] in the mask's pixels) to the JSON",
    )
    p.add_argument(
        "--summary",
        type=Path,
        metavar="CSV",
        help="one CSV for the run, one row per face: file, face index, verdict, nose, mouth, "
        "chin, coverage, mask area; the counts per verdict are printed at the end",
    )
    p.add_argument(
        "--coco",
        type=Path,
        metavar="JSON",
        help="one COCO instances JSON for the run: per face an annotation (box, score, "
        "RLE of its part of the mask, area, category face_mask, the wear fields as attributes)",
    )
    add_detector_args(p, video=False)
    add_batch_args(p)
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="images with more pixels are skipped as decompression bombs",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it shows only on a terminal anyway)",
    )
    p.set_defaults(func=cmd_predict)


def add_video(add: AddCommand) -> None:
    p = add(
        "video", "masks in a video file, camera or stream: annotated video, JSON lines, mask PNGs"
    )
    p.add_argument(
        "source", help="video file, camera index (0, 1, ...) or stream URL (rtsp://, http://, ...)"
    )
    p.add_argument("--output", type=Path, help="annotated video file (.mp4, .avi, .mkv)")
    p.add_argument(
        "--json",
        type=Path,
        help="JSON lines file (-: standard output): per frame its index, time (s) "
        "and faces (track id, box, score, mask share of the box, wear verdict)",
    )
    p.add_argument(
        "--masks",
        type=Path,
        help="folder for each frame's mask as 000000.png, ... (new, or without frame masks "
        "of an earlier run)",
    )
    p.add_argument(
        "--codec",
        choices=["h264", "mp4v"],
        help="h264 (PyAV: pip install "
        "'maskseg[video]'; plays in browsers) or mp4v (OpenCV); default: h264 when "
        "PyAV is installed, else mp4v",
    )
    p.add_argument(
        "--no-smooth", action="store_true", help="no averaging of each face's mask over frames"
    )
    p.add_argument(
        "--gate-frames",
        type=positive_int,
        metavar="K",
        help="whether a followed face has a mask is voted over its last K frames (1: each "
        "frame's own gate; default: the validated setting, maskseg.video.segmenter.GATE_FRAMES)",
    )
    p.add_argument(
        "--cut-threshold",
        type=non_negative_float,
        metavar="T",
        help="a frame whose content score against the previous one exceeds T starts a new shot: "
        "followed faces are forgotten (new ids) and the frame is detected afresh (0: off; "
        "default: maskseg.video.cuts.CUT_THRESHOLD)",
    )
    p.add_argument(
        "--hold-look",
        type=unit_float,
        metavar="V",
        help="hold a face only full detections see while its box looks the same (correlation "
        ">= V) instead of detecting every frame in full (0: off, the default; see "
        "VideoOptions.hold_look)",
    )
    p.add_argument(
        "--segment-every",
        type=positive_int,
        metavar="K",
        help="segment each followed face with a mask every K-th frame between full detections, "
        "its mask moved with the picture in the others (1: every frame; default: "
        "maskseg.video.segmenter.SEGMENT_EVERY; see VideoOptions.segment_every)",
    )
    p.add_argument(
        "--no-wear",
        action="store_true",
        help="skip the wear check (default: each face's verdict, from Face Mesh landmarks, "
        "in the JSON lines and under its box; about 2-3 ms per face)",
    )
    p.add_argument(
        "--show",
        action="store_true",
        help="preview window (needs a display and an OpenCV with GUI; q quits)",
    )
    p.add_argument(
        "--detect-every",
        type=positive_int,
        default=15,
        help="full detection every N frames; "
        "between them faces are re-detected around their last boxes",
    )
    p.add_argument(
        "--wear-every",
        type=positive_int,
        default=5,
        help="judge how each followed face wears its mask when it appears and then every N "
        "frames (its verdict stands in between)",
    )
    p.add_argument(
        "--max-frames", type=positive_int, metavar="N", help="stop after this many frames"
    )
    # the photos' model: unet-msfd-fast lost 0.025-0.044 frame IoU on clean validation clips
    # for its doubled frames/s (docs/shipped-model-plan.md)
    add_model_args(
        p,
        default="the shipped unet-msfd; unet-msfd-fast gives about twice the frames/s for "
        "lower frame IoU",
    )
    add_detector_args(p, video=True)
    p.add_argument(
        "--redo-model",
        metavar="NAME",
        help="model that segments the windows grown where a mask reached its window's edge "
        "(default: --model itself; unet-msfd-fast: cheaper second passes)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (it shows only on a terminal anyway)",
    )
    p.set_defaults(func=cmd_video)


COMMANDS = {"predict": add_predict, "video": add_video}
