"""The ASGI application: the gateway dialects, the wallet app, and the operator's health, readiness and
metrics endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import re
import signal
from collections.abc import AsyncIterator

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tillpay import __version__, shutdown
from tillpay.domain.errors import TillpayError
from tillpay.protocols.antom import gateway as antom
from tillpay.protocols.heartbeat.gateway import PATH as HEARTBEAT_PATH
from tillpay.protocols.mapi import gateway as mapi
from tillpay.protocols.mapi.codes import mapi_error
from tillpay.protocols.mapi.wire import Envelope, charset_label, decode_params
from tillpay.protocols.openapi import gateway as openapi
from tillpay.protocols.openapi.wire import raw_keys
from tillpay.services import payments, testmode
from tillpay.services.platform import Platform
from tillpay.web import metrics, settlement_api
from tillpay.web.console import console_routes
from tillpay.web.heartbeat import heartbeat_api
from tillpay.web.limits import BodyLimit
from tillpay.web.ready import ready
from tillpay.web.wallet import wallet_routes
from tillpay.worker import runner

log = structlog.get_logger("tillpay.web")


def _xml(env: Envelope, codec: str) -> Response:
    return Response(env.to_xml(codec), media_type=f"text/xml; charset={charset_label(codec)}")


async def gateway(request: Request) -> Response:
    """``/gateway.do``: ``service=`` selects MAPI, ``method=`` (without ``service=``) the Open Platform."""
    p: Platform = request.app.state.platform
    query = request.scope.get("query_string", b"")
    body = await request.body() if request.method == "POST" else b""
    keys = raw_keys(query, body)
    if b"method" in keys and b"service" not in keys:
        # Open Platform answers are always HTTP 200: alipay-sdk-python raises on any other status.
        content, media_type = await openapi.handle(p, query, body)
        found = _APP_ID.search(query) or _APP_ID.search(body)
        mode = await _mode(p, "app_id", found.group(1).decode("ascii") if found else None)
        return Response(content, media_type=media_type, headers=mode)
    try:
        params, codec = decode_params(query, body)
    except TillpayError as e:
        # Not decodable: nothing can be echoed or signed.
        return _xml(Envelope(False, error=mapi_error(e.code)[0], detail=e.detail), "utf-8")
    env = await mapi.handle(p, params, codec)
    answer = _xml(env, codec)
    answer.headers.update(await _mode(p, "partner", params.get("partner")))
    return answer


_PARTNER = re.compile(r"2088\d{12}")
#: ``app_id=`` in an Open Platform form (app ids are digits: no decoding needed to read one).
_APP_ID = re.compile(rb"(?:^|&)app_id=(\d{1,32})(?:&|$)")


async def _mode(p: Platform, credential: str, value: str | None) -> dict[str, str]:
    """``X-Tillpay-Mode: test`` when the request names a test merchant (docs/sandbox.md); the header is
    outside what MAPI and the Open Platform sign (they sign the body's fields)."""
    # Only well-formed ids are looked up: whatever else a request carries never reaches the database here.
    if not value or not (_PARTNER.fullmatch(value) if credential == "partner" else value.isdigit()):
        return {}
    try:
        merchant = (
            await p.merchant_by_partner(value)
            if credential == "partner"
            else await p.merchant_by_credential(credential, value)
        )
    except TillpayError:
        return {}
    except Exception:
        # The database is unreachable: the dialect's own answer (a refusal telling the till to send the
        # request again) stands as it is, without the mark.
        return {}
    return testmode.mode_headers(merchant)


async def antom_api(request: Request) -> Response:
    """``POST /ams/api/v1/payments/{op}``: the Antom in-store dialect."""
    p: Platform = request.app.state.platform
    body = await request.body()
    answer = await antom.handle(p, request.path_params["op"], request.scope["path"], request.headers, body)
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


_TRADE_NO = re.compile(r"\d{16,64}")


@functools.lru_cache(maxsize=256)
def _qr_png(text: str) -> bytes:
    import qrcode  # a dependency of python-escpos too; imported here, off the pay path

    out = io.BytesIO()
    qrcode.make(text, box_size=8, border=4).save(out)  # PNG, the image kind's default
    return out.getvalue()


async def qr_picture(request: Request) -> Response:
    """``/qr/{trade_no}.png``: the precreate order's QR code as a picture (MAPI ``pic_url``)."""
    p: Platform = request.app.state.platform
    trade_no = request.path_params["trade_no"]
    if not _TRADE_NO.fullmatch(trade_no):
        return Response("not found", status_code=404)
    try:
        view = await payments.payment_by_trade_no(p, trade_no)
    except TillpayError:
        view = None
    if view is None or view.kind != "precreate":
        return Response("not found", status_code=404)
    png = await asyncio.to_thread(_qr_png, payments.qr_url(p, trade_no))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


async def health(request: Request) -> Response:
    """Liveness, version and mode (``production`` or ``sandbox``)."""
    p: Platform = request.app.state.platform
    return JSONResponse({"status": "ok", "version": __version__, "mode": p.settings.mode})


def create_app(platform: Platform, *, worker: bool | None = None) -> Starlette:
    """The Tillpay ASGI app over ``platform``; runs the embedded worker unless told not to."""
    run_worker = platform.settings.embedded_worker if worker is None else worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if shutdown.requested():
            # A SIGTERM came while uvicorn was starting, before its own handler: hand it over now.
            signal.raise_signal(signal.SIGTERM)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(platform, stop)) if run_worker else None
        try:
            yield
        finally:
            stop.set()
            if task:
                await task
            await platform.close()
            metrics.forget_this_process()

    routes = [
        Route("/gateway.do", gateway, methods=["GET", "POST"]),
        Route(antom.PREFIX + "{op}", antom_api, methods=["POST"]),
        Route(antom.SANDBOX_PREFIX + "{op}", antom_api, methods=["POST"]),
        Route("/qr/{trade_no}.png", qr_picture),
        Route("/health", health),
        Route("/ready", ready),
        Route("/metrics", metrics.metrics_endpoint),
        Route(HEARTBEAT_PATH, heartbeat_api, methods=["POST"]),
        *wallet_routes(sandbox=platform.settings.sandbox),
        *settlement_api.routes,
        *console_routes(sandbox=platform.settings.sandbox),
    ]
    if platform.settings.bench_routes:
        from tillpay.bench.noop import noop

        routes.append(Route("/bench/noop", noop, methods=["POST"]))
    limit = Middleware(
        BodyLimit,
        max_bytes=platform.settings.max_body_bytes,
        timeout=platform.settings.body_timeout_seconds,
    )
    # Outermost: the request id is set before anything logs, and the time includes the body limit's wait.
    observe = Middleware(metrics.Observe, platform=platform)
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[observe, limit])
    app.state.platform = platform
    app.state.risk_tally = metrics.RiskTally()
    return app
