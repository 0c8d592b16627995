"""The scene options ``predict --scene`` and ``video`` share: the face detector and the face
check, and the ``SceneConfig`` they make."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from maskseg.cli.common import unit_float
from maskseg.pipeline.scene_config import SCENE_SCORE_THRESHOLD

# Where the detector options given on the command line are listed (their defaults cannot
# tell given from not given without changing what --help shows).
GIVEN_DETECTOR_OPTIONS = "detector_options_given"


class StoreGiven(argparse.Action):
    """Store the value, and list the option in ``GIVEN_DETECTOR_OPTIONS``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        given = getattr(namespace, GIVEN_DETECTOR_OPTIONS, ())
        if option_string not in given:
            setattr(namespace, GIVEN_DETECTOR_OPTIONS, (*given, option_string))


def add_detector_args(p: argparse.ArgumentParser, video: bool) -> None:
    """The face detector of ``predict --scene`` and ``video`` (read by
    ``scene_config_from_args``)."""
    p.set_defaults(**{GIVEN_DETECTOR_OPTIONS: ()})
    p.add_argument(
        "--detector",
        default="blazeface",
        action=StoreGiven,
        help="face detector" if video else "face detector for --scene",
    )
    p.add_argument(
        "--detect-mode",
        default="tiles",
        choices=["frame", "tiles"],
        action=StoreGiven,
        help=("full detection: " if video else "") + "frame: one pass (large "
        "faces); tiles: also overlapping tiles (small faces)",
    )
    p.add_argument(
        "--detect-threshold",
        type=unit_float,
        default=SCENE_SCORE_THRESHOLD,
        action=StoreGiven,
        help="minimum detection score of a new face"
        if video
        else "minimum detection score (low: the mask gate rejects non-masks)",
    )
    p.add_argument(
        "--no-face-check",
        action="store_true",
        help="keep every mask the gate gives a detected face: the learned face check, which "
        "empties masks it finds unlikely to be on a face (collars, hair), off",
    )


def scene_config_from_args(a: argparse.Namespace):
    from maskseg.pipeline.scene_config import SceneConfig

    config = SceneConfig(
        detector=a.detector, mode=a.detect_mode, score_threshold=a.detect_threshold
    )
    return replace(config, face_learned=None) if a.no_face_check else config
