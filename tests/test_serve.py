"""maskseg.serve: mask encodings against hand-computed cases and pycocotools, and the API
through the real app (the shipped model): every accepted image type, garbage, empty,
oversized, a pixel bomb, wrong keys, the in-flight limit, timeouts and failures."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import threading
import time
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import wait_serving
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("multipart", reason="python-multipart (serve extra) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")

with warnings.catch_warnings():  # newer Starlette prefers httpx2 and says so at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from maskseg.pipeline.encode import (  # noqa: E402
    counts_to_string,
    decode_rle,
    encode_rle,
    mask_polygons,
    rle_counts,
    string_to_counts,
)
from maskseg.pipeline.predictor import Predictor  # noqa: E402
from maskseg.pipeline.request import looks_like_crop  # noqa: E402
from maskseg.serve import Settings, create_app  # noqa: E402
from maskseg.serve.app import uvicorn_options  # noqa: E402
from maskseg.serve.engine import sniff  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FACE = EXAMPLES / "face.jpg"
PORTRAIT = EXAMPLES / "astronaut_masked.jpg"


# ---------------------------------------------------------------------------- encodings


def test_rle_counts_by_hand():
    # column-major: column 0 is 0,1,0 and column 1 is 1,1,0 -> 0 | 1 | 0 | 1 1 | 0
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)
    assert rle_counts(mask) == [1, 1, 1, 2, 1]
    assert rle_counts(np.ones((1, 1), bool)) == [0, 1]  # starts with a run of 0s, of length 0
    assert rle_counts(np.zeros((2, 3), bool)) == [6]
    assert encode_rle(mask) == {"size": [3, 2], "counts": "11110"}  # 5th: 1 - 1 (delta)


def test_rle_string_by_hand():
    # 100 = 3 * 32 + 4: low group 4 with the "more" bit (4 + 32 + 48 = "T"), then 3 ("3");
    # the 4th count is stored as 1 - 3 = -2: group 30 with the sign bit, no more ("N").
    assert counts_to_string([100]) == "T3"
    assert counts_to_string([5, 3, 10, 1]) == "53:N"
    assert string_to_counts("53:N") == [5, 3, 10, 1]
    assert string_to_counts("T3") == [100]


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.random()
        rle = encode_rle(mask)
        assert string_to_counts(rle["counts"]) == rle_counts(mask)
        assert np.array_equal(decode_rle(rle), mask)
    big = np.zeros((1500, 2000), bool)
    big[100:1400, 30:1990] = True
    big[500:600, 500:600] = False
    assert np.array_equal(decode_rle(encode_rle(big)), big)
    with pytest.raises(ValueError, match="not 3 x 3"):
        decode_rle({"size": [3, 3], "counts": [4]})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy 2 notice
def test_rle_matches_pycocotools():
    coco = pytest.importorskip("pycocotools.mask", reason="pycocotools is not installed")
    rng = np.random.default_rng(1)
    masks = [
        rng.random((h, w)) < p for h, w, p in [(1, 1, 1), (7, 5, 0.5), (64, 48, 0.1), (33, 90, 0.9)]
    ]
    square = np.zeros((300, 200), bool)
    square[40:250, 20:180] = True
    for mask in [*masks, square, np.zeros((5, 5), bool), np.ones((5, 5), bool)]:
        ref = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = encode_rle(mask)
        assert ours["counts"] == ref["counts"].decode("ascii")
        assert ours["size"] == list(ref["size"])
        ref["counts"] = ours["counts"].encode()
        assert np.array_equal(coco.decode(ref).astype(bool), mask)


def test_polygons_keep_holes():
    mask = np.zeros((100, 120), np.uint8)
    cv2.rectangle(mask, (10, 10), (90, 80), 1, -1)
    cv2.rectangle(mask, (40, 30), (60, 50), 0, -1)  # a hole
    cv2.circle(mask, (108, 90), 6, 1, -1)  # a second region
    polys = mask_polygons(mask.astype(bool))
    assert len(polys) == 2
    holed = max(polys, key=lambda p: len(p["holes"]))
    assert len(holed["holes"]) == 1
    drawn = np.zeros_like(mask)
    for p in polys:
        cv2.fillPoly(drawn, [np.array(p["exterior"]).reshape(-1, 2)], 1)
        for hole in p["holes"]:
            cv2.fillPoly(drawn, [np.array(hole).reshape(-1, 2)], 0)
    iou = (drawn & mask).sum() / (drawn | mask).sum()
    assert iou > 0.95
    assert mask_polygons(np.zeros((5, 5), bool)) == []


def test_sniff_and_crop_rule():
    assert sniff(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "WebP"
    assert sniff(b"RIFF\0\0\0\0WAVEfmt ") is None
    assert sniff(b"GIF89a") is None and sniff(b"%!PS-Adobe") is None
    assert looks_like_crop(250, 250) and looks_like_crop(300, 260)
    assert not looks_like_crop(480, 640)  # a webcam frame stays a scene
    assert not looks_like_crop(1000, 1000)


# ---------------------------------------------------------------------------- helpers


def encoded(image: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side pixels: ~50 KB, 400 MP decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + side // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def upload(data: bytes, name: str = "upload.bin", kind: str = "application/octet-stream"):
    return {"file": (name, data, kind)}


def assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == code and body["detail"], body
    return body


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(Settings(), predictor)) as c:
        yield c


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.asarray(Image.open(FACE).convert("RGB"))


class SlowPredictor(Predictor):
    """The shipped model, but each backend call first sleeps (or fails) once ``delay`` (or
    ``fail``) is set: after the server's start-up, whose warm-up call must succeed."""

    def __init__(self, p: Predictor):
        super().__init__(p.backend, p.config, info=p.info)
        self.delay, self.fail = 0.0, False

    def logits(self, images):
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("secret internal state 0xDEADBEEF")
        return super().logits(images)


