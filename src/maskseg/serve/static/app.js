// maskseg's page: send a photo or webcam frames to /v1/segment, draw the returned mask.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const TINT = [0, 200, 255, 115]; // cyan, as the server's overlays
const KEY_STORE = "maskseg-api-key";
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORE),
  retry: null, // what to run again once a key is given
  mask: null, // last photo's mask: {width, height, bits}
  stem: "mask",
  camera: null, // {stream, running}
};

class ApiError extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail || code);
    Object.assign(this, { status, code, retryAfter });
  }
}

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + kind;
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("X-API-Key", state.key);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let body = {};
    try {
      body = await response.json();
    } catch (_) {
      body = { error: "http_" + response.status, detail: response.statusText };
    }
    const retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw new ApiError(response.status, body.error, body.detail, retryAfter);
  }
  return response.json();
}

function askForKey(retry) {
  state.retry = retry;
  $("key-form").hidden = false;
  $("key").focus();
  setStatus(state.key ? "The API key was refused; enter the right one." :
    "This server needs an API key.", "error");
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("key").value.trim() || null;
  if (state.key) sessionStorage.setItem(KEY_STORE, state.key);
  else sessionStorage.removeItem(KEY_STORE);
  $("key-form").hidden = true;
  const retry = state.retry;
  state.retry = null;
  if (retry) retry();
});

function handleError(err, retry) {
  if (err instanceof ApiError && err.status === 401) {
    askForKey(retry);
  } else {
    setStatus(err.message || String(err), "error");
  }
  document.body.dataset.state = "error";
}

// ------------------------------------------------------------------ model information

async function loadModel() {
  try {
    const m = await api("/v1/model");
    $("model").textContent = `model ${m.name} (${m.architecture}, ${m.input_size} px` +
      `${m.int8 ? ", INT8" : ""}) on ${m.backend}; faces by ${m.detector}; maskseg ${m.version}`;
  } catch (err) {
    $("model").textContent = "model information unavailable";
    handleError(err, loadModel);
  }
}

// ------------------------------------------------------------------ COCO RLE

// Decode COCO's compressed counts string (pycocotools' rleFrString). Arithmetic instead of
// bit operations, which are 32-bit in JavaScript.
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x += (c & 0x1f) * Math.pow(32, k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x -= Math.pow(32, k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// The mask as one byte per pixel, row-major (the counts run column by column).
function decodeRle(rle) {
  const [height, width] = rle.size;
  const bits = new Uint8Array(width * height);
  let i = 0, value = 0;
  for (const n of rleCounts(rle.counts)) {
    if (value) {
      for (let j = i; j < i + n; j++) {
        const x = Math.floor(j / height);
        bits[(j - x * height) * width + x] = 1;
      }
    }
    i += n;
    value ^= 1;
  }
  return { width, height, bits };
}

// ------------------------------------------------------------------ drawing

function maskCanvas(mask, colour) {
  const c = document.createElement("canvas");
  c.width = mask.width;
  c.height = mask.height;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(mask.width, mask.height);
  const d = img.data;
  for (let i = 0; i < mask.bits.length; i++) {
    if (mask.bits[i]) {
      d[4 * i] = colour[0];
      d[4 * i + 1] = colour[1];
      d[4 * i + 2] = colour[2];
      d[4 * i + 3] = colour[3];
    }
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

// the wear check's verdicts: label and colour (as the overlays of predict and video)
const VERDICTS = {
  correct: ["worn correctly", "rgb(40, 220, 90)"],
  nose_exposed: ["nose exposed", "rgb(255, 150, 0)"],
  nose_mouth_exposed: ["nose+mouth exposed", "rgb(235, 40, 40)"],
  chin_exposed: ["chin exposed", "rgb(245, 215, 0)"],
  no_mask: ["no mask", "rgb(190, 60, 220)"],
};
const NOT_JUDGED = ["not judged", "rgb(170, 170, 170)"];

function verdictStyle(wear) {
  if (!wear) return null;
  return VERDICTS[wear.verdict] || NOT_JUDGED;
}

function drawFaces(ctx, faces, scale) {
  const line = Math.max(2, Math.round(Math.max(ctx.canvas.width, ctx.canvas.height) / 300));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, line * 6)}px system-ui, sans-serif`;
  faces.forEach((f, n) => {
    if (f.score === null) return; // crop mode: the whole image is the face
    const [x1, y1, x2, y2] = f.box.map((v) => v * scale);
    const colour = f.mask ? "rgb(40, 220, 90)" : "rgb(255, 150, 0)";
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${n + 1}: ${f.mask ? "mask " + pct(f.mask_area) : "no mask"}`;
    const y = Math.max(y1 - 2 * line, line * 6);
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    ctx.fillRect(x1, y - line * 6, ctx.measureText(label).width + 2 * line, line * 7);
    ctx.fillStyle = colour;
    ctx.fillText(label, x1 + line, y);
    const style = verdictStyle(f.wear);
    if (style) {
      const below = Math.min(y2 + line * 7, ctx.canvas.height - line);
      ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
      ctx.fillRect(x1, below - line * 6, ctx.measureText(style[0]).width + 2 * line, line * 7);
      ctx.fillStyle = style[1];
      ctx.fillText(style[0], x1 + line, below);
    }
  });
}

