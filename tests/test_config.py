from pathlib import Path

import pytest

from maskseg.config import (
    Config,
    DataConfig,
    InferConfig,
    TrainConfig,
    load_config,
    resume_config,
    save_config,
)


def test_yaml_round_trip(tmp_path: Path):
    cfg = Config(
        data=DataConfig(root="x", seed=3),
        train=TrainConfig(epochs=7, lr=3e-4),
        infer=InferConfig(threshold=0.4, clean=False),
    )
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    (tmp_path / "partial.yaml").write_text("train:\n  epochs: 9\n")
    partial = load_config(tmp_path / "partial.yaml")
    assert partial.train.epochs == 9 and partial.train.lr == TrainConfig().lr
    assert partial.infer == InferConfig()  # files written before the infer section still load


def test_unknown_keys_are_named(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("train:\n  epoch: 9\n")
    with pytest.raises(ValueError, match=r"unknown train option\(s\) \['epoch'\]"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="unknown config section"):
        Config.from_dict({"trian": {}})


def test_resume_config_applies_allowed_and_refuses_the_rest():
    saved = Config(train=TrainConfig(epochs=10, threads=2))
    same = resume_config(saved, {"train": {"epochs": 10, "threads": 1, "progress": False}})
    assert same.train.threads == 1 and not same.train.progress and same.train.epochs == 10
    with pytest.raises(ValueError) as err:
        resume_config(saved, {"train": {"epochs": 20}, "data": {"seed": 4, "root": "y"}})
    assert "train.epochs (run: 10, given: 20)" in str(err.value)
    refused = str(err.value).split("these differ:")[1].split(". Only")[0]
    assert "data.seed" in refused and "data.root" not in refused


def test_split_key_changes_with_split_settings_only():
    assert DataConfig(root="a").split_key() == DataConfig(root="b", image_size=99).split_key()
    assert DataConfig(seed=1).split_key() != DataConfig().split_key()