@contextmanager
def live_server(app):
    """The app on uvicorn in a thread, on a free loopback port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options = uvicorn_options(app.state.settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def raw_request(port: int, data: bytes) -> bytes:
    """Send the start of a hand-made HTTP request and read the answer until the server closes.

    Nothing is sent after the server may have answered: bytes it never reads would make its
    close a reset, which can discard the answer before it is read here.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


# ---------------------------------------------------------------------------- the API


def test_health_model_docs_and_page(client):
    assert client.head("/health").status_code == 200  # uptime monitors probe with HEAD
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "model_loaded": True,
        "in_flight": 0,
        "max_in_flight": 4,
        "queued": 0,
        "max_queue": 32,
    }
    info = client.get("/v1/model").json()
    assert info["name"] == "unet-msfd" and info["input_size"] == 160
    assert "onnxruntime" in info["backend"] and info["version"]
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/segment",
        "/v1/segment/mask",
        "/v1/segment/overlay",
        "/v1/segment/batch",
        "/v1/model",
        "/health",
    ):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    # offline: Swagger UI's files come from this server, not from a CDN
    assert "https://" not in docs.text and "http://" not in docs.text
    for asset in (
        "/docs-assets/swagger-ui-bundle.js",
        "/docs-assets/swagger-ui.css",
        "/static/favicon.svg",
    ):
        assert client.get(asset).status_code == 200, asset
    # ReDoc is not served: its bundle fetches its logo from a CDN
    assert_error(client.get("/redoc"), 404, "not_found")
    # upload errors are listed for the endpoints that take uploads, not for GET /v1/model
    assert set(spec["paths"]["/v1/model"]["get"]["responses"]) == {"200", "401"}
    assert {"400", "408", "413", "503"} <= set(spec["paths"]["/v1/segment"]["post"]["responses"])
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("/", "/static/app.js", "/static/style.css"):
        text = client.get(name).text
        assert "http://" not in text and "https://" not in text, name  # nothing from elsewhere
    assert "javascript" in client.get("/static/app.js").headers["content-type"]


