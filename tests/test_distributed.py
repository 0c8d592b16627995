"""Training on several processes (torchrun + DDP, gloo on the CPU): shares of an epoch, the
helpers' single-process behaviour, and real two-process runs through ``torchrun`` and
``torch.multiprocessing``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from maskseg.train import distributed as D
from maskseg.train.engine import batch_size, epoch_order

ARGS = [
    "--epochs",
    "2",
    "--image-size",
    "32",
    "--base-channels",
    "4",
    "--depth",
    "2",
    "--batch-size",
    "4",
    "--scene-windows",
    "1.5",
    "--checkpoint-interval",
    "0",
    "--threads",
    "1",
    "--no-progress",
]


@pytest.mark.parametrize("world", [2, 3])
def test_shares_are_disjoint_equal_and_make_up_the_single_process_batches(world: int):
    n, per_rank = 103, 4
    order = epoch_order(n, seed=5, epoch=2)
    shares = [D.shard(order, (r, world)) for r in range(world)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == n // world
    flat = [i for s in shares for i in s]
    assert len(set(flat)) == len(flat) and set(flat) <= set(range(n))
    bs = per_rank * world
    for k in range(n // bs):  # step k of every rank together = step k of one process
        together = sorted(i for s in shares for i in s[k * per_rank : (k + 1) * per_rank])
        assert together == sorted(order[k * bs : (k + 1) * bs])
    assert shares == [D.shard(epoch_order(n, 5, 2), (r, world)) for r in range(world)]
    assert shares != [D.shard(epoch_order(n, 5, 3), (r, world)) for r in range(world)]


def test_the_batch_must_split_evenly_over_the_processes():
    assert batch_size(16, 1000, 2) == 16 and batch_size(16, 6, 2) == 6
    with pytest.raises(ValueError, match="multiple of 3"):
        batch_size(16, 1000, 3)


def test_in_one_process_every_helper_is_a_no_op():
    assert not D.active() and D.world() == 1 and D.rank() == 0 and D.is_main()
    a = np.arange(4)
    assert D.all_reduce_sum(a) is a and D.broadcast("x") == "x"
    assert D.on_main(lambda: 7) == 7 and D.local_first(lambda: 8) == 8
    assert D.mean_over_ranks(2.5) == 2.5
    net = torch.nn.Conv2d(1, 1, 1)
    assert D.wrap(net, torch.device("cpu"), sync_bn=True) is net and D.unwrap(net) is net
    with D.session("cpu") as device:
        assert device == torch.device("cpu") and not D.active()


def test_unstartable_settings_are_refused_before_the_run_folder(monkeypatch):
    """Checked before anything is written (``check_startable``), so a refused run leaves no
    folder that only --resume with the same values would open."""
    from maskseg.config import Config, TrainConfig
    from maskseg.train.workflows import check_startable

    monkeypatch.setattr(D, "world", lambda: 2)
    check_startable(Config(train=TrainConfig(batch_size=8, device="cpu")))
    with pytest.raises(ValueError, match="a batch of 7 images does not split evenly over 2"):
        check_startable(Config(train=TrainConfig(batch_size=7, device="cpu")))
    with pytest.raises(ValueError, match="needs CUDA"):
        check_startable(Config(train=TrainConfig(batch_size=8, device="cpu", sync_bn=True)))
    monkeypatch.setattr(D, "world", lambda: 1)  # one process: it would do nothing, refused too
    with pytest.raises(ValueError, match="needs CUDA"):
        check_startable(Config(train=TrainConfig(batch_size=8, device="cpu", sync_bn=True)))
    check_startable(Config(train=TrainConfig(batch_size=7, device="cpu")))


def test_sync_bn_is_refused_on_the_cpu(monkeypatch):
    monkeypatch.setattr(D, "active", lambda: True)
    with pytest.raises(ValueError, match="needs CUDA"):
        D.wrap(torch.nn.BatchNorm2d(2), torch.device("cpu"), sync_bn=True)


# --------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Killed(Exception):
    pass


def _rank(rank: int, ports: tuple[int, int], argv: list[str], dumps: str, kill_at: tuple) -> None:
    """One rank of a two-process run, set up as torchrun sets up its workers: trains until
    ``kill_at`` (epoch, step), as if killed there, then resumes (as a restarted job would:
    meeting again on a fresh port, not on the store the killed group left behind). It keeps
    its weights after every epoch in ``dumps`` so the test can compare the ranks'."""
    from functools import partial

    from maskseg.cli.main import main
    from maskseg.train import engine, workflows

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(ports[0]),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    torch.set_num_threads(1)  # as torchrun's OMP_NUM_THREADS=1
    epoch_of = engine.Trainer.train_epoch

    def train_epoch(self, *args, **kwargs):
        loss = epoch_of(self, *args, **kwargs)
        torch.save(self.model.state_dict(), Path(dumps) / f"rank{rank}_epoch{self.epoch}.pt")
        return loss

    def kill(epoch: int, step: int) -> None:
        if (epoch, step) == kill_at:
            raise Killed

    engine.Trainer.train_epoch = train_epoch
    workflows.fit = partial(engine.fit, on_step=kill)
    try:
        main(argv)
    except Killed:
        pass
    else:
        raise AssertionError("not killed")
    workflows.fit = engine.fit
    os.environ["MASTER_PORT"] = str(ports[1])
    assert main([*argv, "--resume"]) == 0


