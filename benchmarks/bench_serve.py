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
4. the steady load again, to see whether memory grows;
5. adversarial (``--phase adversarial``; a second server started with an API key): normal
   clients (the key, obeying Retry-After up to 30 tries) alongside slow uploads (a byte a
   second), half-sent headers, a keyless flood, hundreds of idle connections and thin images
   (4095 x 1 PNGs of 89 bytes, with the key). It prints the normal clients' success rate and
   latency from first try to answer (target: >= 99 % and p99 <= 2 s) and what each attacker
   got.
The server's resident memory (VmRSS of its process and any workers) is read after start-up,
after the warm-up and after each phase. Loopback only; the server is stopped at the end.
The client runs on the same cores as the server, so figures are for the pair.
"""

from __future__ import annotations

import argparse
import io
import os
import random
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


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(args: argparse.Namespace, key: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "maskseg",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-in-flight",
        str(args.max_in_flight),
        "--threads",
        str(args.threads),
        "--workers",
        str(args.workers),
    ]
    env = {k: v for k, v in os.environ.items() if k != "MASKSEG_API_KEY"}
    if key:
        env["MASKSEG_API_KEY"] = key
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


def run_threads(worker, n: int) -> float:
    """Run ``worker`` in ``n`` threads until all return; the wall time."""
    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


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

    wall = run_threads(worker, concurrency)
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


# ---------------------------------------------------------------------------- adversarial

KEY = "bench-key"


def thin_png(width: int = 4095, height: int = 1) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


class Attackers:
    """Bad clients, each kind in its own thread, until ``stop`` is set. Every socket has a
    timeout, every loop checks ``stop``: the load ends by itself."""

    def __init__(
        self,
        url: str,
        port: int,
        pics: list,
        idle: int,
        slow: int,
        keyless: int,
        thin: int,
        half: int,
    ):
        self.url, self.port, self.pics = url, port, pics
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.stats: dict[str, Counter] = {
            k: Counter() for k in ("idle", "slow", "half", "keyless", "thin")
        }
        self.held: dict[str, list[float]] = {"idle": [], "slow": [], "half": []}
        self.latency: dict[str, list[float]] = {"keyless": [], "thin": []}
        self.threads = [threading.Thread(target=self.idle, args=(idle,), daemon=True)]
        self.threads += [
            threading.Thread(target=self.dribble, args=("slow",), daemon=True) for _ in range(slow)
        ]
        self.threads += [
            threading.Thread(target=self.dribble, args=("half",), daemon=True) for _ in range(half)
        ]
        self.threads += [
            threading.Thread(target=self.flood, args=("keyless",), daemon=True)
            for _ in range(keyless)
        ]
        self.threads += [
            threading.Thread(target=self.flood, args=("thin",), daemon=True) for _ in range(thin)
        ]

    def count(self, kind: str, what: str, held: float | None = None) -> None:
        with self.lock:
            self.stats[kind][what] += 1
            if held is not None:
                self.held[kind].append(held)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.settimeout(0.2)
        return s

    def idle(self, n: int) -> None:
        """``n`` connections that send nothing; one closed by the server is opened again."""
        conns: list[tuple[socket.socket, float]] = []
        while not self.stop.is_set():
            while len(conns) < n and not self.stop.is_set():
                try:
                    conns.append((self.connect(), time.monotonic()))
                    self.count("idle", "opened")
                except OSError:
                    self.count("idle", "connect failed")
                    break
            alive = []
            for s, since in conns:
                try:
                    s.setblocking(False)
                    closed = s.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    self.count("idle", "closed by the server", time.monotonic() - since)
                    s.close()
                else:
                    alive.append((s, since))
            conns = alive
            self.stop.wait(0.5)
        for s, _ in conns:
            s.close()

    def dribble(self, kind: str) -> None:
        """slow: a keyed upload of 200 kB declared, a byte a second. half: a request's
        headers, a byte a second, never finished."""
        while not self.stop.is_set():
            try:
                s = self.connect()
            except OSError:
                self.count(kind, "connect failed")
                self.stop.wait(0.5)
                continue
            since = time.monotonic()
            if kind == "slow":
                head = (
                    f"POST /v1/segment HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
                    "Content-Type: multipart/form-data; boundary=bench\r\n"
                    "Content-Length: 200000\r\n\r\n"
                ).encode()
            else:
                head = b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode()
            answer = b""
            try:
                s.sendall(head)
                while not self.stop.is_set():
                    try:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        answer += chunk
                        continue
                    except TimeoutError:
                        pass
                    s.sendall(b"-")
                    self.stop.wait(0.8)
            except OSError:
                pass
            finally:
                s.close()
            if self.stop.is_set() and not answer:
                return
            status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "cut"
            self.count(kind, status, time.monotonic() - since)

    def flood(self, kind: str) -> None:
        """keyless: real photos without the key, in a loop. thin: 4095 x 1 PNGs with it."""
        data = thin_png()
        headers = {} if kind == "keyless" else {"X-API-Key": KEY}
        with httpx.Client(base_url=self.url, timeout=60, headers=headers) as client:
            i = 0
            while not self.stop.is_set():
                name, body = ("thin.png", data) if kind == "thin" else self.pics[i % len(self.pics)]
                i += 1
                t = time.perf_counter()
                try:
                    status = str(post(client, name, body)[0])
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self.lock:
                    self.stats[kind][status] += 1
                    self.latency[kind].append(time.perf_counter() - t)

    def __enter__(self) -> Attackers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def patient(
    url: str, pics: list, n: int, concurrency: int, tries: int = 30, duration: float = float("inf")
) -> dict:
    """Normal clients with the key: on 503 they wait Retry-After and try again (up to
    ``tries``). Latency is from the first try to the final answer. No request is started
    after ``duration`` seconds (the phase ends by itself against a server that refuses all)."""
    results, first = [], Counter()
    lock = threading.Lock()
    counter = iter(range(n))
    stop_at = time.perf_counter() + duration

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as client:
            while (i := next(counter, None)) is not None and time.perf_counter() < stop_at:
                name, data = pics[i % len(pics)]
                t = time.perf_counter()
                for attempt in range(tries):
                    try:
                        status, _, headers = post(client, name, data)
                    except httpx.HTTPError as exc:
                        status, headers = type(exc).__name__, {}
                    if attempt == 0:
                        with lock:
                            first[status] += 1
                    if status != 503:
                        break
                    wait = float(headers.get("retry-after") or 1)
                    time.sleep(wait * (0.5 + random.random()))
                with lock:
                    results.append((status, time.perf_counter() - t, attempt + 1))

    wall = run_threads(worker, concurrency)
    return {"wall": wall, "results": results, "first": first}


def adversarial(args: argparse.Namespace, pics: list) -> None:
    proc, url = start_server(args, key=KEY)
    port = int(url.rsplit(":", 1)[1])
    try:
        patient(url, pics, 30, args.concurrency)  # warm-up
        base = rss_mb(proc.pid)
        with Attackers(
            url,
            port,
            pics,
            idle=args.idle,
            slow=args.slow,
            keyless=args.keyless,
            thin=args.thin,
            half=args.half,
        ) as attackers:
            time.sleep(3)  # the attackers settle in
            r = patient(url, pics, args.requests, args.normal, duration=args.duration)
            peak = rss_mb(proc.pid)
        codes = Counter(str(code) for code, _, _ in r["results"])
        ok = sorted(s for code, s, _ in r["results"] if code == 200)
        n = len(r["results"])
        print(
            f"adversarial: {args.normal} normal clients with the key, {n} requests in "
            f"{r['wall']:.1f} s, alongside {args.idle} idle connections, {args.slow} slow "
            f"uploads, {args.half} half-sent headers, {args.keyless} keyless flooders, "
            f"{args.thin} thin-image senders"
        )
        retried = sum(tries > 1 for _, _, tries in r["results"])
        print(
            f"  normal clients: success {len(ok) / max(n, 1):.1%} ({dict(codes)}); first "
            f"answers {dict(r['first'])}; {retried} needed a retry"
        )
        every = sorted(s for _, s, _ in r["results"])
        if every:
            print(
                f"  latency, first try to answer: p50 {pct(every, 50) * 1e3:.0f} ms, p90 "
                f"{pct(every, 90) * 1e3:.0f} ms, p99 {pct(every, 99) * 1e3:.0f} ms, max "
                f"{every[-1] * 1e3:.0f} ms"
            )
        for kind, counts in attackers.stats.items():
            line = f"  {kind}: {dict(counts)}"
            held = attackers.held.get(kind) or attackers.latency.get(kind)
            if held:
                held = sorted(held)
                line += f"; held/answered in p50 {pct(held, 50):.2f} s, max {held[-1]:.2f} s"
            print(line)
        print(f"  server memory (RSS): {base:.0f} MB before, {peak:.0f} MB under attack")
        try:
            health = httpx.get(f"{url}/health", timeout=5)
            print(f"  /health after: {health.status_code} {health.text[:120]}")
        except httpx.HTTPError as exc:
            print(f"  /health after: {type(exc).__name__}")
    finally:
        stop_server(proc)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def report_steady(title: str, r: dict) -> None:
    ok = r["ok"]
    n = sum(r["codes"].values())
    print(
        f"{title}: {n} requests in {r['wall']:.1f} s = {n / r['wall']:.1f} requests/s; "
        f"statuses {dict(r['codes'])}"
    )
    if ok:
        print(
            f"  latency of 200s: p50 {pct(ok, 50) * 1e3:.0f} ms, p90 {pct(ok, 90) * 1e3:.0f} "
            f"ms, p99 {pct(ok, 99) * 1e3:.0f} ms, max {ok[-1] * 1e3:.0f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--burst", type=int, default=64, help="requests released at once")
    ap.add_argument("--max-in-flight", type=int, default=8, help="the server's limit")
    ap.add_argument("--threads", type=int, default=0, help="runtime threads per inference")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--phase", choices=("load", "adversarial", "all"), default="all")
    ap.add_argument("--normal", type=int, default=4, help="adversarial: normal clients")
    ap.add_argument(
        "--duration",
        type=float,
        default=180,
        help="adversarial: no normal request starts after this (s)",
    )
    ap.add_argument("--idle", type=int, default=300, help="adversarial: idle connections")
    ap.add_argument("--slow", type=int, default=8, help="adversarial: slow uploads")
    ap.add_argument("--half", type=int, default=8, help="adversarial: half-sent headers")
    ap.add_argument("--keyless", type=int, default=6, help="adversarial: keyless flooders")
    ap.add_argument("--thin", type=int, default=2, help="adversarial: thin-image senders")
    a = ap.parse_args()
    pics = images()
    print(f"CPU: {cpu_description()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"server: --max-in-flight {a.max_in_flight} --threads {a.threads} --workers "
        f"{a.workers}; images: {', '.join(n for n, _ in pics)} in turn"
    )
    if a.phase != "load":
        adversarial(a, pics)
        if a.phase == "adversarial":
            return
    proc, url = start_server(a)
    try:
        memory = {"after start": rss_mb(proc.pid)}
        steady(url, pics, 50, a.concurrency)  # every pool thread has run once
        memory["after warm-up"] = rss_mb(proc.pid)
        report_steady(
            f"steady, concurrency {a.concurrency}", steady(url, pics, a.requests, a.concurrency)
        )
        memory["after steady load"] = rss_mb(proc.pid)
        b = burst(url, pics, a.burst)
        n503 = b["codes"].get(503, 0)
        print(
            f"burst of {a.burst} at once (limit {a.max_in_flight} in flight): statuses "
            f"{dict(b['codes'])}; {n503} got 503"
        )
        if b["refused_s"]:
            print(
                f"  503s came back in p50 {pct(b['refused_s'], 50) * 1e3:.0f} ms, max "
                f"{b['refused_s'][-1] * 1e3:.0f} ms, Retry-After {b['retry_after']}"
            )
        memory["after burst"] = rss_mb(proc.pid)
        report_steady(
            f"steady again, concurrency {a.concurrency}",
            steady(url, pics, a.requests, a.concurrency),
        )
        memory["at the end"] = rss_mb(proc.pid)
        print("server memory (RSS): " + ", ".join(f"{k} {v:.0f} MB" for k, v in memory.items()))
        growth = memory["at the end"] - memory["after steady load"]
        print(f"  growth over the second steady load: {growth:+.0f} MB")
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
