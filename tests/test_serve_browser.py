"""The web page in a real browser: Debian's chromium, headless, driven by Playwright, against
``maskseg serve`` started as a subprocess on a free loopback port (with an API key, so the
page's key prompt is exercised too).

Photo: upload a real face photo, wait for the overlay, the faces' mask areas and the timing,
download the mask and compare it with the API's. Webcam: chromium's fake camera plays a clip
of the same photo (``--use-file-for-fake-video-capture``), and the live loop must draw masks.
Screenshots go to pytest's temporary folder; their paths are printed (``pytest -s``).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import wait_serving
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO = EXAMPLES / "astronaut_masked.jpg"
KEY = "browser-test-key"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi", reason="the serve extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_y4m(path: Path, image: np.ndarray, frames: int = 10, size=(640, 480)) -> None:
    """A short raw video (YUV4MPEG2, 4:2:0) of ``image`` letterboxed into ``size``, for
    chromium's fake camera."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    fitted = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
    canvas = np.full((h, w, 3), 40, np.uint8)
    y0, x0 = (h - fitted.shape[0]) // 2, (w - fitted.shape[1]) // 2
    canvas[y0 : y0 + fitted.shape[0], x0 : x0 + fitted.shape[1]] = fitted
    yuv = cv2.cvtColor(canvas, cv2.COLOR_RGB2YUV_I420).tobytes()
    header = f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + b"".join(b"FRAME\n" + yuv for _ in range(frames)))


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "MASKSEG_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskseg", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url, timeout=60)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    clip = tmp_path_factory.mktemp("camera") / "masked_face.y4m"
    write_y4m(clip, np.asarray(Image.open(PHOTO).convert("RGB")))
    with sync_api.sync_playwright() as p:
        camera = f"--use-file-for-fake-video-capture={clip}"
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=[*ARGS, camera])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 1000}, accept_downloads=True)
    context.grant_permissions(["camera"], origin=server)
    pg = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on(
        "request",
        lambda r: None if r.url.startswith((server, "data:", "blob:")) else outside.append(r.url),
    )
    pg.goto(server + "/")
    yield pg
    context.close()
    assert not errors, errors
    assert not outside, f"the page loaded resources from elsewhere: {outside}"


def enter_key(page) -> None:
    page.wait_for_selector("#key-form:not([hidden])", timeout=10_000)  # /v1/model said 401
    page.fill("#key", KEY)
    page.click("#key-form button")
    wait_for(lambda: page.inner_text("#model").startswith("model unet-msfd"), "model info")


def wait_for(check, what: str, timeout: float = 20.0) -> None:
    """Poll from Python: the page's CSP forbids the eval behind Playwright's wait_for_function."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def tinted_share(png: bytes) -> float:
    """Share of pixels carrying the page's cyan tint in a screenshot of a canvas."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return float(((b - r > 60) & (g - r > 40)).mean())


def test_photo_upload_shows_overlay_faces_and_downloads_mask(page, server, tmp_path):
    enter_key(page)
    page.set_input_files("#file", str(PHOTO))
    page.wait_for_selector("body[data-state=done]", timeout=20_000)
    rows = page.locator("#faces tbody tr")
    assert rows.count() >= 1
    cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    assert any(c[2] == "yes" and float(c[3].rstrip(" %")) > 20 for c in cells), cells
    timing = page.inner_text("#timing")
    assert timing.startswith("server ") and "round trip" in timing
    assert tinted_share(page.locator("#view").screenshot()) > 0.01  # the mask is drawn
    with page.expect_download() as info:
        page.click("#download")
    download = tmp_path / info.value.suggested_filename
    info.value.save_as(download)
    assert download.name == "astronaut_masked_mask.png"
    got = np.asarray(Image.open(download).convert("L")) > 127
    api = httpx.post(
        f"{server}/v1/segment/mask",
        headers={"X-API-Key": KEY},
        files={"file": ("p.jpg", PHOTO.read_bytes())},
        timeout=30,
    )
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(api.content))) > 127)
    shot = tmp_path / "serve_photo.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}\nfaces: {cells}\n{timing}")


def test_webcam_live_mode_draws_masks(page, tmp_path):
    enter_key(page)
    page.click("#camera")
    wait_for(lambda: int(page.get_attribute("body", "data-frames") or 0) >= 5, "5 live frames")
    assert "frames/s" in page.inner_text("#timing")
    cells = page.locator("#faces tbody tr").first.locator("td").all_inner_texts()
    assert cells[2] == "yes", cells
    assert tinted_share(page.locator("#live").screenshot()) > 0.005  # mask over the video
    shot = tmp_path / "serve_webcam.png"
    page.screenshot(path=str(shot), full_page=True)
    page.click("#camera")
    assert page.inner_text("#camera") == "Start webcam"
    print(f"\nscreenshot: {shot}\n{page.inner_text('#timing')}")


def test_api_docs_render_without_the_internet(page, server):
    """/docs draws its operations from files this server ships (the page fixture fails the
    test on any request to another host)."""
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    text = page.inner_text("body")
    for path in ("/v1/segment", "/v1/segment/batch", "/health"):
        assert path in text, path
