"""Who gets to use the model, and when: the key, the upload, then a slot (or a short queue).

``Gate`` is pure ASGI in front of the ``/v1/segment`` endpoints. In order, and holding nothing
scarce until the step that needs it:

1. the API key, from the headers alone: a wrong or missing key is answered 401 at once; it
   never reads an upload into memory nor waits for a slot, so keyless clients cannot lock
   out keyed ones;
2. the body, read into memory under its own limits: the size (Content-Length, then the bytes
   as they arrive), the upload deadline and a minimum rate after a grace period (a client
   sending a byte a second is cut off after ``UPLOAD_GRACE_S``), and a bound on the bytes held
   for all requests together (``max_pending_bytes``). A refused body releases everything at
   once; slow uploads never hold a slot;
3. a slot: at most ``max_in_flight`` requests at work; the next ``queue`` wait in arrival
   order for up to ``queue_timeout_s`` (a slot that frees goes to the longest waiter), and
   only beyond that a request gets 503 with Retry-After;
4. the app, with the buffered body, and the work under its own deadline (``timeout_s`` from
   when the slot was taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from maskseg.serve.schemas import Error
from maskseg.serve.settings import API_KEY_HEADER, Settings

SEGMENT_PATH = "/v1/segment"
BATCH_PATH = "/v1/segment/batch"
MULTIPART_SLACK = 64 * 1024  # multipart framing around one image, allowed above the limit
TICKET = "maskseg.ticket"  # the request's slot ticket, in the ASGI scope
UPLOAD_GRACE_S = 5.0  # the minimum upload rate is enforced from this many seconds on
REFUSED_DRAIN_S = 1.0  # a refused body is read and dropped for at most this long
GONE = object()  # the client left before its request got a slot


def error_response(status: int, code: str, detail: str, headers: dict | None = None):
    return JSONResponse(Error(error=code, detail=detail).model_dump(), status, headers)


def key_ok(settings: Settings, given: str | None) -> bool:
    if settings.api_key is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), settings.api_key.encode())


# a 401 names the scheme it wants (RFC 9110): the key in this header
CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}


def unauthorized(given: str | None) -> tuple[int, str, str]:
    detail = f"this server needs an API key in the {API_KEY_HEADER} header" + (
        "; the one sent is wrong" if given else ""
    )
    return 401, "unauthorized", detail


# ---------------------------------------------------------------------------- slots


class Slots:
    """At most ``limit`` requests at work and up to ``queue`` more waiting, first come first
    served. A ticket is returned when its answer is sent *and* its work has ended: work that
    outlived a timed-out answer still holds its slot, so threads never pile up beyond the
    limit. Touched from the event loop's thread only."""

    def __init__(self, limit: int, queue: int = 0):
        self.limit, self.queue = limit, queue
        self.busy = 0
        self.waiting: deque[asyncio.Future] = deque()

    async def take(self, timeout_s: float, wait_s: float) -> Ticket | None:
        """A ticket for a slot, waiting in line up to ``wait_s``; None if the line is full or
        the wait ran out. ``timeout_s``: the work's deadline, counted from now."""
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
            return Ticket(self, timeout_s)
        if len(self.waiting) >= self.queue or wait_s <= 0:
            return None
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait({turn}, timeout=wait_s)
        except asyncio.CancelledError:  # the client went away while waiting
            self._leave(turn)
            raise
        if not turn.done():
            self._leave(turn)
            return None
        return Ticket(self, timeout_s)

    def _leave(self, turn: asyncio.Future) -> None:
        if turn.done() and not turn.cancelled():  # handed a slot just now: pass it on
            self.release()
            return
        turn.cancel()
        try:
            self.waiting.remove(turn)
        except ValueError:
            pass

    def release(self) -> None:
        """A slot frees: the longest waiter gets it, else it is free."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on; busy stays
                return
        self.busy -= 1


class Ticket:
    """One request's slot; ``deadline`` (time.monotonic) bounds its work."""

    def __init__(self, slots: Slots, timeout_s: float):
        self._slots = slots
        self._holds = 1
        self.timeout_s = timeout_s
        self.start = time.perf_counter()  # set to the request's arrival by Gate
        self.deadline = time.monotonic() + timeout_s

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def hold(self) -> None:
        self._holds += 1

    def drop(self) -> None:
        self._holds -= 1
        if self._holds == 0:
            self._slots.release()