const pct = (v) => `${(100 * v).toFixed(1)} %`;

function showFaces(result) {
  const body = $("faces").querySelector("tbody");
  body.replaceChildren();
  result.faces.forEach((f, n) => {
    const row = body.insertRow();
    row.insertCell().textContent = String(n + 1);
    row.insertCell().textContent = f.score === null ? "(crop mode)" : f.score.toFixed(2);
    row.insertCell().textContent = f.mask ? "yes" : "no";
    row.insertCell().textContent = pct(f.mask_area);
    const wear = row.insertCell();
    const style = verdictStyle(f.wear);
    if (style) {
      wear.textContent = f.wear.verdict === null ? `${style[0]} (${f.wear.reason})` : style[0];
      wear.className = "verdict";
      wear.style.setProperty("--verdict", style[1]);
      if (f.wear.verdict !== null) wear.title = `coverage ${pct(f.wear.coverage)}`;
    } else {
      wear.textContent = "-";
    }
  });
  $("faces").hidden = result.faces.length === 0;
  const none = result.faces.length ? "" : "No face found; the mask is empty. ";
  $("summary").textContent = `${none}${result.width} x ${result.height} px, ` +
    `${result.mode} mode${result.requested_mode === "auto" ? " (chosen by auto)" : ""}; ` +
    `mask ${pct(result.mask_area)} of the image.`;
}

function showTiming(result, roundTripMs, extra = "") {
  const t = result.timing;
  $("timing").textContent = `server ${t.total_ms.toFixed(0)} ms (decode ${t.decode_ms.toFixed(0)}, ` +
    `model ${t.inference_ms.toFixed(0)}), round trip ${roundTripMs.toFixed(0)} ms${extra}`;
}

// ------------------------------------------------------------------ photos

async function segmentBlob(blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  const mode = $("mode").value;
  const started = performance.now();
  const result = await api(`/v1/segment?mode=${mode}&mask_format=rle`, {
    method: "POST", body: form,
  });
  return { result, roundTripMs: performance.now() - started };
}

function clearResult() {
  $("photo").hidden = true;
  $("faces").hidden = true;
  $("faces").querySelector("tbody").replaceChildren();
  $("timing").textContent = "";
  $("summary").textContent = "";
  $("download").disabled = true;
  state.mask = null;
}

