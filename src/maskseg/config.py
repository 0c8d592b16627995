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
    root: str = ""
    image_size: int = 160
    test_fraction: float = 0.2
    folds: int = 3
    group_regex: str = DEFAULT_GROUP_REGEX
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "unet"
    base_channels: int = 16
    depth: int = 4
    in_channels: int = 3
    members: int = 1  # > 1: an inference-only ensemble of that many members (maskseg pack)
    flip_tta: bool = False  # average with the mirrored image at inference


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
    augment: str = "standard"  # none | standard | strong (maskseg.transforms)
    precision: str = "auto"  # auto | fp32 | bf16 ; CUDA always uses AMP when "auto"
    num_workers: int = 0
    threads: int = 0  # 0 = leave torch's default
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a (possibly partial) dict; unknown keys are an error that names them."""
        parts = {}
        for name, sub in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            values = dict(d.get(name) or {})
            valid = {f.name for f in dataclasses.fields(sub)}
            unknown = sorted(set(values) - valid)
            if unknown:
                raise ValueError(f"unknown {name} option(s) {unknown}; valid: {sorted(valid)}")
            parts[name] = sub(**values)
        extra = sorted(set(d) - {"data", "model", "train"})
        if extra:
            raise ValueError(f"unknown config section(s) {extra}; valid: data, model, train")
        return cls(**parts)

    def replace(self, section: str, **changes: Any) -> Config:
        """Return a copy with some fields of one section changed (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )


def save_config(cfg: Config, path: str | Path) -> None:
    from maskseg.io import atomic_write_bytes

    atomic_write_bytes(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())


def load_config(path: str | Path) -> Config:
    with open(path, encoding="utf-8") as fh:
        return Config.from_dict(yaml.safe_load(fh) or {})
