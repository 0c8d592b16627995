"""Memory of a process tree while a benchmark runs it (Linux /proc): peak PSS summed over the
tree, peak RSS of its largest process, most processes at once. Shared by the benchmarks that
start other processes (``bench_ray.py``, ``bench_train_scaling.py``)."""

from __future__ import annotations

import os
import threading


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out + [g for c in out for g in _children(c)]


def _field_kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch:
    """Peak PSS summed over a process tree, the peak RSS of its largest process (MB) and the
    most processes seen at once, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.pid, self.pss, self.rss, self.processes = pid, 0.0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            pids = [self.pid, *_children(self.pid)]
            pss = sum(_field_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            rss = max(_field_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            self.pss, self.rss = max(self.pss, pss / 1024), max(self.rss, rss / 1024)
            self.processes = max(self.processes, len(pids))

    def stop(self) -> MemoryWatch:
        self._stop.set()
        self._thread.join()
        return self
