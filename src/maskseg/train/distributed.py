"""Training on several processes: ``torchrun`` + DistributedDataParallel, the way nnU-Net,
MONAI and Lightning do it.

``torchrun`` starts one process per device and tells each its place through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``); ``session`` joins the process group from them (NCCL on CUDA, gloo on the
CPU) and every helper here is a no-op in a plain single process, so the training code has one
path. Conventions: every rank computes, rank 0 alone writes (and reads what others need from
the run folder, then broadcasts it, so the run folder need not be shared between machines);
each node's local rank 0 builds the data cache while the others wait; weights are saved from
the unwrapped module, so files carry no ``module.`` prefix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from maskseg.pipeline.backends.runtime import resolve_device

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    """Where this process stands: its rank among all processes and among its node's."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1


def env_place() -> Place:
    """The place ``torchrun`` gave this process (a single process when it gave none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Place(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
    )


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def place() -> Place:
    if not active():
        return Place()
    p = env_place()
    return Place(dist.get_rank(), dist.get_world_size(), p.local_rank, p.local_world)


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes run files and logs progress."""
    return rank() == 0


_device: torch.device | None = None


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[torch.device]:
    """Join the process group ``torchrun`` set up (if any) for the duration of a run.

    Yields this process's device: ``cuda:LOCAL_RANK`` when CUDA is there and ``device`` is not
    ``cpu``, else the CPU (``device`` as given in a single process). A group someone else
    initialised (a test spawning ranks) is used and left open.
    """
    global _device
    p = env_place()
    own = p.world > 1 and not (dist.is_available() and dist.is_initialized())
    chosen = resolve_device(device)
    if chosen.type == "cuda" and (p.world > 1 or active()):
        chosen = torch.device("cuda", p.local_rank)
        torch.cuda.set_device(chosen)
    if own:
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": chosen} if backend == "nccl" else {}
        dist.init_process_group(backend, **kwargs)
        log.debug("rank %d of %d joined (%s, %s)", dist.get_rank(), p.world, backend, chosen)
    quiet = logging.getLogger("maskseg")
    level = quiet.level
    if not is_main():
        quiet.setLevel(logging.WARNING)  # one log for the run: rank 0's
    _device, before = chosen, _device
    try:
        yield chosen
        if own and dist.is_initialized():
            # leave together: a rank tearing gloo down while another still talks to it
            # (rank 0 scoring and writing the run) can abort the other's process
            dist.barrier()
    finally:
        _device = before
        quiet.setLevel(level)
        if own and dist.is_initialized():
            dist.destroy_process_group()


def device_for(name: str) -> torch.device:
    """The training device: the session's inside a process group, else ``name`` resolved."""
    if active() and _device is not None:
        return _device
    return resolve_device(name)


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _nccl() else torch.device("cpu")


def _nccl() -> bool:
    return active() and dist.get_backend() == "nccl"


# --------------------------------------------------------------------------- collectives


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled; for configs, splits and state dicts)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device() if _nccl() else None)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its error, to every rank: one
    process reads and writes the run folder, and a refusal there stops all of them instead of
    leaving the others waiting at the next collective."""
    result: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            result = (True, fn())
        except Exception as exc:  # re-raised on every rank below
            result = (False, exc)
    ok, value = broadcast(result)
    if not ok:
        if not is_main():
            # rank 0's own error, raised here too so every rank stops; rank 0 reports it, and
            # the command line leaves this copy unsaid (one message, not one per process)
            value.relayed_from_rank = 0
        raise value
    return value


def local_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on each node's local rank 0 first, then on the node's other ranks (which
    then find what it built, e.g. the data cache); a failure anywhere stops every rank."""
    if not active():
        return fn()
    first = place().local_rank == 0
    value: Any = None
    error: BaseException | None = None
    if first:
        try:
            value = fn()
        except Exception as exc:
            error = exc
    if all_reduce_sum(np.array([error is not None], np.int64))[0]:
        if error is not None:
            raise error
        raise RuntimeError("another process failed preparing the data; see its error")
    return value if first else fn()


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of ``array`` over all ranks (the array itself in one process)."""
    if not active():
        return array
    t = torch.as_tensor(np.ascontiguousarray(array)).to(_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def mean_over_ranks(value: float) -> float:
    return float(all_reduce_sum(np.array([value], np.float64))[0]) / world()


def shard(order: Sequence[int], of: tuple[int, int] | None = None) -> list[int]:
    """A rank's share of an epoch's order: every ``world``-th index from ``rank`` on, cut
    to the same length on every rank (``DistributedSampler(drop_last=True)``'s rule): the
    shares are disjoint, fixed by the order, and with a batch of ``b / world`` per rank the
    ranks' k-th batches together are the single process's k-th batch of ``b``.

    ``of``: (rank, world), this process's by default.
    """
    r, w = of if of is not None else (rank(), world())
    return list(order[r::w][: len(order) // w])


# --------------------------------------------------------------------------- the model


def check_sync_bn(sync_bn: bool, device: torch.device) -> None:
    """Refuse ``sync_bn`` off CUDA: PyTorch's SyncBatchNorm has no CPU kernels."""
    if sync_bn and device.type != "cuda":
        raise ValueError(
            "--sync-bn needs CUDA: PyTorch's SyncBatchNorm has no CPU kernels; on CPU "
            "each process normalises with its own batch's statistics"
        )


def wrap(model: torch.nn.Module, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """``model`` for the training step: DistributedDataParallel in a process group (with
    BatchNorm layers turned into SyncBatchNorm if ``sync_bn``), else the model itself.

    Returns the module to call; ``model`` (its parameters shared) stays the one to save.
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    check_sync_bn(sync_bn, device)
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (saved without ``module.``)."""
    return getattr(module, "module", module)


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics on every rank. DDP broadcasts them before each forward,
    so after an epoch's last step each rank holds its own; validation and the saved weights
    must see one set."""
    if active():
        for b in model.buffers():
            dist.broadcast(b.data, src=0)


def check_in_sync(model: torch.nn.Module) -> None:
    """Raise if the ranks' weights differ (DDP keeps them bit-identical; a difference means
    a rank took another step, e.g. an uneven share of batches)."""
    if not active():
        return
    with torch.no_grad():
        total = sum(float(t.double().sum()) for t in model.state_dict().values())
    sums = all_reduce_sum(np.eye(world())[rank()] * total)
    if not np.all(sums == sums[0]):
        raise RuntimeError(f"ranks' weights diverged (checksums {sums.tolist()})")
