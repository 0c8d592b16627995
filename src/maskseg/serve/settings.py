"""The service's settings: one frozen dataclass, built by the CLI (or by hand), passed down.

Worker processes (``--workers N``) rebuild it from the environment, where ``run`` puts it as
JSON; the API key may come from the environment alone, so it never has to be typed on a
command line that other users can see in the process list.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
from dataclasses import dataclass

from maskseg.pipeline.scene_config import SCENE_SCORE_THRESHOLD

API_KEY_ENV = "MASKSEG_API_KEY"
SETTINGS_ENV = "MASKSEG_SERVE_SETTINGS"  # how run() hands the settings to worker processes
API_KEY_HEADER = "X-API-Key"
MB = 1_000_000


@dataclass(frozen=True)
class Settings:
    """How ``maskseg serve`` runs.

    Attributes:
        host, port: where uvicorn listens.
        model: a shipped model name or a model file (None: the shipped default).
        backend: "auto", "onnx" or "torch" (as ``Predictor.load``).
        threads: runtime threads per inference call (0: the runtime's default). With several
            requests in flight on few cores, 1 avoids threads fighting over the same cores.
        workers: uvicorn worker processes; each loads the model once and has its own
            in-flight limit.
        detector: the face detector of scene mode.
        detect_threshold: its minimum detection score (``predict --detect-threshold``); a
            request may ask for another with ``?detect_threshold=``.
        api_key: when set, every /v1 request must send it in the X-API-Key header.
        max_upload_bytes: largest request body of the single-image endpoints (the image plus
            a few KB of multipart framing); each file of a batch is held to it too.
        max_batch_bytes: largest request body of the batch endpoint.
        max_batch_files: most images in one batch request.
        max_pixels: images with more pixels are refused before decoding (decompression bombs).
        max_in_flight: requests segmented at once (each holds a slot from when its body has
            arrived until its work ends).
        queue: requests whose body has arrived that may wait for a slot, in arrival order;
            beyond them a request gets 503 with Retry-After.
        queue_timeout_s: the longest wait in that line before a 503.
        timeout_s: the work's deadline, from when the request got its slot: a request not
            answered by then gets 504, and its work stops at the next stage.
        upload_timeout_s: the whole upload must arrive within this, from the request's head.
        min_upload_rate: bytes/s an upload must average after its first few seconds
            (``maskseg.serve.admission.UPLOAD_GRACE_S``); slower ones get 408.
        max_pending_bytes: request bodies held in memory at once, all requests together
            (being received, waiting or at work); beyond it a new upload gets 503.
        retry_after_s: the Retry-After sent with a 503.
        header_timeout_s: a connection must send a whole request head within this, from when
            it opens and after each answer (slow-header attacks); idle keep-alive
            connections are closed after ``keep_alive_s``.
        keep_alive_s: uvicorn's keep-alive timeout.
        max_connections: open connections; one more is answered 503 (JSON) and closed.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    backend: str = "auto"
    threads: int = 0
    workers: int = 1
    detector: str = "blazeface"
    detect_threshold: float = SCENE_SCORE_THRESHOLD
    api_key: str | None = None
    max_upload_bytes: int = 10 * MB
    max_batch_bytes: int = 40 * MB
    max_batch_files: int = 16
    max_pixels: int = 50_000_000
    max_in_flight: int = 4
    queue: int = 32
    queue_timeout_s: float = 10.0
    timeout_s: float = 30.0
    upload_timeout_s: float = 30.0
    min_upload_rate: int = 20_000
    max_pending_bytes: int = 400 * MB
    retry_after_s: int = 1
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_connections: int = 512

    def __post_init__(self):
        for name in (
            "max_upload_bytes",
            "max_batch_bytes",
            "max_batch_files",
            "max_pixels",
            "max_in_flight",
            "workers",
            "max_connections",
            "min_upload_rate",
            "max_pending_bytes",
            "keep_alive_s",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("timeout_s", "upload_timeout_s", "header_timeout_s"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0-65535, got {self.port}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: the runtime's default), got {self.threads}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        if not 0 <= self.detect_threshold <= 1:
            raise ValueError(f"detect_threshold must be in [0, 1], got {self.detect_threshold}")
        if self.queue < 0 or not 0 <= self.queue_timeout_s < math.inf:
            raise ValueError("queue and queue_timeout_s must be >= 0")
        if self.max_pending_bytes < self.max_batch_bytes:
            raise ValueError(
                f"max_pending_bytes ({self.max_pending_bytes:,}) must hold at "
                f"least one batch ({self.max_batch_bytes:,} bytes)"
            )
        if self.api_key is not None:
            if not self.api_key.strip():
                raise ValueError("the API key is empty; give a non-empty key or none")
            if self.api_key != self.api_key.strip():
                raise ValueError(
                    "the API key starts or ends with white space, which HTTP strips from "
                    "headers: no request could match it"
                )
            if not (self.api_key.isascii() and self.api_key.isprintable()):
                raise ValueError(
                    "the API key must be printable ASCII: HTTP headers carry "
                    "ASCII, so any other key could never match"
                )

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Settings from ``MASKSEG_SERVE_SETTINGS`` (JSON, as ``run`` writes it) and the API
        key from ``MASKSEG_API_KEY`` unless given; ``overrides`` win over both."""
        values = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        if values.get("api_key") is None and os.environ.get(API_KEY_ENV):
            values["api_key"] = os.environ[API_KEY_ENV]
        return cls(**{**values, **overrides})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @property
    def loopback(self) -> bool:
        """Whether the server is reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: assume others can reach it
            return False
