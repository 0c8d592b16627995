"""Face masks in videos, camera feeds and streams: ``maskseg video``.

source -> frames -> find faces / track -> segment (all faces in one batch; windows whose
mask reaches an edge grown and redone) -> annotate -> sinks

    from maskseg.video import VideoOptions, VideoSegmenter, VideoFileSink, open_source, run_video

    options = VideoOptions()
    scene = ScenePredictor(Predictor.load(), options.scene_config())  # detector threads
    with open_source("clip.mp4") as source:
        sink = VideoFileSink("out.mp4", source.fps, source.size)
        stats = run_video(source, VideoSegmenter(scene, options), [sink])
    print(stats.summary())     # frames/s and milliseconds per stage

Loaders (``sources``), tracking and smoothing (``tracking``), the per-stream state
(``segmenter``), sinks (``sinks``), writing to them (``writer``), the run's figures
(``stats``) and the loop (``loop``) are separate steps, so a web API can chain the same
parts differently.
"""

from maskseg.console import StopEvent, stop_on_signals
from maskseg.video.loop import run_video
from maskseg.video.segmenter import FrameResult, VideoOptions, VideoSegmenter
from maskseg.video.sinks import (
    CODECS,
    JsonLinesSink,
    MaskFolderSink,
    PreviewSink,
    VideoFileSink,
    default_codec,
    frame_record,
    gui_problem,
)
from maskseg.video.sources import (
    CameraSource,
    FileSource,
    Frame,
    Source,
    SourceError,
    StreamSource,
    open_source,
    prefetch,
)
from maskseg.video.stats import VideoStats
from maskseg.video.tracking import CropSmoother, FaceTracker, Track, match_boxes
from maskseg.video.writer import annotate

__all__ = [
    "CODECS",
    "CameraSource",
    "CropSmoother",
    "FaceTracker",
    "FileSource",
    "Frame",
    "FrameResult",
    "JsonLinesSink",
    "MaskFolderSink",
    "PreviewSink",
    "Source",
    "SourceError",
    "StopEvent",
    "StreamSource",
    "Track",
    "VideoFileSink",
    "VideoOptions",
    "VideoSegmenter",
    "VideoStats",
    "annotate",
    "default_codec",
    "frame_record",
    "gui_problem",
    "match_boxes",
    "open_source",
    "prefetch",
    "run_video",
    "stop_on_signals",
]