def test_every_accepted_type_by_content_not_name(client, face):
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    deep = (face[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    cases = {
        "jpeg": encoded(face, "JPEG", quality=92),
        "png": encoded(face, "PNG"),
        "png-gray": encoded(Image.fromarray(face).convert("L"), "PNG"),
        "png-rgba": encoded(rgba, "PNG"),
        "png-16bit": encoded(Image.fromarray(deep), "PNG"),
        "png-palette": encoded(Image.fromarray(face).convert("P"), "PNG"),
        "webp": encoded(face, "WEBP", quality=90),
        "bmp": encoded(face, "BMP"),
        "tiff": encoded(face, "TIFF"),
    }
    areas = {}
    for kind, data in cases.items():
        # a misleading name and declared type: only the bytes count
        r = client.post(
            "/v1/segment", files=upload(data, "notes.txt", "text/plain"), params={"mode": "crop"}
        )
        assert r.status_code == 200, (kind, r.text)
        body = r.json()
        assert (body["width"], body["height"]) == (250, 250), kind
        assert body["mode"] == "crop" and len(body["faces"]) == 1
        mask = decode_rle(body["rle"])
        assert mask.shape == (250, 250)
        areas[kind] = mask.mean()
        assert abs(mask.mean() - body["mask_area"]) < 1e-5
    for kind in ("jpeg", "png", "webp", "bmp", "tiff", "png-rgba"):
        assert 0.15 < areas[kind] < 0.5, (kind, areas[kind])  # the drawn mask is found


def test_scene_json_mask_png_and_overlay_agree(client):
    data = PORTRAIT.read_bytes()
    body = client.post("/v1/segment", files=upload(data)).json()
    assert body["requested_mode"] == "auto" and body["mode"] == "scene"
    assert body["faces"] and all(
        set(f) == {"box", "score", "crop", "mask_area", "mask", "wear", "landmarks"}
        for f in body["faces"]
    )
    assert any(f["mask"] and f["mask_area"] > 0.2 for f in body["faces"])
    assert set(body["timing"]) == {"decode_ms", "inference_ms", "encode_ms", "total_ms"}
    r = client.post("/v1/segment/mask", files=upload(data))
    assert r.headers["content-type"] == "image/png" and r.headers["x-maskseg-mode"] == "scene"
    png = np.asarray(Image.open(io.BytesIO(r.content)))
    assert png.shape == (512, 512) and set(np.unique(png)) <= {0, 255}
    assert np.array_equal(png > 0, decode_rle(body["rle"]))
    r = client.post("/v1/segment/overlay", files=upload(data))
    assert r.headers["content-type"] == "image/jpeg"
    assert "inference;dur=" in r.headers["server-timing"]
    assert Image.open(io.BytesIO(r.content)).size == (512, 512)
    poly = client.post("/v1/segment", files=upload(data), params={"mask_format": "polygons"})
    polys = poly.json()["polygons"]
    assert polys and poly.json()["rle"] is None and len(polys[0]["exterior"]) >= 6
    assert (
        client.post("/v1/segment", files=upload(data), params={"mask_format": "none"}).json()["rle"]
        is None
    )


def test_auto_mode_rule(client):
    plain = np.full((200, 200, 3), 128, np.uint8)  # no face, shaped like a crop: crop mode
    body = client.post("/v1/segment", files=upload(encoded(plain, "PNG"))).json()
    assert body["mode"] == "crop" and body["faces"][0]["score"] is None
    wide = np.full((480, 900, 3), 128, np.uint8)  # no face, a scene's shape: empty scene
    body = client.post("/v1/segment", files=upload(encoded(wide, "PNG"))).json()
    assert body["mode"] == "scene" and body["faces"] == [] and body["mask_area"] == 0
    body = client.post(
        "/v1/segment", files=upload(encoded(wide, "PNG")), params={"mode": "crop"}
    ).json()
    assert body["mode"] == "crop" and body["requested_mode"] == "crop"


def test_bad_uploads_say_what_was_wrong(client, face):
    jpeg = encoded(face, "JPEG")
    assert_error(client.post("/v1/segment", files=upload(b"")), 400, "empty_upload")
    assert_error(
        client.post("/v1/segment", files=upload(b"hello, I am not an image " * 20)),
        415,
        "unsupported_type",
    )
    gif = encoded(face, "GIF")  # a real image, of a type not accepted
    assert_error(
        client.post("/v1/segment", files=upload(gif, "a.jpg", "image/jpeg")),
        415,
        "unsupported_type",
    )
    body = assert_error(
        client.post("/v1/segment/mask", files=upload(jpeg[: len(jpeg) // 3])), 422, "corrupt_image"
    )
    assert "cannot be decoded" in body["detail"]
    body = assert_error(
        client.post("/v1/segment", files=upload(bomb_png(), "bomb.png")), 413, "too_many_pixels"
    )
    assert "20000x20000" in body["detail"] and body["detail"].count("pixels") == 2, (
        body
    )  # once each
    for w, h in ((4095, 1), (1, 40000), (30000, 200)):  # thin: nothing a model could use
        thin = encoded(Image.new("L", (w, h)), "PNG", optimize=True)
        body = assert_error(client.post("/v1/segment", files=upload(thin)), 422, "unusable_image")
        assert f"{w}x{h}" in body["detail"], body
    body = assert_error(
        client.post("/v1/segment", files=upload(jpeg), params={"mode": "x"}), 422, "invalid_request"
    )
    assert "mode" in body["detail"]
    body = assert_error(client.post("/v1/segment"), 400, "empty_upload")  # no body at all
    assert "'file'" in body["detail"]
    form = {"other": ("a.jpg", jpeg)}  # a form without the file field
    assert_error(client.post("/v1/segment", files=form), 422, "invalid_request")
    assert_error(client.get("/v1/segment"), 405, "method_not_allowed")
    assert_error(client.get("/nothing/here"), 404, "not_found")
    assert client.get("/health").json()["in_flight"] == 0  # every refusal gave its slot back


def test_upload_size_limit(predictor, face):
    big = encoded(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8), "PNG")
    settings = Settings(max_upload_bytes=100_000, max_batch_bytes=300_000, max_batch_files=3)
    with TestClient(create_app(settings, predictor)) as c:
        assert len(big) > 100_000 + 64 * 1024
        body = assert_error(c.post("/v1/segment", files=upload(big)), 413, "upload_too_large")
        assert "100,000" in body["detail"]
        assert c.post("/v1/segment", files=upload(encoded(face, "JPEG"))).status_code == 200
        # in a batch each file is held to the image limit, and their number to its own
        files = [("files", ("a.png", big[:150_000])), ("files", ("b.jpg", b"x"))]
        assert_error(c.post("/v1/segment/batch", files=files), 413, "upload_too_large")
        files = [("files", (f"{i}.jpg", encoded(face, "JPEG"))) for i in range(4)]
        assert_error(c.post("/v1/segment/batch", files=files), 413, "too_many_files")


def test_batch_reports_each_image(client, face):
    files = [
        ("files", ("face.jpg", FACE.read_bytes())),
        ("files", ("junk.jpg", b"junk")),
        ("files", ("empty.png", b"")),
        ("files", ("plain.png", encoded(face, "PNG"))),
    ]
    r = client.post("/v1/segment/batch", files=files, params={"mask_format": "none"})
    body = r.json()
    assert r.status_code == 200 and (body["ok"], body["failed"]) == (2, 2)
    assert [i["filename"] for i in body["items"]] == [
        "face.jpg",
        "junk.jpg",
        "empty.png",
        "plain.png",
    ]
    assert body["items"][1]["error"]["error"] == "unsupported_type"
    assert body["items"][2]["error"]["error"] == "empty_upload"
    assert body["items"][0]["result"]["faces"]


def test_api_key(predictor, face, monkeypatch):
    monkeypatch.setenv("MASKSEG_API_KEY", "s3cret")
    settings = Settings.from_env()
    assert settings.api_key == "s3cret"
    jpeg = encoded(face, "JPEG")
    with TestClient(create_app(settings, predictor)) as c:
        assert c.get("/health").status_code == 200  # open: for load balancers
        assert c.get("/").status_code == 200  # the page asks for the key itself
        r = c.get("/v1/model")  # answered by the route
        assert "X-API-Key" in assert_error(r, 401, "unauthorized")["detail"]
        assert r.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'  # RFC 9110
        r = c.post("/v1/segment", files=upload(jpeg))  # answered by the gate
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        guess = c.post("/v1/segment", files=upload(jpeg), headers={"X-API-Key": "guess"})
        wrong = assert_error(guess, 401, "unauthorized")
        assert "wrong" in wrong["detail"]
        ok = c.post("/v1/segment", files=upload(jpeg), headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
    with pytest.raises(ValueError, match="empty"):
        Settings(api_key=" ")
    with pytest.raises(ValueError, match="ASCII"):  # could never match a header
        Settings(api_key="clé")


def test_internal_errors_do_not_leak(predictor, face, caplog):
    broken = SlowPredictor(predictor)
    app = create_app(Settings(), broken)
    with TestClient(app) as c, caplog.at_level(logging.ERROR, "maskseg.serve"):
        broken.fail = True
        body = assert_error(
            c.post("/v1/segment", files=upload(encoded(face, "PNG")), params={"mode": "crop"}),
            500,
            "internal_error",
        )
        assert "DEADBEEF" not in str(body) and "Traceback" not in str(body)
        assert c.get("/health").json()["in_flight"] == 0
    assert "DEADBEEF" in caplog.text  # the traceback is in the server's log


def test_in_flight_limit_and_timeout(predictor, face):
    """One slot: a second request meanwhile gets 503 + Retry-After at once; a request over
    its deadline gets 504, and its slot stays taken until the work really ends."""
    jpeg = encoded(face, "JPEG")
    settings = Settings(max_in_flight=1, queue=0, timeout_s=0.6, retry_after_s=2)
    slow = SlowPredictor(predictor)
    app = create_app(settings, slow)
    with live_server(app) as (url, _), httpx.Client(base_url=url, timeout=10) as http:
        slow.delay = 1.2
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(
                http.post, "/v1/segment", files=upload(jpeg), params={"mode": "crop"}
            )
            wait_until(lambda: http.get("/health").json()["in_flight"] == 1)
            t = time.perf_counter()
            busy = http.post("/v1/segment", files=upload(jpeg))
            assert time.perf_counter() - t < 1.0  # refused without waiting for the 1.2 s job
            assert_error(busy, 503, "busy")
            assert busy.headers["retry-after"] == "2"
            assert_error(first.result(), 504, "timeout")
        assert http.get("/health").json()["in_flight"] == 1  # the work goes on
        wait_until(lambda: http.get("/health").json()["in_flight"] == 0)


def test_concurrent_requests_share_the_model(predictor):
    images = [PORTRAIT.read_bytes(), FACE.read_bytes(), (EXAMPLES / "astronaut.jpg").read_bytes()]
    with live_server(create_app(Settings(max_in_flight=8), predictor)) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as http:
            alone = [http.post("/v1/segment", files=upload(d)).json()["rle"] for d in images]
            jobs = [images[i % 3] for i in range(12)]
            with ThreadPoolExecutor(6) as pool:
                together = list(pool.map(lambda d: http.post("/v1/segment", files=upload(d)), jobs))
    for i, r in enumerate(together):
        assert r.status_code == 200 and r.json()["rle"] == alone[i % 3]


def test_streamed_oversize_and_slow_uploads_are_cut(predictor):
    """Without Content-Length (chunked) the bytes are counted as they arrive; an upload that
    stalls is answered 408 when the request's time is up."""
    settings = Settings(max_upload_bytes=20_000, upload_timeout_s=0.5)
    with live_server(create_app(settings, predictor)) as (_, port):
        head = (
            b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        part = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n"
        )
        limit = 20_000 + 64 * 1024  # the image limit + the multipart framing allowed
        chunks = [part, b"\xff" * (limit + 1 - len(part))]
        # the last byte sent is the one over the limit: the server has read all there is
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)[:-2]
        answer = raw_request(port, head + body)
        assert answer.startswith(b"HTTP/1.1 413") and b"upload_too_large" in answer
        head = (
            b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        t = time.perf_counter()
        answer = raw_request(port, head + b"--b\r\n")  # and then nothing more
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
        assert 0.4 < time.perf_counter() - t < 5


def test_run_warns_without_key_off_loopback(monkeypatch, caplog):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    from maskseg.serve import run

    with caplog.at_level(logging.WARNING, "maskseg.serve"):
        run(Settings(host="127.0.0.1"))
        assert "without an API key" not in caplog.text
        run(Settings(host="0.0.0.0", api_key="k"))
        assert "without an API key" not in caplog.text
        run(Settings(host="0.0.0.0", workers=2))
    assert "without an API key" in caplog.text
    assert calls[-1]["workers"] == 2 and calls[-1]["factory"] is True
    monkeypatch.setenv("MASKSEG_SERVE_SETTINGS", Settings(port=9999, max_in_flight=3).to_json())
    assert Settings.from_env() == Settings(port=9999, max_in_flight=3)
    assert Settings(host="::1").loopback and not Settings(host="example.org").loopback


def test_cli_serve_builds_settings(monkeypatch):
    import maskseg.serve
    from maskseg.cli.main import main

    seen = []
    monkeypatch.setattr(maskseg.serve, "run", seen.append)
    monkeypatch.setenv("MASKSEG_API_KEY", "from-env")
    assert main(["serve", "--port", "8123", "--max-upload-mb", "2", "--max-in-flight", "2"]) == 0
    s = seen[0]
    assert (s.port, s.max_upload_bytes, s.max_in_flight, s.api_key) == (
        8123,
        2_000_000,
        2,
        "from-env",
    )
    flags = (
        "serve --queue 3 --queue-timeout 2.5 --timeout 7 --upload-timeout 9 --min-upload-rate 5 "
        "--max-pending-mb 100 --max-batch-mb 20 --max-batch-files 4 --header-timeout 3 "
        "--keep-alive 2 --max-connections 64 --retry-after 2"
    ).split()
    assert main(flags) == 0
    s = seen[1]
    assert (
        s.queue,
        s.queue_timeout_s,
        s.timeout_s,
        s.upload_timeout_s,
        s.min_upload_rate,
        s.max_pending_bytes,
        s.max_batch_bytes,
        s.max_batch_files,
        s.header_timeout_s,
        s.keep_alive_s,
        s.max_connections,
        s.retry_after_s,
    ) == (3, 2.5, 7.0, 9.0, 5000, 100_000_000, 20_000_000, 4, 3.0, 2, 64, 2)


def test_landmarks_on_request(client):
    """``landmarks=true`` adds each face's 468 points, inside the picture; without it, none."""
    data = PORTRAIT.read_bytes()
    plain = client.post("/v1/segment", files=upload(data)).json()
    assert plain["faces"] and all(f["landmarks"] is None for f in plain["faces"])
    body = client.post("/v1/segment", files=upload(data), params={"landmarks": "true"}).json()
    best = max(body["faces"], key=lambda f: f["score"])
    points = np.array(best["landmarks"])
    assert points.shape == (468, 2)
    x1, y1, x2, y2 = best["box"]
    nose = points[1]  # Face Mesh's nose tip lies inside the detected face box
    assert x1 <= nose[0] <= x2 and y1 <= nose[1] <= y2


def test_landmarks_in_a_batch_and_unknown_parameters_refused(client, predictor):
    data = PORTRAIT.read_bytes()
    files = [("files", ("portrait.jpg", data))]
    r = client.post("/v1/segment/batch", files=files, params={"landmarks": "true"})
    faces = r.json()["items"][0]["result"]["faces"]
    assert r.status_code == 200 and all(np.shape(f["landmarks"]) == (468, 2) for f in faces)

    r = client.post("/v1/segment", files=upload(data), params={"detect_treshold": 0.1})
    detail = assert_error(r, 422, "invalid_request")["detail"]
    assert "unknown query parameter detect_treshold;" in detail
    assert "takes: detect_threshold, landmarks, mask_format, mode, tolerance" in detail
    r = client.get("/v1/model", params={"a": 1, "b": 2})
    assert (
        "parameters a, b; /v1/model takes: none"
        in assert_error(r, 422, "invalid_request")["detail"]
    )
    # a client without the key learns nothing about the parameters
    with TestClient(create_app(Settings(api_key="k"), predictor)) as c:
        assert_error(c.get("/v1/model", params={"a": 1}), 401, "unauthorized")
        assert c.get("/v1/model", params={"a": 1}, headers={"X-API-Key": "k"}).status_code == 422


@pytest.mark.parametrize(
    "args, message",
    [
        (["--api-key", ""], "the API key is empty"),
        (["--api-key", "abc "], "white space"),
        (["--port", "99999"], "port must be in 0-65535"),
        (["--threads", "-1"], "threads must be >= 0"),
        (["--timeout", "nan"], "timeout_s must be a positive number"),
        (["--retry-after", "-1"], "retry_after_s must be >= 0"),
        (["--model", "no-such-model"], "no such model file or shipped model"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_cli_serve_bad_settings_are_one_line_errors(args, message, monkeypatch, capsys):
    import maskseg.serve
    from maskseg.cli.main import main

    started = []
    monkeypatch.setattr(maskseg.serve, "run", started.append)
    monkeypatch.setenv("MASKSEG_API_KEY", "from-env")  # an empty --api-key must not fall back
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not started


def test_serve_with_two_worker_processes(tmp_path):
    """``--workers 2`` starts uvicorn's worker processes (its protocol class must reach them
    by name; a class made at run time could not be sent) and they answer."""
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskseg", "serve", "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MASKSEG_API_KEY": "w2"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url)
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": "w2"}) as http:
            for _ in range(2):
                r = http.post(
                    "/v1/segment", files=upload(FACE.read_bytes()), params={"mode": "crop"}
                )
                assert r.status_code == 200, r.text
                assert r.json()["mask_area"] > 0.05
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0]
    assert "PicklingError" not in out and "Traceback" not in out, out
