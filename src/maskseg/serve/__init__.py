"""maskseg as a service: an HTTP API and a web page (``maskseg serve``; the ``serve`` extra).

    from maskseg.serve import Settings, create_app
    app = create_app(Settings(api_key="..."))     # any ASGI server; the model loads at start-up

``import maskseg.serve`` loads neither FastAPI nor a model: both come with ``create_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maskseg.serve.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Settings", "create_app", "run"]


def create_app(settings: Settings | None = None, predictor=None) -> FastAPI:
    """See ``maskseg.serve.app.create_app``."""
    from maskseg.serve.app import create_app as _create_app

    return _create_app(settings, predictor)


def run(settings: Settings) -> None:
    """See ``maskseg.serve.app.run``."""
    from maskseg.serve.app import run as _run

    _run(settings)
