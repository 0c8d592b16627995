from pathlib import Path

import pytest

from maskseg.config import (
    Config,
    DataConfig,
    InferConfig,
    ModelConfig,
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
    # a budget in steps is the schedule's length too: not changed on resume
    with pytest.raises(ValueError, match=r"train.steps \(run: None, given: 500\)"):
        resume_config(saved, {"train": {"steps": 500}})


def test_split_key_changes_with_split_settings_only():
    assert DataConfig(root="a").split_key() == DataConfig(root="b", image_size=99).split_key()
    assert DataConfig(seed=1).split_key() != DataConfig().split_key()


# The model section as every run folder and shipped model file before issue 14 stores it.
FLAT_MODEL = {
    "name": "unet",
    "base_channels": 16,
    "depth": 4,
    "in_channels": 3,
    "members": 1,
    "flip_tta": False,
    "presence": True,
    "presence_hidden": 256,
    "block": "double",
}


def test_old_flat_model_section_reads_into_params(tmp_path: Path):
    cfg = Config.from_dict({"model": FLAT_MODEL})
    assert cfg.model.name == "unet" and cfg.model.presence and cfg.model.presence_hidden == 256
    assert cfg.model.params == {"base_channels": 16, "depth": 4, "block": "double"}
    assert cfg.to_dict()["model"] == {
        "name": "unet",
        "params": {"base_channels": 16, "depth": 4, "block": "double"},
        "in_channels": 3,
        "members": 1,
        "flip_tta": False,
        "presence": True,
        "presence_hidden": 256,
        "presence_features": "pooled",  # files from before the masked gate read as pooled
    }
    assert Config.from_dict(cfg.to_dict()) == cfg  # the new form reads back alike
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    # an old partial --config file: missing flat options took the U-Net's defaults
    (tmp_path / "old.yaml").write_text("model:\n  depth: 3\n  block: separable\n")
    old = load_config(tmp_path / "old.yaml").model
    assert old.params == {"base_channels": 16, "depth": 3, "block": "separable"}


def test_flat_and_params_forms_are_one_config():
    flat = ModelConfig(base_channels=4, depth=2)
    assert flat == ModelConfig(params={"base_channels": 4, "depth": 2})
    assert hash(flat) == hash(ModelConfig(params={"depth": 2, "base_channels": 4}))
    assert ModelConfig() == ModelConfig(params={"depth": 4})  # defaults written out or not
    assert (flat.base_channels, flat.depth, flat.block) == (4, 2, "double")  # old reads
    assert ModelConfig(params={"depth": 3}, depth=5).depth == 5  # flat wins: replace()
    cfg = Config(model=flat)
    assert cfg.replace("model", depth=3).model.params["depth"] == 3
    assert cfg.replace("model", presence=True).model.params == flat.params
    bad = r"unknown model option\(s\) \['dpeth'\]; valid: .*'depth'"
    with pytest.raises(ValueError, match=bad):
        Config.from_dict({"model": {"dpeth": 3}})
    # flat options exist only for the U-Net, the one architecture of the flat format
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['depth'\]"):
        ModelConfig(name="resunet", depth=3)
    assert ModelConfig(name="resunet", params={"width": 8}).params == {"width": 8}
    with pytest.raises(AttributeError, match="no option 'width'"):
        _ = flat.width
    with pytest.raises(ValueError, match="mapping"):
        ModelConfig(params=[1, 2])


def test_cli_style_overrides_build_the_model():
    """The CLI's --base-channels/--depth/--block arrive as flat model options."""
    cfg = Config().merge({"model": {"base_channels": 8, "depth": None, "block": "separable"}})
    assert cfg.model.params == {"base_channels": 8, "depth": 4, "block": "separable"}
    assert (cfg.model.base_channels, ModelConfig().base_channels) == (8, 16)  # --help defaults
    other = cfg.merge({"model": {"name": "resunet", "params": {"width": 8}}})
    assert other.model.params == {"width": 8}  # another architecture starts from its own
    assert cfg.merge({"model": {"name": "resunet"}}).model.params == {}


def test_resume_compares_architecture_params_one_by_one():
    saved = Config(model=ModelConfig(params={"base_channels": 8, "depth": 3}))
    same = {"model": {"base_channels": 8, "depth": None, "params": {"block": "double"}}}
    assert resume_config(saved, same) == saved
    with pytest.raises(ValueError) as err:
        resume_config(saved, {"model": {"depth": 4, "params": {"block": "separable"}}})
    text = str(err.value)
    assert "model.depth (run: 3, given: 4)" in text
    assert "model.params.block (run: 'double', given: 'separable')" in text
    with pytest.raises(ValueError, match="model.presence"):
        resume_config(saved, {"model": {"presence": True}})


def test_shipped_model_files_read_as_the_networks_they_are():
    from maskseg.pipeline.modelfile import read_model_info
    from maskseg.pipeline.predictor import shipped_files

    files = {n: list(backends.values()) for n, backends in shipped_files().items()}
    assert {"unet-msfd", "unet-msfd-heldout", "unet-msfd-fast", "unet-msfd-fast-heldout"} <= set(
        files
    )
    for name, paths in files.items():
        for path in paths:
            model = read_model_info(path)[0].model
            arch = "lrunet" if name.startswith("unet-msfd-fast") else "unet"
            assert model.name == arch and model.presence, path
            assert model.params == {"base_channels": 16, "depth": 4, "block": "double"}, path


def test_a_run_saves_every_architecture_param(msfd_tiny: Path, tmp_path: Path, monkeypatch):
    """A run's config.yaml writes out the defaults of params it was not given, so --resume
    compares what the run used with what is given (also for architectures without flat
    defaults: here the U-Net under another name)."""
    from maskseg.models import register_model
    from maskseg.models import registry as model_registry
    from maskseg.train.workflows import CONFIG_YAML, _prepare_run

    monkeypatch.setattr(model_registry, "_REGISTRY", dict(model_registry._REGISTRY))
    register_model("unet-twin", "maskseg.models.unet:UNet")
    model = ModelConfig(name="unet-twin", params={"depth": 2})
    assert model.params == {"depth": 2}
    cfg = Config(data=DataConfig(root=str(msfd_tiny), image_size=32), model=model)
    _prepare_run(cfg, tmp_path, resume=False)
    saved = load_config(tmp_path / CONFIG_YAML).model
    assert saved.params == {"base_channels": 16, "depth": 2, "block": "double"}
    given = {"model": {"params": {"base_channels": 16}}}
    resumed = _prepare_run(cfg, tmp_path, resume=True, overrides=given).cfg
    assert resumed.model == saved
    with pytest.raises(ValueError, match=r"model.params.base_channels \(run: 16, given: 8\)"):
        _prepare_run(
            cfg, tmp_path, resume=True, overrides={"model": {"params": {"base_channels": 8}}}
        )


def test_merge_puts_architecture_options_into_params():
    """`--arch lrunet --base-channels 16`: the flat option becomes the new architecture's
    param (its others stay its defaults); on the U-Net flat options keep its other params."""
    c = Config().merge({"model": {"name": "lrunet", "base_channels": 16}})
    assert c.model.name == "lrunet" and c.model.params == {"base_channels": 16}
    c = Config().merge({"model": {"depth": 3}}).merge({"model": {"base_channels": 8}})
    assert c.model.params == {"base_channels": 8, "depth": 3, "block": "double"}