async function segmentPhoto(file) {
  stopCamera();
  state.stem = file.name.replace(/\.[^.]*$/, "") || "photo";
  document.body.dataset.state = "busy";
  setStatus(`Segmenting ${file.name}…`);
  clearResult(); // an error must not leave the previous photo's mask and table on show
  try {
    const [{ result, roundTripMs }, bitmap] = await Promise.all([
      segmentBlob(file, file.name),
      createImageBitmap(file).catch(() => null),
    ]);
    const mask = decodeRle(result.rle);
    const view = $("view");
    view.width = mask.width;
    view.height = mask.height;
    const ctx = view.getContext("2d");
    if (bitmap) {
      ctx.drawImage(bitmap, 0, 0, mask.width, mask.height);
    } else { // a type this browser cannot show (e.g. TIFF): the mask on grey
      ctx.fillStyle = "#777";
      ctx.fillRect(0, 0, mask.width, mask.height);
    }
    ctx.drawImage(maskCanvas(mask, TINT), 0, 0);
    drawFaces(ctx, result.faces, 1);
    $("photo").hidden = false;
    $("live").hidden = true;
    state.mask = mask;
    $("download").disabled = false;
    showFaces(result);
    showTiming(result, roundTripMs);
    setStatus(`${file.name}: ${result.faces.length} face(s).`, "ok");
    document.body.dataset.state = "done";
  } catch (err) {
    handleError(err, () => segmentPhoto(file));
  }
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) segmentPhoto(file);
});

const drop = $("drop");
["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (event) => {
  const file = event.dataTransfer.files[0];
  if (file) segmentPhoto(file);
});
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") $("file").click();
});

$("download").addEventListener("click", () => {
  const mask = state.mask;
  if (!mask) return;
  const c = maskCanvas(mask, [255, 255, 255, 255]);
  const ctx = c.getContext("2d");
  ctx.globalCompositeOperation = "destination-over"; // black behind the white mask
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, c.width, c.height);
  c.toBlob((blob) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${state.stem}_mask.png`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
});

// ------------------------------------------------------------------ webcam

// One frame in flight at a time: the next frame is sent when the previous answer is back,
// so frames go at the rate the server keeps up with.
async function cameraLoop(cam) {
  const video = $("video");
  const overlay = $("live-mask");
  const grab = document.createElement("canvas");
  let fps = 0, last = performance.now();
  while (cam.running) {
    if (video.readyState < 2 || !video.videoWidth) {
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((r) => grab.toBlob(r, "image/jpeg", 0.85));
    try {
      const { result, roundTripMs } = await segmentBlob(blob, "frame.jpg");
      if (!cam.running) break;
      const mask = decodeRle(result.rle);
      overlay.width = mask.width;
      overlay.height = mask.height;
      const ctx = overlay.getContext("2d");
      ctx.clearRect(0, 0, mask.width, mask.height);
      ctx.drawImage(maskCanvas(mask, TINT), 0, 0);
      drawFaces(ctx, result.faces, 1);
      const now = performance.now();
      fps = fps ? 0.8 * fps + 0.2 * (1000 / (now - last)) : 1000 / (now - last);
      last = now;
      showFaces(result);
      showTiming(result, roundTripMs, `, ${fps.toFixed(1)} frames/s`);
      cam.frames += 1;
      document.body.dataset.frames = String(cam.frames);
    } catch (err) {
      if (err instanceof ApiError && err.status === 503) { // busy: wait as told, go on
        await new Promise((r) => setTimeout(r, 1000 * (err.retryAfter || 1)));
        continue;
      }
      stopCamera();
      handleError(err, startCamera);
      return;
    }
  }
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("This browser gives no camera access here (it needs https or localhost).", "error");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    state.camera = { stream, running: true, frames: 0 };
    $("camera").textContent = "Stop webcam";
    $("live").hidden = false;
    $("photo").hidden = true;
    $("download").disabled = true;
    setStatus("Webcam on: frames are sent as fast as the server answers.", "ok");
    document.body.dataset.state = "live";
    cameraLoop(state.camera);
  } catch (err) {
    setStatus(`No webcam: ${err.message || err.name}`, "error");
  }
}

function stopCamera() {
  const cam = state.camera;
  if (!cam) return;
  cam.running = false;
  cam.stream.getTracks().forEach((t) => t.stop());
  $("video").srcObject = null;
  state.camera = null;
  $("camera").textContent = "Start webcam";
  setStatus("Webcam off.");
  document.body.dataset.state = "idle";
}

$("camera").addEventListener("click", () => (state.camera ? stopCamera() : startCamera()));

loadModel();
