"""Load on ``maskseg serve``: throughput, latency, 503s beyond the in-flight limit, memory.

    python benchmarks/bench_serve.py [--requests 500] [--concurrency 8] [--burst 64]
                                     [--max-in-flight 8] [--threads 0] [--workers 1]

Starts the server (``python -m maskseg serve``) on 127.0.0.1 on a free port, then:
1. warm-up: 50 requests at --concurrency;
2. steady load: --requests POST /v1/segment (JSON with RLE, mode auto, as the page sends) at
   --concurrency, cycling through the example photos (250 px and 512 px) and a 1280 x 960
   JPEG of the portrait: requests/s, p50/p90/p99 latency, status counts;
3. burst: --burst requests released at once, beyond the in-flight limit: how many got 503
   (and Retry-After), how fast a 503 came back, and that the others were answered;
4. the steady load again, to see whether memory grows.
The server's resident memory (VmRSS of its process and any workers) is read after start-up,
after the warm-up and after each phase. Loopback only; the server is stopped at the end.
The client runs on the same cores as the server, so figures are for the pair.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from maskseg.console import cpu_description

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def images() -> list[tuple[str, bytes]]:
    big = Image.open(EXAMPLES / "astronaut_masked.jpg").convert("RGB").resize((960, 960))
    canvas = Image.new("RGB", (1280, 960), (40, 40, 40))
    canvas.paste(big, (160, 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return [
        ("face.jpg", (EXAMPLES / "face.jpg").read_bytes()),
        ("astronaut_masked.jpg", (EXAMPLES / "astronaut_masked.jpg").read_bytes()),
        ("portrait_1280x960.jpg", buf.getvalue()),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "maskseg", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--max-in-flight", str(args.max_in_flight), "--threads", str(args.threads),
           "--workers", str(args.workers)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MASKSEG_API_KEY"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not start in 60 s")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)


def post(client: httpx.Client, name: str, data: bytes) -> tuple[int, float, dict]:
    t = time.perf_counter()
    r = client.post("/v1/segment", files={"file": (name, data)}, params={"mode": "auto"})
    return r.status_code, time.perf_counter() - t, dict(r.headers)


def steady(url: str, pics: list, n: int, concurrency: int) -> dict:
    results = []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                name, data = pics[i % len(pics)]
                status, seconds, _ = post(client, name, data)
                with lock:
                    results.append((status, seconds))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = sorted(s for code, s in results if code == 200)
    return {"wall": wall, "codes": Counter(code for code, _ in results), "ok": ok}


def burst(url: str, pics: list, n: int) -> dict:
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(n)]
    for c in clients:  # connections open before the burst, so they all arrive together
        c.get("/health")
    gate = threading.Barrier(n)

    def one(i: int):
        gate.wait()
        name, data = pics[i % len(pics)]
        return post(clients[i], name, data)

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for c in clients:
        c.close()
    refused = [(s, h) for code, s, h in results if code == 503]
    return {
        "codes": Counter(code for code, _, _ in results),
        "refused_s": sorted(s for s, _ in refused),
        "retry_after": sorted({h.get("retry-after") for _, h in refused}),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def report_steady(title: str, r: dict) -> None:
    ok = r["ok"]
    n = sum(r["codes"].values())
    print(f"{title}: {n} requests in {r['wall']:.1f} s = {n / r['wall']:.1f} requests/s; "
          f"statuses {dict(r['codes'])}")  # fmt: skip
    if ok:
        print(f"  latency of 200s: p50 {pct(ok, 50) * 1e3:.0f} ms, p90 {pct(ok, 90) * 1e3:.0f} "
              f"ms, p99 {pct(ok, 99) * 1e3:.0f} ms, max {ok[-1] * 1e3:.0f} ms")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--burst", type=int, default=64, help="requests released at once")
    ap.add_argument("--max-in-flight", type=int, default=8, help="the server's limit")
    ap.add_argument("--threads", type=int, default=0, help="runtime threads per inference")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    a = ap.parse_args()
    pics = images()
    print(f"CPU: {cpu_description()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"server: --max-in-flight {a.max_in_flight} --threads {a.threads} --workers "
          f"{a.workers}; images: {', '.join(n for n, _ in pics)} in turn")  # fmt: skip
    proc, url = start_server(a)
    try:
        memory = {"after start": rss_mb(proc.pid)}
        steady(url, pics, 50, a.concurrency)  # every pool thread has run once
        memory["after warm-up"] = rss_mb(proc.pid)
        report_steady(f"steady, concurrency {a.concurrency}",
                      steady(url, pics, a.requests, a.concurrency))  # fmt: skip
        memory["after steady load"] = rss_mb(proc.pid)
        b = burst(url, pics, a.burst)
        n503 = b["codes"].get(503, 0)
        print(f"burst of {a.burst} at once (limit {a.max_in_flight} in flight): statuses "
              f"{dict(b['codes'])}; {n503} got 503")  # fmt: skip
        if b["refused_s"]:
            print(f"  503s came back in p50 {pct(b['refused_s'], 50) * 1e3:.0f} ms, max "
                  f"{b['refused_s'][-1] * 1e3:.0f} ms, Retry-After {b['retry_after']}")  # fmt: skip
        memory["after burst"] = rss_mb(proc.pid)
        report_steady(f"steady again, concurrency {a.concurrency}",
                      steady(url, pics, a.requests, a.concurrency))  # fmt: skip
        memory["at the end"] = rss_mb(proc.pid)
        print("server memory (RSS): " + ", ".join(f"{k} {v:.0f} MB" for k, v in memory.items()))
        growth = memory["at the end"] - memory["after steady load"]
        print(f"  growth over the second steady load: {growth:+.0f} MB")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
