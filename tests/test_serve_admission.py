"""maskseg serve's admission, on a real uvicorn server over loopback sockets: the key before
anything, slow uploads holding no slot, the wait queue in arrival order, the bytes budget,
request-head deadlines, the connection cap, JSON errors, and work stopped at its deadline."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("multipart", reason="python-multipart (serve extra) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")

from test_serve import (  # noqa: E402
    FACE,
    SlowPredictor,
    assert_error,
    live_server,
    raw_request,
    upload,
    wait_until,
)

from maskseg.pipeline.predictor import Predictor  # noqa: E402
from maskseg.serve import (  # noqa: E402
    Settings,
    admission,  # noqa: E402
    create_app,
)
from maskseg.serve.admission import Slots  # noqa: E402

KEY = {"X-API-Key": "k"}


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


def head(length: int, key: str | None = "k", boundary: str = "b") -> bytes:
    lines = [
        "POST /v1/segment?mode=crop HTTP/1.1",
        "Host: x",
        f"Content-Length: {length}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
    ]
    if key:
        lines.append(f"X-API-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        pass
    return answer


def json_body(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# ---------------------------------------------------------------------------- slots and queue


def multipart(data: bytes) -> bytes:
    """A request body with ``data`` as the form field 'file' (boundary "b", as ``head``)."""
    part = b"--b\r\nContent-Disposition: form-data; name=file; filename=f.jpg\r\n\r\n"
    return part + data + b"\r\n--b--\r\n"


def occupy(http, pool, data: bytes):
    """Send one crop request from ``pool`` and wait until it holds a slot; its future."""
    busy = pool.submit(http.post, "/v1/segment", files=upload(data), params={"mode": "crop"})
    wait_until(lambda: http.get("/health").json()["in_flight"] == 1)
    return busy


def test_slots_hand_over_in_arrival_order():
    """A freed slot goes to the longest waiter; a full line or a wait run out is a refusal."""
    import asyncio

    async def scenario():
        slots = Slots(limit=1, queue=2)
        first = await slots.take(10, 0)
        assert first is not None and slots.busy == 1
        order = []

        async def wait(name, wait_s=5.0):
            ticket = await slots.take(10, wait_s)
            order.append((name, ticket is not None))
            return ticket

        a = asyncio.create_task(wait("a"))
        await asyncio.sleep(0)
        b = asyncio.create_task(wait("b"))
        await asyncio.sleep(0)
        assert len(slots.waiting) == 2
        assert await slots.take(10, 5) is None  # the line is full
        first.drop()  # a's turn
        ta = await a
        assert order == [("a", True)] and slots.busy == 1 and len(slots.waiting) == 1
        ta.drop()
        tb = await b
        assert order[-1] == ("b", True)
        late = asyncio.create_task(wait("late", 0.05))
        assert (await late) is None and order[-1] == ("late", False)  # waited too long
        assert not slots.waiting
        tb.drop()
        assert slots.busy == 0

    asyncio.run(scenario())


# ---------------------------------------------------------------------------- live server


def test_key_is_checked_before_a_slot_is_taken(predictor):
    """Keyless clients get 401 at once even while every slot is busy: they cannot lock keyed
    clients out, and they never wait in the line."""
    slow = SlowPredictor(predictor)
    settings = Settings(api_key="k", max_in_flight=1, queue=0)
    with live_server(create_app(settings, slow)) as (url, _), httpx.Client(base_url=url) as http:
        slow.delay = 1.0
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(
                http.post,
                "/v1/segment",
                files=upload(FACE.read_bytes()),
                params={"mode": "crop"},
                headers=KEY,
            )
            wait_until(lambda: http.get("/health").json()["in_flight"] == 1)
            t = time.perf_counter()
            r = http.post("/v1/segment", files=upload(FACE.read_bytes()))
            assert time.perf_counter() - t < 0.9
            assert_error(r, 401, "unauthorized")
            assert busy.result().status_code == 200


def test_slow_upload_holds_no_slot_and_is_cut_by_its_rate(predictor, monkeypatch):
    """With one slot, an upload dribbling a byte at a time does not keep a normal request
    out; it is answered 408 (too slow) once the grace period is over. The grace must outlast
    the three normal requests: at 0.6 s a loaded CI machine once took longer, the upload was
    cut mid-loop and the next byte met a broken pipe."""
    monkeypatch.setattr(admission, "UPLOAD_GRACE_S", 2.0)
    settings = Settings(max_in_flight=1, queue=0, min_upload_rate=1000)
    with live_server(create_app(settings, predictor)) as (url, port):
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(head(100_000) + b"--b\r\n")  # and then one byte at a time
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(3):  # the slow upload is still going meanwhile
                slow.sendall(b"x")
                r = http.post(
                    "/v1/segment", files=upload(FACE.read_bytes()), params={"mode": "crop"}
                )
                assert r.status_code == 200, r.text
        answer = read_answer(slow)
        slow.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json_body(answer)["error"] == "upload_too_slow"


def test_queue_serves_in_order_then_refuses(predictor):
    """One slot and a line of two: three requests at once are all answered, in arrival order;
    a fourth meanwhile gets 503 with Retry-After at once; a wait that runs out is a 503."""
    slow = SlowPredictor(predictor)
    settings = Settings(max_in_flight=1, queue=2, queue_timeout_s=10, retry_after_s=3)
    data = FACE.read_bytes()
    done: list[int] = []
    lock = threading.Lock()
    with live_server(create_app(settings, slow)) as (url, _):
        slow.delay = 0.4

        def send(i: int):
            with httpx.Client(base_url=url, timeout=20) as http:
                r = http.post("/v1/segment", files=upload(data), params={"mode": "crop"})
            with lock:
                done.append(i)
            return r

        with ThreadPoolExecutor(3) as pool, httpx.Client(base_url=url) as http:
            futures = []
            for i in range(3):
                futures.append(pool.submit(send, i))
                wait_until(
                    lambda i=i: (
                        (h := http.get("/health").json())["in_flight"] + h["queued"] == i + 1
                    )
                )
            t = time.perf_counter()
            extra = http.post("/v1/segment", files=upload(data), params={"mode": "crop"})
            assert time.perf_counter() - t < 0.35  # not queued: refused at once
            assert "the line of 2 is full" in assert_error(extra, 503, "busy")["detail"]
            assert extra.headers["retry-after"] == "3"
            assert [f.result().status_code for f in futures] == [200, 200, 200]
        assert done == [0, 1, 2]
    settings = Settings(max_in_flight=1, queue=4, queue_timeout_s=0.3)
    with live_server(create_app(settings, slow)) as (url, _), ThreadPoolExecutor(1) as pool:
        slow.delay = 1.5
        with httpx.Client(base_url=url, timeout=20) as http:
            first = occupy(http, pool, data)
            body = assert_error(http.post("/v1/segment", files=upload(data)), 503, "busy")
            assert "waited 0.3 s" in body["detail"]
            assert first.result().status_code == 200


def test_bytes_held_are_bounded(predictor):
    """An upload that would take the bytes held for all requests over the budget is refused
    503 before its body is read; what a finished request held is given back."""
    settings = Settings(max_upload_bytes=50_000, max_batch_bytes=60_000, max_pending_bytes=60_000)
    with live_server(create_app(settings, predictor)) as (url, port):
        holder = socket.create_connection(("127.0.0.1", port))
        holder.sendall(head(50_000, key=None) + b"--b\r\n")  # declared, in progress
        with socket.create_connection(("127.0.0.1", port)) as second:
            second.sendall(head(50_000, key=None))
            answer = read_answer(second)
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in answer.lower()
        assert json_body(answer)["error"] == "busy"
        holder.close()  # the first client goes away: its reservation is released
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_until(
                lambda: (
                    http.post(
                        "/v1/segment", files=upload(FACE.read_bytes()), params={"mode": "crop"}
                    ).status_code
                    == 200
                )
            )


def test_idle_and_half_sent_heads_time_out(predictor):
    """A connection that sends nothing is closed; one that sends half a head gets a JSON
    408; neither holds anything that keeps /health or an upload out."""
    settings = Settings(header_timeout_s=0.4)
    with live_server(create_app(settings, predictor)) as (url, port):
        idle = socket.create_connection(("127.0.0.1", port))
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nX-Api")
        t = time.perf_counter()
        assert read_answer(idle, 5) == b""  # closed, without an answer
        assert 0.3 < time.perf_counter() - t < 3
        answer = read_answer(half, 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert json_body(answer)["error"] == "request_timeout"
        idle.close()
        half.close()
        # a request whose head came in time is not cut by the head deadline
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/health").status_code == 200
            time.sleep(0.6)  # the keep-alive connection idles past the head deadline
            assert http.get("/health").status_code == 200  # (a new connection if closed)


def test_connection_cap_answers_json_and_spares_open_ones(predictor):
    """Idle connections below the cap do not make requests fail (uvicorn's
    limit_concurrency would answer them all 503); one beyond it gets a JSON 503."""
    settings = Settings(max_connections=6, header_timeout_s=30)
    with live_server(create_app(settings, predictor)) as (url, port):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            with httpx.Client(base_url=url, timeout=10) as http:
                assert http.get("/health").status_code == 200  # the sixth connection
                extra = socket.create_connection(("127.0.0.1", port))
                answer = read_answer(extra, 5)
                extra.close()
                assert answer.startswith(b"HTTP/1.1 503"), answer
                assert json_body(answer)["error"] == "too_many_connections"
                assert b"retry-after: 1" in answer.lower()
                assert http.get("/health").status_code == 200  # its own stays served
        finally:
            for s in idle:
                s.close()


def test_work_stops_at_its_deadline(predictor):
    """Past the deadline the rest of a batch is not worked on (its slot comes back as soon as
    the stage under way ends, not after every image)."""

    class Counting(SlowPredictor):
        calls = 0

        def logits(self, images):
            Counting.calls += 1
            return super().logits(images)

    slow = Counting(predictor)
    settings = Settings(timeout_s=0.5, max_in_flight=1)
    files = [("files", (f"{i}.jpg", FACE.read_bytes())) for i in range(8)]
    with live_server(create_app(settings, slow)) as (url, _):
        slow.delay, Counting.calls = 0.3, 0  # 8 images: 2.4 s of work if it went on
        with httpx.Client(base_url=url, timeout=20) as http:
            r = http.post("/v1/segment/batch", files=files, params={"mode": "crop"})
            if r.status_code == 200:  # stopped at its margin: the images not done say so
                late = [i["error"]["error"] for i in r.json()["items"] if i["result"] is None]
                assert len(late) >= 6 and set(late) == {"timeout"}, r.json()
            else:  # a stage ran past the margin too (a busy machine): one 504
                assert_error(r, 504, "timeout")
            wait_until(lambda: http.get("/health").json()["in_flight"] == 0, timeout=5)
        assert 1 <= Counting.calls <= 3, Counting.calls  # not eight


def test_two_key_headers_are_refused_by_the_gate(predictor):
    """The gate and the route must not read different ones of two X-API-Key headers: the
    request is refused from its headers alone, before its upload is read or a slot taken."""
    settings = Settings(api_key="k")
    with live_server(create_app(settings, predictor)) as (url, port):
        body = multipart(FACE.read_bytes())
        request = head(len(body)).replace(b"X-API-Key: k", b"X-API-Key: wrong\r\nX-API-Key: k")
        answer = raw_request(port, request + body)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert "send one X-API-Key header, not 2" in json_body(answer)["detail"]
        with httpx.Client(base_url=url) as http:
            assert http.get("/health").json()["in_flight"] == 0


def test_a_client_that_hangs_up_leaves_the_line(predictor):
    """Requests sent in full whose clients close at once used to wait in line and then be
    worked on for nobody; now they leave the line when their client goes."""
    slow = SlowPredictor(predictor)
    settings = Settings(max_in_flight=1, queue=8, queue_timeout_s=10)
    data = FACE.read_bytes()
    body = multipart(data)
    with live_server(create_app(settings, slow)) as (url, port), ThreadPoolExecutor(1) as pool:
        slow.delay = 2.0
        with httpx.Client(base_url=url, timeout=20) as http:
            busy = occupy(http, pool, data)
            for _ in range(4):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(head(len(body), key=None) + body)
                    wait_until(lambda: http.get("/health").json()["queued"] >= 1)
            # every one left the line while the first request is still at work
            wait_until(lambda: http.get("/health").json()["queued"] == 0, timeout=1.5)
            assert http.get("/health").json()["in_flight"] == 1
            assert busy.result().status_code == 200


def test_a_batch_past_its_time_keeps_the_images_it_finished(predictor):
    """A batch stops its images a margin before the request's deadline: those done are
    answered, the rest say "timeout", instead of one 504 for all of them."""
    slow = SlowPredictor(predictor)
    settings = Settings(timeout_s=4, max_in_flight=1)
    files = [("files", (f"{i}.jpg", FACE.read_bytes())) for i in range(8)]
    with live_server(create_app(settings, slow)) as (url, _):
        slow.delay = 0.6  # about 0.65 s an image; the images stop at 3 s
        with httpx.Client(base_url=url, timeout=20) as http:
            r = http.post("/v1/segment/batch", files=files, params={"mode": "crop"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    done = [i for i in items if i["result"] is not None]
    late = [i["error"]["error"] for i in items if i["result"] is None]
    assert 2 <= len(done) <= 5 and late == ["timeout"] * (8 - len(done)), r.json()
    assert [i["filename"] for i in items] == [f"{i}.jpg" for i in range(8)]


def test_shutdown_answers_waiting_and_working_requests_in_json(predictor):
    """When the server stops and its grace period runs out, requests still at work or in
    line get a JSON 503 "shutting_down" with Retry-After, not uvicorn's plain-text 500."""
    import uvicorn

    from maskseg.serve.app import uvicorn_options

    slow = SlowPredictor(predictor)
    settings = Settings(max_in_flight=1, queue=4, queue_timeout_s=20, retry_after_s=2)
    app = create_app(settings, slow)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = {**uvicorn_options(settings), "timeout_graceful_shutdown": 0.5}
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    url = f"http://127.0.0.1:{port}"
    slow.delay = 5.0

    def send():
        with httpx.Client(base_url=url, timeout=20) as http:
            return http.post(
                "/v1/segment", files=upload(FACE.read_bytes()), params={"mode": "crop"}
            )

    try:
        with ThreadPoolExecutor(3) as pool, httpx.Client(base_url=url) as http:
            futures = [pool.submit(send) for _ in range(3)]
            wait_until(lambda: http.get("/health").json()["queued"] == 2)
            server.should_exit = True
            answers = [f.result() for f in futures]
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
    for r in answers:
        assert_error(r, 503, "shutting_down")
        assert r.headers["retry-after"] == "2"
