"""``maskseg predict --engine ray``: the run's files on a Ray Data actor pool.

Ray Data holds the list of jobs (``ray.data.from_items``; one row per file: its index, path
and output name) and feeds them in small batches to an actor pool (``map_batches`` with a
callable class, ``ActorPoolStrategy``). Each actor holds one copy of the driver's engine,
sent once and rebuilt in the actor's ``__init__``, and runs the same per-file function as
the local engine (``maskseg.cli.predict.segment_file``): it reads the file by its path, so a
file that cannot be read is one failure in its outcome, not a failed job, and writes the
file's outputs itself with the same writers, so the names and bytes are the local engine's.
Only each file's small outcome (the mask's path or why it failed, verdicts, summary rows,
COCO entries) comes back to the driver. On a cluster, the inputs and the output folder must
therefore lie on a file system every node mounts at the same path, and every node needs
maskseg and ray installed.

onnxruntime sessions cannot be pickled, so ``ship`` pickles an engine with each session
replaced by what rebuilds it: the model's bytes (not its path, which differs between
machines), the session's settings and its providers. An actor's sessions then run the same
model with the same settings; only the intra-op threads are set to the actor's share of the
CPUs, so N actors on N cores do not each start N threads.

``ray`` is imported only here, and this module only by ``--engine ray``: ``import maskseg``
stays light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INSTALL_HINT = "--engine ray needs Ray Data: pip install 'maskseg[ray]'"

# The small local cluster started when no --address is given: the object store carries only
# the engine (a few MB of models) and the jobs' outcomes, so 256 MB is plenty.
LOCAL_OBJECT_STORE = 256 * 2**20
# files per call of an actor: a call costs Ray's scheduling a few milliseconds, a photo
# tens; 16 photos keep that small and still spread the work evenly over the actors
BATCH_SIZE = 16

# onnxruntime session settings copied onto the rebuilt session (intra-op threads apart)
_SESSION_FIELDS = (
    "graph_optimization_level",
    "inter_op_num_threads",
    "execution_mode",
    "execution_order",
    "log_severity_level",
    "enable_cpu_mem_arena",
    "enable_mem_pattern",
    "enable_mem_reuse",
    "use_deterministic_compute",
)
_SESSION_ENTRIES = (
    "session.intra_op.allow_spinning",
    "session.inter_op.allow_spinning",
    "session.x64quantprecision",  # backends.onnx.PRECISE_INT8 (not imported: no onnxruntime here)
)


def require_ray() -> None:
    """Fail early, before any model loads, with the install command when ray is missing."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None


# ------------------------------------------------------------------- shipping an engine


def _session_recipe(session: Any, threads: int | None) -> tuple[Any, ...]:
    """What rebuilds an onnxruntime session elsewhere: (model bytes, settings, providers)."""
    model = session._model_bytes  # set when the session was opened from bytes
    if model is None:
        model = Path(session._model_path).read_bytes()
    options = session.get_session_options()
    settings = {name: getattr(options, name) for name in _SESSION_FIELDS}
    settings["intra_op_num_threads"] = (
        threads if threads is not None else options.intra_op_num_threads
    )
    entries = {}
    for key in _SESSION_ENTRIES:
        try:
            entries[key] = options.get_session_config_entry(key)
        except RuntimeError:  # not set on this session: onnxruntime's default
            pass
    return model, settings, entries, session.get_providers(), session.get_provider_options()


def _reopen(
    model: bytes,
    settings: dict[str, Any],
    entries: dict[str, str],
    providers: list[str],
    provider_options: dict[str, dict[str, str]],
) -> Any:
    """An onnxruntime session rebuilt from ``_session_recipe``'s parts."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for name, value in settings.items():
        setattr(options, name, value)
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(
        model,
        options,
        providers=providers,
        provider_options=[provider_options.get(p, {}) for p in providers],
    )


class _Shipper(pickle.Pickler):
    """A pickler that sends each onnxruntime session as its recipe (see the module's text)."""

    def __init__(self, file: Any, threads: int | None):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.threads = threads
        import onnxruntime as ort

        self.session_type = ort.InferenceSession

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self.session_type):
            return _reopen, _session_recipe(obj, self.threads)
        return NotImplemented


def ship(obj: Any, threads: int | None = None) -> bytes:
    """``obj`` (an engine, a predictor, ...) pickled so that ``pickle.loads`` rebuilds it in
    another process, its onnxruntime sessions reopened there with ``threads`` intra-op
    threads (None: as on this side)."""
    import io

    buf = io.BytesIO()
    _Shipper(buf, threads).dump(obj)
    return buf.getvalue()


# ---------------------------------------------------------------------- the actor pool


