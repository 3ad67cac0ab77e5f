"""Request limits the server enforces itself: body size while it streams in, and read deadlines.

``BodyLimit`` wraps the ASGI app: a ``Content-Length`` above ``max_body_bytes`` is answered 413 before
a byte of the body is read; otherwise the body is counted as it arrives and the request ends with 413
as soon as it passes the limit, so a large POST costs the server at most the limit in memory. The
whole body must arrive within ``body_timeout_seconds`` (uvicorn has no body timeout), else 408.

``TimedHttpToolsProtocol`` is uvicorn's httptools protocol (the C parser, llhttp) with a header
deadline and a head size limit: a connection that has not sent a complete request head within
``header_timeout_seconds`` of connecting (or of starting its next request) is closed, and a head above
``max_header_bytes`` is answered 400 and closed. ``tillpay serve`` runs uvicorn with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tillpay.protocols.heartbeat.gateway import PATH as HEARTBEAT_PATH


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _answer(path: str, status: int, message: str) -> tuple[bytes, bytes]:
    """The refusal in the shape the route's clients read: Antom and heartbeat JSON, MAPI XML, or text."""
    if path.startswith("/ams/api/") or path == HEARTBEAT_PATH:
        code = "PARAM_ILLEGAL" if status == 413 else "REQUEST_TIMEOUT"
        body = {"result": {"resultCode": code, "resultStatus": "F", "resultMessage": message}}
        return json.dumps(body).encode(), b"application/json"
    if path == "/gateway.do":
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>'
            "<alipay><is_success>F</is_success><error>ILLEGAL_ARGUMENT</error></alipay>"
        )
        return xml.encode(), b"text/xml; charset=utf-8"
    return message.encode(), b"text/plain; charset=utf-8"


def _origin_form(scope: Scope) -> Scope:
    """The request target as a path, when a client sent the absolute form (``POST https://host/path``).

    A server must accept the absolute form (RFC 9112 §3.2.2), and global-open-sdk-python sends it.
    uvicorn's httptools protocol, which ``tillpay serve`` runs, already gives the path; this keeps any
    other server in front of the app right.
    """
    path = scope.get("path", "")
    if not path.startswith(("http://", "https://")):
        return scope
    target = urlsplit(path)
    raw = urlsplit(scope.get("raw_path", b"").decode("latin-1"))
    return {**scope, "path": target.path or "/", "raw_path": (raw.path or "/").encode("latin-1")}


class BodyLimit:
    """ASGI middleware: body size counted while streaming, and a deadline for the whole body."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:  # float-ok: seconds
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = _origin_form(scope)
        path = scope.get("path", "")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(send, path, 413, f"the body is larger than {self.max_bytes} bytes")
                    return
        seen = 0
        deadline = time.monotonic() + self.timeout
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(left, 0.001))
            except TimeoutError:
                raise _TooSlow() from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (_TooLarge, _TooSlow) as e:
            if started:
                raise
            if isinstance(e, _TooLarge):
                await self._refuse(send, path, 413, f"the body is larger than {self.max_bytes} bytes")
            else:
                await self._refuse(send, path, 408, "the body did not arrive in time")

    @staticmethod
    async def _refuse(send: Send, path: str, status: int, message: str) -> None:
        body, media_type = _answer(path, status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", media_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _header_timeout() -> float:  # float-ok: seconds
    try:
        return float(os.environ.get("TILLPAY_HEADER_TIMEOUT_SECONDS", "10"))
    except ValueError:
        return 10.0


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request head is not complete in time and
    refusing (400) a head larger than uvicorn's ``h11_max_incomplete_event_size`` (``max_header_bytes``).

    llhttp has no head size limit of its own and httptools gathers a header line until it ends, so the
    bytes received while a head is incomplete are counted here: h11 refuses the same heads.

    Clients this was checked with: the three Alipay SDKs in tests/sdk (python-alipay-sdk, alipay-sdk-python,
    and global-open-sdk-python, whose ``http.client`` sends absolute-form targets, ``POST
    http://host/path``, which llhttp hands over as the path) and the public MAPI clients' rules in
    tests/mapi_reference.py.
    """

    header_timeout = _header_timeout()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._arm()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting_for_head()
        if waiting:
            self._arm()  # the first bytes of a (next) request start its head's clock
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()
            self._head_bytes = 0
        elif waiting and self._head_bytes > self._limit():
            if not self.transport.is_closing():
                self.send_400_response("Request head too large.")

    def _limit(self) -> int:
        return self.config.h11_max_incomplete_event_size or _MAX_HEAD

    # The parser's callbacks: the parsed head's size (a head that arrives whole in one read never looks
    # incomplete above). An error raised here makes httptools refuse the request, answered 400.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parsed_head = 0

    def on_url(self, url: bytes) -> None:
        self._parsed_head += len(url)
        if self._parsed_head > self._limit():
            raise _HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head += len(name) + len(value) + 4  # ": " and the line end
        if self._parsed_head > self._limit():
            raise _HeadTooLarge
        super().on_header(name, value)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()


class _HeadTooLarge(Exception):
    """A request head above the limit (raised inside the parser, which then refuses the request)."""


#: The head size limit when the server was started without one (h11's own default).
_MAX_HEAD = 16 * 1024
