"""Connections that cannot starve the server: uvicorn's HTTP/1.1 protocol with two bounds.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a connection
that never sends a request, or sends its head a byte at a time, stays open for ever; and its
``limit_concurrency`` answers *every* request, ``/health`` included, with a plain-text 503 once
that many connections are open, idle ones included. ``GuardedH11Protocol`` instead:

- gives a connection ``header_timeout_s`` to send a whole request head, from when it opens
  and again after each answer (a partial head then gets a JSON 408; silence is just closed);
- answers a connection beyond ``max_connections`` with a JSON 503 and closes it, so those
  already open are served as usual.

Request bodies and the model's slots are bounded by ``maskseg.serve.admission.Gate``.
"""

from __future__ import annotations

import asyncio
import json
from functools import lru_cache

from uvicorn.protocols.http.h11_impl import H11Protocol

from maskseg.serve.settings import Settings


def raw_error(status: int, reason: str, code: str, detail: str, retry_after: int | None = None):
    """A whole HTTP/1.1 error answer as bytes, JSON like every other error of the API."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    extra = f"Retry-After: {retry_after}\r\n" if retry_after else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


@lru_cache(maxsize=1)
def _env_settings() -> Settings:
    return Settings.from_env()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a JSON connection cap.

    ``settings`` None: read from the environment, where ``maskseg.serve.app.run`` puts them
    (uvicorn's worker processes import this class by name). ``for_settings`` makes a
    subclass bound to given settings, for a server started in-process.
    """

    settings: Settings | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> type[GuardedH11Protocol]:
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings or _env_settings()
        self._head_timeout_s = s.header_timeout_s
        self._max_connections = s.max_connections
        self._retry_after = s.retry_after_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request head have come, the head has not

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections:
            transport.write(
                raw_error(
                    503,
                    "Service Unavailable",
                    "too_many_connections",
                    f"the server has {self._max_connections} connections "
                    f"open; retry in {self._retry_after} s",
                    self._retry_after,
                )
            )
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request head was complete
            self._disarm()
            self._partial = False
        elif self._head_timer is not None and data:
            self._partial = True

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is cycle and not self.transport.is_closing():
            self._arm()  # the next request's head has its own deadline

    def _arm(self) -> None:
        self._disarm()
        self._partial = False
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being handled: its own deadlines apply
        if self._partial:
            self.transport.write(
                raw_error(
                    408,
                    "Request Timeout",
                    "request_timeout",
                    f"the request head did not arrive within {self._head_timeout_s:g} s",
                )
            )
        self.transport.close()