class _Actor:
    """One engine per actor, rebuilt once in ``__init__``; each call runs ``work`` on a batch
    of pickled jobs and returns their pickled outcomes."""

    def __init__(self, shipped: bytes, work: Callable[[Any, Any], Any]):
        self.state = pickle.loads(shipped)  # the models load here, once per actor
        self.work = work

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [pickle.dumps(self.work(self.state, pickle.loads(job))) for job in batch["job"]]
        return {"outcome": np.array(outcomes, dtype=object)}


@contextlib.contextmanager
def keep_signal_handlers() -> Iterator[None]:
    """Keep the run's own handlers of SIGINT and SIGTERM over ``ray.init``, which installs
    its own (on SIGTERM Ray's exits 15, or prints a crash report and aborts), so ``predict``
    stops after the files in hand and writes its reports (``maskseg.console.stop_on_signals``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in before.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(number, handler)  # also puts its C handler back over Ray's


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an ``--address`` of the form ``[ray://]HOST:PORT`` where nothing answers, at
    once: Ray itself retries such an address for minutes without a word to the user."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray checks itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ValueError(
            f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})"
        ) from None


class RayRunner:
    """Runs ``work(state, job)`` for every job on a Ray actor pool; yields the outcomes as
    they finish (in any order). Once ``stop`` (an event) is set, it ends after the batch in
    hand: the outcomes received are all yielded, and the batches other actors still work
    on are stopped with Ray (files they finished meanwhile are written but not reported).

    Args:
        address: an existing cluster (``auto``, ``ray://head:10001``, ...); None starts a
            local Ray on this machine with its CPUs (``LOCAL_OBJECT_STORE``, no dashboard,
            no usage statistics), stopped again at the end.
        actors: size of the actor pool; None: one per CPU of the cluster, at most one per
            job.
        batch_size: jobs per actor call.
        threads: onnxruntime intra-op threads per actor; None: the cluster's CPUs shared out
            over the actors (at least one).
    """

    def __init__(
        self,
        address: str | None = None,
        actors: int | None = None,
        batch_size: int = BATCH_SIZE,
        threads: int | None = None,
    ):
        if actors is not None and actors < 1:
            raise ValueError(f"--actors must be at least 1, got {actors}")
        self.address = address
        self.actors = actors
        self.batch_size = batch_size
        self.threads = threads

    def __call__(
        self,
        state: Any,
        work: Callable[[Any, Any], Any],
        jobs: Sequence[Any],
        stop: Any = None,
    ) -> Iterator[Any]:
        if not jobs:
            return
        require_ray()
        import ray

        started = self._connect()
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            actors = min(self.actors or cpus, len(jobs))
            if actors > cpus:
                log.warning(
                    "--actors %d on a cluster of %d CPU(s): each actor loads its own models, "
                    "so actors beyond the CPUs add memory, not speed",
                    actors,
                    cpus,
                )
            # each actor reserves a whole CPU when there are enough; its onnxruntime
            # sessions run as many threads as it has CPUs (at least one)
            per_actor = min(1.0, cpus / actors)
            threads = self.threads or max(1, cpus // actors)
            log.info("ray: %d actor(s) on %d CPU(s), %d thread(s) each", actors, cpus, threads)
            ds = ray.data.from_items([{"job": pickle.dumps(job)} for job in jobs])
            ds = ds.map_batches(
                _Actor,
                # Ray Data stores the class and these arguments once, for every actor
                fn_constructor_args=(ship(state, threads), work),
                batch_size=self.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=per_actor,
            )
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield from (pickle.loads(outcome) for outcome in batch["outcome"])
                if stop is not None and stop.is_set():  # every outcome received is yielded;
                    break  # batches still at work are stopped with Ray below
        finally:
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Connect to ``address`` or start a local Ray; True when this call started it."""
        import ray
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # predict shows its own bar
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        if ray.is_initialized():
            return False
        if self.address is not None:
            check_reachable(self.address)
            try:
                with keep_signal_handlers():
                    ray.init(address=self.address, logging_level=logging.WARNING)
            except ConnectionError as exc:  # "auto" with no cluster started on this machine
                raise ValueError(
                    f"--address {self.address}: no Ray cluster found ({exc}); start one with "
                    "`ray start --head`, or leave --address out for a Ray of the run's own"
                ) from None
            return True
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no call home, offline start
        with keep_signal_handlers():
            self._start_local()
        return True

    def _start_local(self) -> None:
        import ray

        ray.init(
            # "local": a new Ray of the run's own, even where RAY_ADDRESS is set or a cluster
            # was started on this machine with `ray start` (ray.init would join those)
            address="local",
            num_cpus=os.cpu_count() or 1,
            object_store_memory=LOCAL_OBJECT_STORE,
            include_dashboard=False,
            # its start-up notes (token authentication on, ...) are not the user's concern
            logging_level=logging.ERROR,
        )