# ---------------------------------------------------------------------------- the gate


class Refused(Exception):
    """An answer the gate gives instead of the app's."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


class Gate:
    """ASGI middleware in front of the segment endpoints (see the module's docstring)."""

    def __init__(self, app: Any, settings: Settings, slots: Slots):
        self.app, self.settings, self.slots = app, settings, slots
        self.pending_bytes = 0  # bodies received or being received, not yet answered

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(SEGMENT_PATH):
            return await self.app(scope, receive, send)
        arrived = time.perf_counter()
        s = self.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get(API_KEY_HEADER.lower())
        keys = sum(k.lower() == API_KEY_HEADER.lower().encode() for k, _ in scope["headers"])
        if keys > 1:  # which one counts would differ between readers: none does
            detail = f"send one {API_KEY_HEADER} header, not {keys}"
            refused = Refused(401, "unauthorized", detail, CHALLENGE)
            return await self._answer(scope, receive, send, refused, True)
        if not key_ok(s, given):
            refused = Refused(*unauthorized(given), CHALLENGE)
            return await self._answer(scope, receive, send, refused, True)
        if scope.get("method") != "POST":  # the app answers 405; there is no body to hold
            return await self.app(scope, receive, send)
        limit = s.max_batch_bytes if path == BATCH_PATH else s.max_upload_bytes + MULTIPART_SLACK
        held = [0]  # bytes of this request counted in pending_bytes
        started = [False]  # whether an answer has begun

        async def sending(message: dict) -> None:
            started[0] = started[0] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._admit(scope, receive, sending, headers, limit, arrived, held)
        except asyncio.CancelledError:
            # the server is shutting down and its grace period ran out (uvicorn cancels
            # what is left): a request still waiting or at work is told so, in JSON
            if started[0]:
                raise
            detail = f"the server is shutting down; retry in {s.retry_after_s} s"
            refused = Refused(503, "shutting_down", detail, {"Retry-After": str(s.retry_after_s)})
            await self._answer(scope, receive, send, refused, drain=False)
        finally:  # on every path: answered, refused, the client gone, or an error
            self.pending_bytes -= held[0]

    async def _admit(self, scope, receive, send, headers, limit, arrived, held) -> None:
        s = self.settings
        body = None
        try:
            try:
                declared = int(headers.get("content-length", "0"))
            except ValueError:
                declared = 0
            if declared > limit:  # not read: the client is told at once and the socket closed
                raise Refused(*self._too_large(limit))
            self._reserve(declared, held)
            body = await self._read_body(receive, limit, held)
            if body is None:
                return  # the client went away
            if not body:
                raise Refused(
                    400,
                    "empty_upload",
                    "the request has no body: send the image as the multipart form field 'file'",
                )
            queued = time.monotonic()
            ticket = await self._take_unless_gone(receive)
            if ticket is GONE:
                return  # the client left while its request waited: nobody to answer
            if ticket is None:
                if time.monotonic() - queued >= s.queue_timeout_s > 0 and s.queue:
                    line = f"waited {s.queue_timeout_s:g} s in line"
                else:  # refused at once
                    line = f"the line of {s.queue} is full" if s.queue else "there is no line"
                detail = (
                    f"all {s.max_in_flight} request slots are in use and "
                    f"{len(self.slots.waiting)} requests wait; {line}; "
                    f"retry in {s.retry_after_s} s"
                )
                raise Refused(503, "busy", detail, {"Retry-After": str(s.retry_after_s)})
        except Refused as refused:
            # a body refused for its size or pace is not read on; one refused unread is
            unread = body is None and refused.status not in (408, 413)
            return await self._answer(scope, receive, send, refused, drain=unread)
        try:
            ticket.start = arrived
            scope[TICKET] = ticket
            sent = False

            async def replay() -> dict:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # e.g. a response listening for the disconnect

            await self.app(scope, replay, send)
        finally:
            ticket.drop()

    async def _take_unless_gone(self, receive: Callable) -> Ticket | None | object:
        """A slot (``Slots.take``), or ``GONE`` when the client disconnects first: a request
        whose client has left gives up its place in line, and the slot it may have been
        handed goes on, so clients that send and hang up cannot fill the line with work
        nobody waits for. The whole body has been read, so the next message is the
        disconnect."""
        s = self.settings
        take = asyncio.ensure_future(self.slots.take(s.timeout_s, s.queue_timeout_s))
        gone = asyncio.ensure_future(receive())
        try:
            await asyncio.wait({take, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            take.cancel()
            gone.cancel()
            raise
        if gone.done() and not gone.cancelled() and gone.result()["type"] == "http.disconnect":
            if take.done():
                if take.result() is not None:
                    take.result().drop()
            else:
                take.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await take
            return GONE
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone
        return await take

    def _too_large(self, limit: int) -> tuple[int, str, str]:
        detail = (
            f"the request body is over this server's limit of {limit:,} bytes "
            f"(images up to {self.settings.max_upload_bytes:,} bytes)"
        )
        return 413, "upload_too_large", detail

    def _reserve(self, n: int, held: list[int]) -> None:
        """Count ``n`` more bytes as held (in ``held[0]`` too); 503 when all uploads together
        would exceed the server's budget."""
        s = self.settings
        if n and self.pending_bytes + n > s.max_pending_bytes:
            raise Refused(
                503,
                "busy",
                f"the server holds {self.pending_bytes:,} bytes of "
                f"uploads, and takes at most {s.max_pending_bytes:,}; retry in "
                f"{s.retry_after_s} s",
                {"Retry-After": str(s.retry_after_s)},
            )
        self.pending_bytes += n
        held[0] += n

    async def _read_body(self, receive: Callable, limit: int, held: list[int]) -> bytes | None:
        """The whole body; None if the client left."""
        s = self.settings
        start = time.monotonic()
        deadline = start + s.upload_timeout_s
        chunks: list[bytes] = []
        received = 0
        while True:
            now = time.monotonic()
            # the rate rule: by time t, min_rate * (t - start - grace) bytes must have come
            slow_at = start + UPLOAD_GRACE_S + received / s.min_upload_rate
            if now >= deadline:
                raise Refused(
                    408,
                    "request_timeout",
                    f"the upload did not complete within {s.upload_timeout_s:g} s",
                )
            if now >= slow_at:
                raise Refused(
                    408,
                    "upload_too_slow",
                    f"the upload is slower than this server's "
                    f"minimum of {s.min_upload_rate:,} bytes/s",
                )
            try:
                message = await asyncio.wait_for(receive(), min(deadline, slow_at) - now)
            except asyncio.TimeoutError:
                continue  # the checks above answer
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise Refused(*self._too_large(limit))
            if received > held[0]:  # chunked, or more than declared: count what came
                self._reserve(received - held[0], held)
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer(self, scope, receive, send, refused: Refused, drain: bool) -> None:
        """Answer with the error and close the connection. A body not yet read is read (and
        dropped) first, for at most ``REFUSED_DRAIN_S`` and holding no slot: closing a socket
        with unread bytes in it makes the kernel reset the connection, and the client may
        then see a reset instead of this answer."""
        if drain:
            await drain_body(receive, self.settings.max_batch_bytes, REFUSED_DRAIN_S)
        headers = {**refused.headers, "Connection": "close"}
        await error_response(refused.status, refused.code, refused.detail, headers)(
            scope, receive, send
        )


async def drain_body(receive: Callable, limit: int, seconds: float) -> None:
    """Read and drop a request body until it ends, ``limit`` bytes or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    received = 0
    while received <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return  # the client went away
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
