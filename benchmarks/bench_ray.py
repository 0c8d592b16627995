"""``maskseg predict --engine ray`` against the local engine on one machine: images/s, the
ratio of the two measured in the same round, start-up cost, peak memory, identical outputs.

    python benchmarks/bench_ray.py [--photos 2000] [--small 200] [--runs 3] [--args "--json"]

Photos: the first ``--photos`` of ``../shared/data/faces`` (``with_mask`` and
``without_mask`` taken in turn, each sorted; linked into a temporary folder), or as many as
there are. Each round runs both engines on them as the user would (``maskseg predict DIR
--output OUT --no-progress ARGS --engine E``, a fresh process each), in alternating order, and
the ratio of that round's images/s; the median ratio is over the rounds. With ``--small N``
each round also runs both engines on the first N photos: the two sizes give each engine's
fixed cost (start-up: imports, models, for Ray the local cluster and its actor pool, and
shutdown) and its rate once running, ``(n_big - n_small) / (t_big - t_small)``. Memory: the
peak of the PSS summed over the run's processes (the driver, and for Ray its GCS, raylet,
agents and workers; shared pages apportioned) and the peak RSS of its largest process,
sampled every 0.2 s. The first round's outputs of the two engines are compared byte for byte.

The CPU is named and the load average printed around every run: on a shared machine other
work changes absolute figures; the ratio within a round is what to compare. Needs ray
(``pip install 'maskseg[ray]'``) and ``../shared/data/faces``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maskseg.console import cpu_description
from maskseg.files import is_image_name

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "data" / "faces"


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def photo_folder(folder: Path, count: int) -> int:
    """Link the first ``count`` photos of FACES (with and without masks in turn) into
    ``folder``; the number linked."""
    kinds = [
        sorted(p for p in (FACES / k).iterdir() if is_image_name(p))
        for k in ("with_mask", "without_mask")
    ]
    picked = [p for pair in zip(*kinds, strict=False) for p in pair]
    longest = max(kinds, key=len)
    picked += longest[len(picked) // 2 :]
    folder.mkdir(parents=True)
    for k, path in enumerate(picked[:count]):
        (folder / f"{k:05d}_{path.parent.name}{path.suffix.lower()}").symlink_to(path)
    return min(count, len(picked))


sys.path.insert(0, str(Path(__file__).resolve().parent))
from memwatch import MemoryWatch  # noqa: E402

# --------------------------------------------------------------------------- runs


def run(engine: str, photos: Path, out: Path, args: list[str]) -> dict:
    """One ``maskseg predict`` in a fresh process: wall time, memory, load before it."""
    shutil.rmtree(out, ignore_errors=True)
    exe = shutil.which("maskseg") or f"{sys.executable} -m maskseg"
    cmd = [*exe.split(), "predict", str(photos), "--output", str(out), "--no-progress"]
    cmd += [*args, "--engine", engine]
    before = load()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = MemoryWatch(proc.pid)
    log, _ = proc.communicate()
    seconds = time.perf_counter() - start
    watch.stop()
    if proc.returncode not in (0, 1):  # 1: some photo could not be read, reported
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-3000:]}")
    written = sum(1 for _ in out.rglob("*.png"))
    return {
        "engine": engine,
        "seconds": seconds,
        "written": written,
        "pss": watch.pss,
        "rss": watch.rss,
        "processes": watch.processes,
        "load": before,
    }


def same_outputs(a: Path, b: Path) -> tuple[int, list[str]]:
    """(files compared, names that differ or are missing on one side)."""
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = [str(n) for n in sorted(names_a ^ names_b)]
    bad += [
        str(n) for n in sorted(names_a & names_b) if not filecmp.cmp(a / n, b / n, shallow=False)
    ]
    return len(names_a | names_b), bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--small", type=int, default=200, help="0: no start-up estimate")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--args", default="--json", help="options for maskseg predict")
    a = ap.parse_args()
    if not FACES.is_dir():
        sys.exit(f"no photos: {FACES} is missing (see the README's Data section)")
    try:
        import ray
    except ImportError:
        sys.exit("needs ray: pip install 'maskseg[ray]'")
    args = a.args.split()
    print(f"CPU: {cpu_description()}; {os.cpu_count()} logical CPUs; ray {ray.__version__}")
    print(f"load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        work = Path(tmp)
        big = photo_folder(work / "big", a.photos)
        small = photo_folder(work / "small", a.small) if a.small else 0
        print(f"maskseg predict DIR --output OUT --no-progress {' '.join(args)} --engine E")
        print(f"{big} photos from {FACES}" + (f" (and the first {small})" if small else ""))
        print(
            f"{'round':>5} {'engine':>6} {'photos':>6} {'s':>7} {'img/s':>7} {'PSS MB':>7}"
            f" {'RSS MB':>7} {'procs':>5}  load before"
        )
        rows: list[dict] = []
        for r in range(a.runs):
            order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
            sizes = [("big", big)] + ([("small", small)] if small else [])
            for size, n in sizes:
                for engine in order:
                    res = run(engine, work / size, work / f"out_{engine}_{size}", args)
                    res.update(round=r, size=size, photos=n)
                    rows.append(res)
                    print(
                        f"{r:>5} {engine:>6} {n:>6} {res['seconds']:>7.1f} "
                        f"{n / res['seconds']:>7.1f} {res['pss']:>7.0f} {res['rss']:>7.0f} "
                        f"{res['processes']:>5}  {res['load']}",
                        flush=True,
                    )
                    if res["written"] != rows[0]["written"] and size == "big":
                        print(f"  wrote {res['written']} masks, the first run {rows[0]['written']}")
            if r == 0:
                count, bad = same_outputs(work / "out_local_big", work / "out_ray_big")
                print(
                    f"  outputs of the two engines: {count} files, {len(bad)} differ"
                    + (f": {bad[:5]}" if bad else " (byte-identical)")
                )
        print(f"load average at the end: {load()}")
        report(rows, big, small)


def report(rows: list[dict], big: int, small: int) -> None:
    def pick(engine: str, size: str) -> list[dict]:
        return [r for r in rows if r["engine"] == engine and r["size"] == size]

    rounds = sorted({r["round"] for r in rows})
    ratios = []
    for k in rounds:
        local = next(r for r in pick("local", "big") if r["round"] == k)
        on_ray = next(r for r in pick("ray", "big") if r["round"] == k)
        ratios.append(local["seconds"] / on_ray["seconds"])  # images/s ray / images/s local
    print(f"\n{big} photos, median over {len(rounds)} round(s):")
    for engine in ("local", "ray"):
        runs = pick(engine, "big")
        sec = statistics.median(r["seconds"] for r in runs)
        pss = max(r["pss"] for r in runs)
        rss = max(r["rss"] for r in runs)
        print(
            f"  {engine:>5}: {sec:6.1f} s, {big / sec:5.1f} images/s; peak PSS of the run "
            f"{pss:.0f} MB, largest process {rss:.0f} MB"
        )
        if small:
            fixed, rate = [], []
            for k in rounds:
                tb = next(r for r in runs if r["round"] == k)["seconds"]
                ts = next(r for r in pick(engine, "small") if r["round"] == k)["seconds"]
                rate.append((big - small) / (tb - ts))
                fixed.append(ts - small / rate[-1])
            print(
                f"         once running {statistics.median(rate):5.1f} images/s; fixed cost "
                f"(start-up and shutdown) {statistics.median(fixed):.1f} s"
            )
    shown = ", ".join(f"{x:.2f}" for x in ratios)
    print(f"  ray / local images/s: median {statistics.median(ratios):.2f} (rounds: {shown})")


if __name__ == "__main__":
    main()