@pytest.mark.slow
def test_two_gloo_processes_train_one_model_resume_and_predict(msfd_full: Path, tmp_path: Path):
    from maskseg.pipeline.predictor import Predictor
    from maskseg.pipeline.weights import load_checkpoint, load_weights

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "maskseg", "train", "--data", str(msfd_full), "--output", str(run), *ARGS]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best epoch") == 1  # rank 0 alone reports
    # one writer: one checkpoint, one set of run files, no temporaries
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted(
        [
            "best.safetensors",
            "cache",
            "checkpoint.pt",
            "config.yaml",
            "curves.png",
            "metrics.csv",
            "splits.json",
            "summary.json",
        ]
    )
    assert len(list((run / "cache").iterdir())) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    assert summary["n_scene_windows"] == summary["n_train"] > 0
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
    # the weights carry no DDP prefix and predict
    state, cfg, _ = load_weights(run / "best.safetensors")
    assert not [k for k in state if k.startswith("module.")]
    image = np.random.default_rng(0).integers(0, 256, (70, 50, 3), dtype=np.uint8)
    mask = Predictor.load(run / "best.safetensors").predict(image)
    assert mask.shape == (70, 50) and mask.dtype == bool

    # the same run killed mid-epoch under torch.multiprocessing, then resumed: the ranks hold
    # the same weights after every epoch and end where the uninterrupted run ended
    import torch.multiprocessing as mp

    cut, dumps = tmp_path / "cut", tmp_path / "dumps"
    dumps.mkdir()
    argv = ["train", "--data", str(msfd_full), "--output", str(cut), *ARGS]
    ports = (_free_port(), _free_port())
    ranks = mp.spawn(_rank, args=(ports, argv, str(dumps), (1, 2)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not ranks.join(timeout=5):  # raises what a rank raised
        if time.monotonic() > deadline:
            for proc in ranks.processes:
                proc.kill()
            pytest.fail("the two-process run did not finish in 300 s")
    for epoch in (0, 1):
        a = torch.load(dumps / f"rank0_epoch{epoch}.pt")
        b = torch.load(dumps / f"rank1_epoch{epoch}.pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), epoch
    resumed = load_checkpoint(cut / "checkpoint.pt")
    assert resumed["history"][1]["epoch"] == 2
    for k, v in ckpt["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=1e-5, atol=1e-6)

    # one process may not resume a two-process run (its shares and steps differ)
    from maskseg.train.workflows import train_run

    with pytest.raises(ValueError, match="2 process"):
        train_run(cfg, run, val_fold=0, resume=True)


def _rank_of_a_mixed_start(rank: int, port: int, argvs: list[list[str]], out: str) -> None:
    """One rank of two started with different flags; writes its exit code and stderr."""
    import contextlib
    import io

    from maskseg.cli.main import main

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argvs[rank])
    Path(out, f"rank{rank}.txt").write_text(f"{code}\n{err.getvalue()}")


def test_nodes_started_with_other_flags_than_rank_0_are_refused(msfd_full: Path, tmp_path: Path):
    """Each node's torchrun passes its own flags; rank 0's config used to win without a word
    (a node given --image-size 48 trained at 32). Every rank now stops, naming the option."""
    import torch.multiprocessing as mp

    base = ["train", "--data", str(msfd_full), "--output", str(tmp_path / "run"), *ARGS]
    argvs = [[*base, "--image-size", "32"], [*base, "--image-size", "48", "--threads", "2"]]
    mp.spawn(_rank_of_a_mixed_start, args=(_free_port(), argvs, str(tmp_path)), nprocs=2, join=True)
    codes, errs = zip(
        *((int(t.split("\n", 1)[0]), t) for t in (tmp_path / f"rank{r}.txt" for r in (0, 1))
          for t in [t.read_text()]),
        strict=True,
    )  # fmt: skip
    assert codes == (2, 2), errs
    assert "the processes were started with different options" in errs[0]
    assert "data.image_size (given: 48, the run's: 32)" in errs[1]  # threads may differ
    assert "threads" not in errs[1]


def test_an_error_of_rank_0_is_printed_once(msfd_full: Path, tmp_path: Path):
    """A refusal rank 0 makes for the run (here: the run folder already holds a run) stops
    every rank with exit code 2, but only rank 0 prints it: torchrun used to show the same
    message once per process."""
    import torch.multiprocessing as mp

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {}\n")
    argv = ["train", "--data", str(msfd_full), "--output", str(run), *ARGS]
    mp.spawn(_rank_of_a_mixed_start, args=(_free_port(), [argv, argv], str(tmp_path)), nprocs=2)
    texts = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert [t.split("\n", 1)[0] for t in texts] == ["2", "2"], texts
    assert "already holds a run" in texts[0]
    assert texts[1].split("\n", 1)[1].strip() == "", texts[1]


def test_differing_options_by_hand():
    from maskseg.config import Config, DataConfig, TrainConfig, differing_options

    cfg = Config(data=DataConfig(image_size=32), train=TrainConfig(threads=1))
    assert differing_options(cfg, {"data": {"image_size": 32}}) == []
    assert differing_options(cfg, {"train": {"threads": 2, "device": "cpu"}}) == []  # its own
    assert differing_options(cfg, {"data": {"image_size": 48, "seed": None}}) == [
        "data.image_size (given: 48, the run's: 32)"
    ]
