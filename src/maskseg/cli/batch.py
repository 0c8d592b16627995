"""``predict``'s options for many photos: ``--engine local|ray``, ``--address``, ``--actors``
(a Ray actor pool, ``maskseg.engines.ray``) and ``--shard K/N`` (one job of a job array,
``maskseg.engines.shard``). Light: Ray is imported only when ``--engine ray`` runs."""

from __future__ import annotations

import argparse
from typing import Any

from maskseg.engines.shard import Shard, parse_shard


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_batch_args(p: argparse.ArgumentParser) -> None:
    """The engine and shard options of ``maskseg predict``."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where the files are segmented: local (this process, one after another) or ray "
        "(a Ray Data actor pool, one model per actor; pip install 'maskseg[ray]'); both write "
        "the same files",
    )
    p.add_argument(
        "--address",
        help="with --engine ray: the Ray cluster to join (auto, ray://HEAD:10001, ...); the "
        "inputs and --output must lie where every node reads and writes them at the same "
        "path (default: a Ray on this machine, started and stopped by the run)",
    )
    p.add_argument(
        "--actors",
        type=int,
        help="with --engine ray: size of the actor pool (default: one per CPU of the cluster)",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="segment only the K-th of N shares of the files (K from 1 to N), as one job of "
        "a job array: the run's files in their listed order, every N-th from the K-th; "
        "output names are the whole run's, so N jobs into one --output write every file once",
    )


def check_batch_options(a: argparse.Namespace) -> None:
    """Options that need ``--engine ray`` fail without it, and a missing Ray fails with the
    install command, before any model loads."""
    if a.engine != "ray":
        for option, given in (("--address", a.address), ("--actors", a.actors)):
            if given is not None:
                raise ValueError(f"{option} is for --engine ray: add --engine ray or drop it")
        return
    if a.actors is not None and a.actors < 1:
        raise ValueError(f"--actors must be at least 1, got {a.actors}")
    from maskseg.engines.ray import require_ray

    require_ray()


def batch_runner(a: argparse.Namespace) -> Any:
    """The runner ``predict_paths`` hands its files to: None (here) or a ``RayRunner``."""
    if a.engine != "ray":
        return None
    from maskseg.engines.ray import RayRunner

    return RayRunner(address=a.address, actors=a.actors)
