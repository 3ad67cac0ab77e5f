"""The ASGI application: the gateway dialects and the operator's health endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tillpay import __version__
from tillpay.domain.errors import TillpayError
from tillpay.domain.money import format_amount
from tillpay.protocols.mapi import gateway as mapi
from tillpay.protocols.mapi.codes import mapi_error
from tillpay.protocols.mapi.wire import Envelope, charset_label, decode_params
from tillpay.services import payments
from tillpay.services.platform import Platform
from tillpay.web import settlement_api
from tillpay.worker import runner

log = structlog.get_logger("tillpay.web")


def _xml(env: Envelope, codec: str) -> Response:
    return Response(env.to_xml(codec), media_type=f"text/xml; charset={charset_label(codec)}")


async def gateway(request: Request) -> Response:
    """``/gateway.do``: ``service=`` selects MAPI (``method=``, the Open Platform, is not served yet)."""
    p: Platform = request.app.state.platform
    query = request.scope.get("query_string", b"")
    body = await request.body() if request.method == "POST" else b""
    try:
        params, codec = decode_params(query, body)
    except TillpayError as e:
        # Not decodable: nothing can be echoed or signed.
        return _xml(Envelope(False, error=mapi_error(e.code)[0], detail=e.detail), "utf-8")
    env = await mapi.handle(p, params, codec)
    return _xml(env, codec)


async def health(request: Request) -> Response:
    """Liveness and version."""
    return JSONResponse({"status": "ok", "version": __version__})


async def qr_order(request: Request) -> Response:
    """What a merchant-presented QR code opens: the order, and how to pay it from the wallet."""
    p: Platform = request.app.state.platform
    try:
        v = await payments.payment_by_trade_no(p, request.path_params["trade_no"])
    except TillpayError:
        return HTMLResponse("<h1>Order not found</h1>", status_code=404)
    amount = f"{format_amount(v.price_amount, v.price_currency)} {v.price_currency}"
    body = (
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>Tillpay order</title><h1>{html.escape(v.subject)}</h1><p>{html.escape(amount)}</p>"
        f"<p>Status: {html.escape(v.status.value)}</p>"
        f"<p>Pay it from a wallet: <code>tillpay wallet pay-qr {html.escape(v.trade_no)} --login LOGIN "
        "--pin PIN</code></p>"
    )
    return HTMLResponse(body)


def create_app(platform: Platform, *, worker: bool | None = None) -> Starlette:
    """The Tillpay ASGI app over ``platform``; runs the embedded worker unless told not to."""
    run_worker = platform.settings.embedded_worker if worker is None else worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(platform, stop)) if run_worker else None
        try:
            yield
        finally:
            stop.set()
            if task:
                await task
            await platform.close()

    app = Starlette(
        routes=[
            Route("/gateway.do", gateway, methods=["GET", "POST"]),
            Route("/health", health),
            Route("/wallet/qr/{trade_no}", qr_order),
            *settlement_api.routes,
        ],
        lifespan=lifespan,
    )
    app.state.platform = platform
    return app
