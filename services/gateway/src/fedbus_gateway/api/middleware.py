"""Checks at the edge, before routing, authentication or the route reading the body."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimitMiddleware", "BodyTooLargeError", "too_large"]


class BodyTooLargeError(HTTPException):
    """413: the request body grew past the limit while it was being read.

    An ``HTTPException``, so FastAPI's body reader passes it on (it turns any other error
    into a 400) and the app's handler answers it with the usual ``{"detail": ...}``.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large(max_bytes))


def too_large(max_bytes: int) -> str:
    """The ``detail`` of a 413."""
    return f"the request body is larger than the limit of {max_bytes} bytes"


class BodyLimitMiddleware:
    """Refuse a request body larger than ``max_bytes`` with 413 and ``{"detail": ...}``.

    A declared ``Content-Length`` over the limit is answered at once, without calling the
    app (so no authentication work) and without reading a byte of the body. A body without
    one (``Transfer-Encoding: chunked``) is counted as the app pulls it: the read that
    crosses the limit stops the request, and the client gets 413 unless a response had
    already started. A pure ASGI middleware, so streaming responses (SSE) pass untouched.

    The connection is not closed after a 413: closing a socket with unread bytes resets it,
    and the reset can destroy the answer before the client reads it. The server (uvicorn)
    discards the rest of the body as it arrives instead, without handing it to the app, so a
    client that sends it all before reading gets the 413, and one that reads while sending
    (curl) can stop at once.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        pulled = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal pulled
            message = await receive()
            if message["type"] == "http.request":
                pulled += len(message.get("body", b""))
                if pulled > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLargeError:
            # Only reached when nothing inside answered it (the app's handler usually does).
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {"detail": too_large(self.max_bytes)}
        await JSONResponse(body, status_code=413)(scope, receive, send)
