"""The ``maskseg train`` / ``cv`` flags that build a training ``Config``, one per option."""

from __future__ import annotations

from typing import Any

from maskseg.config import DataConfig, InferConfig, ModelConfig, TrainConfig

# (flag, config section, field, type, help): the flags that build a training Config. Their
# argparse default is None ("not given"), so a resumed run can tell given from defaulted.
CONFIG_FLAGS: list[tuple[str, str, str, Any, str]] = [
    ("--image-size", "data", "image_size", int, "network input side in px"),
    ("--folds", "data", "folds", int, "cross-validation folds"),
    ("--test-fraction", "data", "test_fraction", float, "share of pairs held out for testing"),
    (
        "--group-regex",
        "data",
        "group_regex",
        str,
        "regex whose group 1 is the person/photo key of a file name (grouped splits)",
    ),
    (
        "--split-seed",
        "data",
        "seed",
        int,
        "seed of the train/validation/test split (apart from --seed)",
    ),
    (
        "--arch",
        "model",
        "name",
        str,
        "architecture (`maskseg models` lists them; another one starts from its own defaults)",
    ),
    ("--base-channels", "model", "base_channels", int, "width of the U-Net's first stage"),
    ("--depth", "model", "depth", int, "U-Net downsampling steps"),
    (
        "--block",
        "model",
        "block",
        str,
        "U-Net conv block: double (3x3 conv twice), separable (depthwise-separable, lighter) "
        "or residual (3x3 conv twice with a shortcut)",
    ),
    ("--epochs", "train", "epochs", int, "training epochs"),
    (
        "--steps",
        "train",
        "steps",
        int,
        "budget in optimiser steps instead of --epochs: the run stops after exactly this many "
        "(the learning-rate schedule spans them; warm-up, patience and validation stay per "
        "epoch), so its hours do not grow with the data",
    ),
    ("--batch-size", "train", "batch_size", int, "images per training step"),
    ("--lr", "train", "lr", float, "peak learning rate (AdamW, warm-up then cosine)"),
    ("--warmup-epochs", "train", "warmup_epochs", int, "epochs of linear learning-rate warm-up"),
    ("--patience", "train", "patience", int, "epochs without validation IoU gain before stopping"),
    (
        "--augment",
        "train",
        "augment",
        str,
        "augmentation preset: none, standard, strong or framing (detector-like crop jitter)",
    ),
    (
        "--pad-label",
        "train",
        "pad_label",
        str,
        "where augmentation pads a crop, the label is mirrored like the image (reflect) or left "
        "out of the loss (ignore)",
    ),
    (
        "--precision",
        "train",
        "precision",
        str,
        "auto (bf16 where the CPU has it, AMP on CUDA), fp32, bf16 or fp16 (CUDA only)",
    ),
    ("--seed", "train", "seed", int, "seed of initialisation, batch order and augmentation"),
    ("--device", "train", "device", str, "auto, cpu, cuda, cuda:1, ..."),
    ("--threads", "train", "threads", int, "torch CPU threads (0: torch's default)"),
    ("--workers", "train", "num_workers", int, "data loader worker processes"),
    (
        "--scene-windows",
        "data",
        "scene_windows",
        float,
        "with the full MSFD (dataset.csv, img/): also train on windows of the full photos this "
        "many times a face's box around each crop (0: crops only)",
    ),
    (
        "--composites",
        "data",
        "composites",
        int,
        "also train on this many windows of the training masks composited onto the training "
        "photos without a mask of --composite-faces, framed looser than the crops (0: none)",
    ),
    (
        "--composite-faces",
        "data",
        "composite_faces",
        str,
        "the `maskseg data faces` folder whose photos without a mask take the composites",
    ),
    (
        "--composite-scale-min",
        "data",
        "composite_scale_min",
        float,
        "smallest composite window, times the scene path's window side (under 1: tighter, a "
        "mask cut at the window's edge)",
    ),
    (
        "--composite-scale-max",
        "data",
        "composite_scale_max",
        float,
        "largest composite window, times the scene path's window side",
    ),
    (
        "--composite-roomy-share",
        "data",
        "composite_roomy_share",
        float,
        "share of composites on photos with room around the face (the rest: any photo, whose "
        "window may run past its edges)",
    ),
    ("--pair-repeat", "data", "pair_repeat", int, "each training crop this many times per epoch"),
    (
        "--pseudo",
        "data",
        "pseudo",
        str,
        "also train on the teacher-labelled crops of this `maskseg data pseudo` folder "
        "(self-training)",
    ),
    (
        "--init",
        "train",
        "init",
        str,
        "fine-tune: start from these weights (.safetensors or .pt of the same architecture; "
        "a gate in them is dropped, refit it after)",
    ),
]
SECTIONS = {
    "data": DataConfig(),
    "model": ModelConfig(),
    "train": TrainConfig(),
    "infer": InferConfig(),
}
CHOICES = {
    "augment": ["none", "standard", "strong", "framing"],
    "pad_label": ["reflect", "ignore"],
    "precision": ["auto", "fp32", "bf16", "fp16"],
    "block": ["double", "separable", "residual"],
}
