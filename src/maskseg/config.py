"""Run configuration as frozen dataclasses, saved as YAML with every run and inside checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Person / source-photo key for grouped splits. Group 1 of the first match is the key:
#   faceMsak_houminghao_0_0_12.jpg -> facemsak_houminghao   (one person, several photos)
#   faceMsak_t1_JaredPolis_0_0.jpg -> facemsak_t1_jaredpolis
#   faceMask1_ttt_6371_1_2.jpg     -> facemask1_ttt_6371    (faces cut from one source photo)
#   000123_2.jpg                   -> 000123                (full MSFD: faces of one photo)
# Keys are lower-cased, so facemsak_yangmi and faceMsak_yangmi are one person.
DEFAULT_GROUP_REGEX = r"^(\d+(?=_)|[^_]+_(?:(?:t1|ttt)_)?[^_]+)"


@dataclass(frozen=True)
class DataConfig:
    """Where the pairs are and how they are split.

    ``seed`` is the split seed (``--split-seed``), separate from the training seed, so a model
    trained with another initialisation keeps the canonical test split.
    """

    root: str = ""
    image_size: int = 160
    test_fraction: float = 0.2
    folds: int = 3
    group_regex: str = DEFAULT_GROUP_REGEX
    seed: int = 0

    def split_key(self) -> tuple[float, int, str, int]:
        """What fixes the split: two configs with the same key split the same ids alike."""
        return (self.test_fraction, self.folds, self.group_regex, self.seed)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "unet"
    base_channels: int = 16
    depth: int = 4
    in_channels: int = 3
    members: int = 1  # > 1: an inference-only ensemble of that many members (maskseg pack)
    flip_tta: bool = False  # average with the mirrored image at inference
    presence: bool = False  # a mask-presence head gates the mask (maskseg.train.gate)
    presence_hidden: int = 256  # its hidden units (0: logistic regression)
    block: str = "double"  # U-Net conv block: double (3x3 conv twice) or separable (depthwise)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 250
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    patience: int = 80
    min_delta: float = 1e-4
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    lovasz_weight: float = 0.0
    augment: str = "standard"  # none | standard | strong (maskseg.train.transforms)
    precision: str = "auto"  # auto | fp32 | bf16 ; CUDA always uses AMP when "auto"
    num_workers: int = 0
    threads: int = 0  # 0 = leave torch's default
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass(frozen=True)
class InferConfig:
    """How logits become a mask; stored with the weights, so every front end decides alike.

    Attributes:
        threshold: probability above which a pixel is mask.
        clean: keep the largest region and fill its holes.
    """

    threshold: float = 0.5
    clean: bool = True


SECTIONS = ("data", "model", "train", "infer")

# Options a resumed run may change (they do not alter what the run computes); every other
# option given on resume must equal the run's own, or the resume is refused.
RESUMABLE = {
    ("data", "root"),
    ("train", "threads"),
    ("train", "num_workers"),
    ("train", "progress"),
    ("train", "device"),
}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a (possibly partial) dict; unknown keys are an error that names them."""
        parts = {}
        for name, sub in zip(SECTIONS, _CLASSES, strict=True):
            values = dict(d.get(name) or {})
            valid = {f.name for f in dataclasses.fields(sub)}
            unknown = sorted(set(values) - valid)
            if unknown:
                raise ValueError(f"unknown {name} option(s) {unknown}; valid: {sorted(valid)}")
            parts[name] = sub(**values)
        extra = sorted(set(d) - set(SECTIONS))
        if extra:
            raise ValueError(f"unknown config section(s) {extra}; valid: {', '.join(SECTIONS)}")
        return cls(**parts)

    def merge(self, overrides: dict[str, dict[str, Any]]) -> Config:
        """A copy with ``{section: {option: value}}`` applied (None values are ignored)."""
        d = self.to_dict()
        for section, values in overrides.items():
            d.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        return Config.from_dict(d)

    def replace(self, section: str, **changes: Any) -> Config:
        """Return a copy with some fields of one section changed (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )


_CLASSES = (DataConfig, ModelConfig, TrainConfig, InferConfig)


def resume_config(saved: Config, overrides: dict[str, dict[str, Any]]) -> Config:
    """The config a resumed run continues with: its own, plus the overrides that may change.

    Raises ValueError naming every option given with a value other than the run's own that a
    resume cannot honour (e.g. ``--epochs`` changes the LR schedule already half followed).
    """
    refused = []
    for section, values in overrides.items():
        for key, value in values.items():
            if value is None or (section, key) in RESUMABLE:
                continue
            if getattr(getattr(saved, section), key) != value:
                refused.append(
                    f"{section}.{key} (run: {getattr(getattr(saved, section), key)!r}, "
                    f"given: {value!r})"
                )
    if refused:
        allowed = ", ".join(f"{s}.{k}" for s, k in sorted(RESUMABLE))
        raise ValueError(
            "--resume continues a run with its own settings; these differ: "
            + "; ".join(refused)
            + f". Only {allowed} may change on resume; start a new run folder to change others."
        )
    changes = {
        s: {k: v for k, v in vals.items() if (s, k) in RESUMABLE} for s, vals in overrides.items()
    }
    return saved.merge(changes)


def save_config(cfg: Config, path: str | Path) -> None:
    from maskseg.files import atomic_write_bytes

    atomic_write_bytes(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())


def load_config(path: str | Path) -> Config:
    with open(path, encoding="utf-8") as fh:
        return Config.from_dict(yaml.safe_load(fh) or {})
