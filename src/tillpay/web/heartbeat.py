"""``POST /monitor/api/heartbeat/isv``: read a bounded body and hand it to the heartbeat dialect."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tillpay.protocols.heartbeat import gateway as heartbeat
from tillpay.services.platform import Platform


async def heartbeat_api(request: Request) -> Response:
    """Terminal heartbeats (docs/heartbeat.md); the body is read up to ``MAX_BODY`` bytes and no more."""
    p: Platform = request.app.state.platform
    answer = await _read_and_handle(p, request)
    return Response(answer.body, status_code=answer.status, media_type="application/json")


async def _read_and_handle(p: Platform, request: Request) -> heartbeat.Answer:
    length = request.headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) > heartbeat.MAX_BODY):
        return heartbeat.TOO_LARGE
    body = bytearray()
    # A chunked body has no length up front: stop reading as soon as it passes the limit.
    async for chunk in request.stream():
        body += chunk
        if len(body) > heartbeat.MAX_BODY:
            return heartbeat.TOO_LARGE
    return await heartbeat.handle(p, request.headers, bytes(body))
