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


MIN_IMAGE_SIZE = 16  # the default U-Net halves its input four times


@dataclass(frozen=True)
class DataConfig:
    """Where the pairs are and how they are split.

    ``seed`` is the split seed (``--split-seed``), separate from the training seed, so a model
    trained with another initialisation keeps the canonical test split. ``scene_windows`` > 0
    trains also on windows of the full MSFD photos, that many times a face's box, around
    each crop linked to its box (``maskseg.data.msfd``); 0 trains on the crops alone.
    ``composites`` > 0 adds that many windows of the training pairs' masks composited onto
    the training photos without a mask of ``composite_faces`` (a ``maskseg data faces``
    folder), framed ``composite_scale_min`` to ``_max`` times the scene path's window
    (``maskseg.train.composites``), ``composite_roomy_share`` of them from photos with room
    around the face and, with ``composite_whole_masks``, only from masks that end inside their
    crop; ``pair_repeat`` repeats each crop that many times per epoch beside them.
    ``pseudo``: a ``maskseg pseudo`` folder whose teacher-labelled crops are
    further training rows (``maskseg.train.pseudo``; never validated or tested on).
    ``pairs_digest``: the set of pairs the split was made over; a split rebuilt from a folder
    holding other pairs (a subset, more pairs) would give other test ids, so it is refused.
    """

    root: str = ""
    image_size: int = 160
    test_fraction: float = 0.2
    folds: int = 3
    group_regex: str = DEFAULT_GROUP_REGEX
    seed: int = 0
    scene_windows: float = 0.0
    composites: int = 0
    composite_faces: str = ""
    composite_scale_min: float = 1.0
    composite_scale_max: float = 1.8
    composite_roomy_share: float = 0.5
    composite_whole_masks: bool = False
    pair_repeat: int = 1
    pseudo: str = ""
    # what the split was made over: ``maskseg.data.splits.pairs_digest`` of every pair id found
    # when the run started ("" in files made before it was recorded: not checked)
    pairs_digest: str = ""

    def __post_init__(self) -> None:
        if not self.image_size >= MIN_IMAGE_SIZE:
            raise ValueError(
                f"image_size must be at least {MIN_IMAGE_SIZE} px, got {self.image_size}"
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.pair_repeat < 1 or self.composites < 0 or self.scene_windows < 0:
            raise ValueError("pair_repeat must be >= 1, composites and scene_windows >= 0")

    def split_key(self) -> tuple[float, int, str, int]:
        """What fixes the split: two configs with the same key split the same ids alike."""
        return (self.test_fraction, self.folds, self.group_regex, self.seed)


# Options an architecture had as flat ModelConfig fields before architectures got their own
# ``params`` (issue 14), with their defaults of that time. Run folders' config.yaml, --config
# files and the shipped model files store them flat (``model: {name: unet, depth: 4, ...}``);
# they are read into ``params``. A historical record: new architectures never add to it.
FLAT_PARAMS: dict[str, dict[str, Any]] = {
    "unet": {"base_channels": 16, "depth": 4, "block": "double"},
}


# what a mask-presence head can read (``maskseg.models.presence``)
PRESENCE_FEATURES = ("pooled", "masked")


@dataclass(frozen=True, init=False)
class ModelConfig:
    """Which network, and how it is wrapped for inference.

    The architecture's own options live in ``params`` (its ``Params`` dataclass in
    ``maskseg.models``: the U-Net's ``base_channels``, ``depth``, ``block``), so a new
    architecture adds no field here; the rest is what every architecture shares.

    The old flat form still works: ``ModelConfig(base_channels=8, depth=2)`` puts them into
    ``params``, and ``cfg.depth`` reads ``cfg.params["depth"]``. A U-Net's params are completed
    with the defaults above, so configs that differ only in what was written out are equal.

    Attributes:
        name: a registered architecture (``maskseg.models.list_models()``).
        params: that architecture's options (checked when the model is built).
        in_channels: 3 for RGB.
        members: > 1: an inference-only ensemble of that many members (``maskseg pack``).
        flip_tta: average with the mirrored image at inference.
        presence: a mask-presence head gates the mask (``maskseg.train.gate``).
        presence_hidden: its hidden units (0: logistic regression).
        presence_features: what the head reads (``PRESENCE_FEATURES``): ``pooled``
            encoder maps, or those and the maps averaged over the decoder's mask (``masked``).
    """

    name: str = "unet"
    params: dict[str, Any] = field(default_factory=dict)
    in_channels: int = 3
    members: int = 1
    flip_tta: bool = False
    presence: bool = False
    presence_hidden: int = 256
    presence_features: str = "pooled"

    def __init__(
        self,
        name: str = "unet",
        params: dict[str, Any] | None = None,
        in_channels: int = 3,
        members: int = 1,
        flip_tta: bool = False,
        presence: bool = False,
        presence_hidden: int = 256,
        presence_features: str = "pooled",
        **flat: Any,
    ):
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"model params must be a mapping, got {params!r}")
        legacy = FLAT_PARAMS.get(name, {})
        unknown = sorted(set(flat) - set(legacy))
        if unknown:
            valid = sorted({f.name for f in dataclasses.fields(ModelConfig)} | set(legacy))
            raise ValueError(f"unknown model option(s) {unknown}; valid: {valid}")
        # flat options win over params: replace(..., depth=3) changes a copy's depth
        merged = {**legacy, **(params or {}), **flat}
        for key, value in (
            ("name", name),
            ("params", merged),
            ("in_channels", in_channels),
            ("members", members),
            ("flip_tta", flip_tta),
            ("presence", presence),
            ("presence_hidden", presence_hidden),
            ("presence_features", presence_features),
        ):
            object.__setattr__(self, key, value)

    def __getattr__(self, key: str) -> Any:
        """``cfg.depth`` for ``cfg.params["depth"]``: the flat form older code reads."""
        params = self.__dict__.get("params")
        if params is not None and not key.startswith("__") and key in params:
            return params[key]
        raise AttributeError(
            f"{type(self).__name__} has no option {key!r}"
            + (f" (model {self.__dict__['name']!r} params: {sorted(params)})" if params else "")
        )

    def __hash__(self) -> int:  # params is a dict: hash its items, sorted
        rest = tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "params")
        return hash(rest + tuple(sorted((k, repr(v)) for k, v in self.params.items())))


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. ``steps``: the run's budget in optimiser steps instead of
    ``epochs`` (None: epochs). With ten times more rows an epoch is ten times longer, so a
    budget in epochs means ten times the hours; a budget in steps does not move with the data.
    The run stops after exactly that many steps (its last epoch cut short and validated), the
    learning-rate schedule spans them; warm-up, patience and validation stay per epoch."""

    epochs: int = 250
    steps: int | None = None
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
    # what the label says where augmentation pads a crop: "reflect" (mirrored like the image,
    # so a mask cut at the crop's edge runs on into the padding) or "ignore" (left out of the
    # loss: the image is still mirrored there, but nothing is taught about it)
    pad_label: str = "reflect"
    precision: str = "auto"  # auto | fp32 | bf16 ; CUDA always uses AMP when "auto"
    num_workers: int = 0
    threads: int = 0  # 0 = leave torch's default
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics over all processes
    init: str = ""  # start from these weights (.safetensors/.pt of the same architecture)

    def __post_init__(self) -> None:
        """Values no run can use are refused when the config is made (flags, --config files,
        a resumed run), before anything is written."""
        at_least = {
            "epochs": 1,
            "batch_size": 1,
            "warmup_epochs": 0,
            "patience": 0,
            "num_workers": 0,
            "threads": 0,
        }
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"train.{name} must be at least {low}, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"train.steps must be at least 1 (or unset), got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        weights = (self.bce_weight, self.dice_weight, self.lovasz_weight)
        if min(weights) < 0 or self.weight_decay < 0 or self.min_delta < 0:
            raise ValueError("loss weights, weight_decay and min_delta must be >= 0")
        if not sum(weights) > 0:
            raise ValueError("at least one of bce_weight, dice_weight, lovasz_weight must be > 0")


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
        parts: dict[str, Any] = {}
        for name, sub in zip(SECTIONS, _CLASSES, strict=True):
            values = dict(d.get(name) or {})
            if sub is ModelConfig:  # the current form or the old flat one; checks its keys
                parts[name] = ModelConfig(**values)
                continue
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
            given = {k: v for k, v in values.items() if v is not None}
            model = d.get("model", {})
            if section == "model":
                if given.get("name", model.get("name")) != model.get("name"):
                    model["params"] = {}  # another architecture: none of this one's params
                # options that are not ModelConfig's own are the architecture's params
                # (``--base-channels`` for any architecture, not only the U-Net's legacy form)
                own = {f.name for f in dataclasses.fields(ModelConfig)}
                arch = {k: given.pop(k) for k in list(given) if k not in own}
                params = dict(given.get("params") or model.get("params") or {})
                given["params"] = {**params, **arch}
            d.setdefault(section, {}).update(given)
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
    for section, key, value in _given(overrides):
        if value is None or (section, key) in RESUMABLE:
            continue
        own = _option(saved, section, key)
        if own != value:
            refused.append(f"{section}.{key} (run: {own!r}, given: {value!r})")
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


def differing_options(cfg: Config, overrides: dict[str, dict[str, Any]]) -> list[str]:
    """The options given (``overrides``) whose value ``cfg`` does not hold, but for those a
    process may set for itself (``RESUMABLE``: threads, device, ...): under ``torchrun`` a
    node started with other flags than rank 0's would otherwise train with rank 0's."""
    return [
        f"{section}.{key} (given: {value!r}, the run's: {_option(cfg, section, key)!r})"
        for section, key, value in _given(overrides)
        if value is not None
        and (section, key) not in RESUMABLE
        and _option(cfg, section, key) != value
    ]


def _given(overrides: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(section, option, value) of every override; a model section's ``params`` mapping is
    one option per architecture parameter (``params.depth``)."""
    out = []
    for section, values in overrides.items():
        for key, value in values.items():
            if section == "model" and key == "params" and isinstance(value, dict):
                out += [(section, f"params.{k}", v) for k, v in value.items()]
            else:
                out.append((section, key, value))
    return out


def _option(cfg: Config, section: str, key: str) -> Any:
    """An option's value in ``cfg``; an architecture parameter by its own name (the old flat
    ``depth``) or as ``params.depth``; None where the config has no such option."""
    part = getattr(cfg, section)
    if section == "model" and key.startswith("params."):
        return part.params.get(key[len("params.") :])
    return getattr(part, key, None)


def save_config(cfg: Config, path: str | Path) -> None:
    from maskseg.files import atomic_write_bytes

    atomic_write_bytes(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())


def load_config(path: str | Path) -> Config:
    with open(path, encoding="utf-8") as fh:
        return Config.from_dict(yaml.safe_load(fh) or {})
