"""``maskseg serve``: the HTTP API and web page (the ``serve`` extra)."""

from __future__ import annotations

import argparse

from maskseg.cli.common import AddCommand


def cmd_serve(a: argparse.Namespace) -> int:
    import os

    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: uploads)
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"maskseg serve needs the serve extra ({exc.name} is missing): "
            "pip install 'maskseg[serve]'"
        ) from None
    from maskseg.serve import Settings, run
    from maskseg.serve.settings import API_KEY_ENV, MB

    settings = Settings(
        host=a.host,
        port=a.port,
        model=a.model,
        backend=a.backend,
        threads=a.threads,
        workers=a.workers,
        detect_threshold=a.detect_threshold,
        # an empty --api-key (an unset variable in "$KEY") is refused by Settings, not
        # taken for "no key"; the environment's key counts only when no flag is given
        api_key=a.api_key if a.api_key is not None else os.environ.get(API_KEY_ENV) or None,
        max_upload_bytes=int(a.max_upload_mb * MB),
        max_batch_bytes=int(a.max_batch_mb * MB),
        max_batch_files=a.max_batch_files,
        max_pixels=a.max_pixels,
        max_in_flight=a.max_in_flight,
        queue=a.queue,
        queue_timeout_s=a.queue_timeout,
        timeout_s=a.timeout,
        upload_timeout_s=a.upload_timeout,
        min_upload_rate=int(a.min_upload_rate * 1000),
        max_pending_bytes=int(a.max_pending_mb * MB),
        retry_after_s=a.retry_after,
        header_timeout_s=a.header_timeout,
        keep_alive_s=a.keep_alive,
        max_connections=a.max_connections,
    )
    from maskseg.pipeline.predictor import resolve_model_path

    # a model that is not there fails here in one line, not in each worker's start-up
    resolve_model_path(settings.model, settings.backend)
    run(settings)
    return 0


def add_serve(add: AddCommand) -> None:
    from maskseg.serve.settings import MB
    from maskseg.serve.settings import Settings as ServeSettings

    d = ServeSettings()  # the defaults, in one place (no web framework imported here)
    p = add(
        "serve",
        "HTTP API and web page: upload photos (or use a webcam), get masks back "
        "(needs maskseg[serve])",
    )
    p.add_argument(
        "--host", default=d.host, help="address to listen on (0.0.0.0: all; then set an API key)"
    )
    p.add_argument("--port", type=int, default=d.port, help="port")
    p.add_argument(
        "--model", help="shipped model name or model file; default: the shipped unet-msfd"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="inference runtime (as for predict)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="worker processes, each with its own copy of the model and its own --max-in-flight",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="runtime threads per inference (0: the runtime's default)",
    )
    p.add_argument(
        "--detect-threshold",
        type=float,
        default=d.detect_threshold,
        help="minimum face detection score of scene mode (as for predict --scene); a request "
        "may ask for another with ?detect_threshold=",
    )
    p.add_argument(
        "--api-key",
        help="require this key in the X-API-Key header of /v1 "
        "requests (or set MASKSEG_API_KEY, which keeps it out of the process "
        "list)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / MB,
        help="largest upload of one image, MB",
    )
    p.add_argument(
        "--max-batch-mb",
        type=float,
        default=d.max_batch_bytes / MB,
        help="largest batch request, MB",
    )
    p.add_argument(
        "--max-batch-files",
        type=int,
        default=d.max_batch_files,
        help="most images in one batch request",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=d.max_pixels,
        help="larger images are refused before decoding (decompression bombs)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=d.max_in_flight,
        help="requests segmented at once per worker (each from when its upload has arrived)",
    )
    p.add_argument(
        "--queue",
        type=int,
        default=d.queue,
        help="requests that may wait for a slot, in arrival order; more get 503 with Retry-After",
    )
    p.add_argument(
        "--queue-timeout",
        type=float,
        default=d.queue_timeout_s,
        help="seconds a request may wait in that line",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=d.timeout_s,
        help="seconds of work per request, from when it gets its slot (504 "
        "after, and the work stops)",
    )
    p.add_argument(
        "--upload-timeout",
        type=float,
        default=d.upload_timeout_s,
        help="seconds for the whole upload (408 after)",
    )
    p.add_argument(
        "--min-upload-rate",
        type=float,
        default=d.min_upload_rate / 1000,
        help="kB/s an upload must average after its first 5 s (408 below)",
    )
    p.add_argument(
        "--max-pending-mb",
        type=float,
        default=d.max_pending_bytes / MB,
        help="MB of uploads held, all requests together (503 beyond)",
    )
    p.add_argument(
        "--retry-after",
        type=int,
        default=d.retry_after_s,
        help="seconds a 503 asks the client to wait",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=d.header_timeout_s,
        help="seconds a connection has to send a request head",
    )
    p.add_argument(
        "--keep-alive",
        type=int,
        default=d.keep_alive_s,
        help="seconds an idle keep-alive connection stays open",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="open connections; one more gets 503 and is closed",
    )
    p.set_defaults(func=cmd_serve)


COMMANDS = {"serve": add_serve}
