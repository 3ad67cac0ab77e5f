"""The customer's wallet web app under ``/wallet``: server-rendered pages, a JSON API and live updates.

Security rules every handler keeps:
- the session cookie is HttpOnly, SameSite=Lax, path ``/wallet``, and Secure whenever the app is
  reached over https (directly or as configured in ``public_url``);
- every POST carries a CSRF token (the session's own, or before sign-in a double-submit cookie) and,
  when the browser sends an Origin header, it must be this server's;
- every lookup is scoped by the signed-in user (``services.wallet_app``), so changing an id in a URL
  finds nothing of another user's;
- pages load scripts, styles and images from this server only (Content-Security-Policy ``'self'``);
- the service worker (``/wallet/sw.js``, scope ``/wallet/``) keeps for offline use only the GET pages
  this module marks with ``OFFLINE_HEADER`` (the signed-in user's own home, code, history and payment
  pages); never the sign-in page, a form's answer or an error, and the page script empties that cache on
  sign-out.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tillpay.domain import paycode
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import InvalidAmount, UnknownCurrency, parse_amount
from tillpay.domain.payment import Status
from tillpay.services import payments, wallet_app, wallets
from tillpay.services.platform import Platform
from tillpay.services.wallet_app import Session
from tillpay.web import kit
from tillpay.web.wallet import i18n

log = structlog.get_logger("tillpay.wallet")

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

SITE = kit.Site(prefix="/wallet", session_cookie="tp_session", csrf_cookie="tp_csrf", samesite="lax")
SESSION_COOKIE = SITE.session_cookie
CSRF_COOKIE = SITE.csrf_cookie
BROWSER_COOKIE = "tp_browser"
LANG_COOKIE = "tp_lang"
TZ_COOKIE = "tp_tz"
#: Live updates: how often the stream looks at the database, and how long one stream lasts before the
#: browser's EventSource reconnects (so a server can stop without waiting on open streams).
POLL_SECONDS = 0.4  # float-ok: a sleep interval
STREAM_SECONDS = 50
HEARTBEAT_SECONDS = 10

#: Set on the pages the service worker may keep for offline use (see sw.js); nothing else is kept.
OFFLINE_HEADER = "X-Tillpay-Offline"
#: The pages a phone opens without network: the installed app starts on the payment code.
START_URL = "/wallet/code"
_TRADE_NO_RE = re.compile(r"^\d{16,64}$")


@functools.cache
def _env(locale: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]  # added by the i18n extension
    return env


@dataclass
class Ctx(kit.PageCtx[Session]):
    """One request as the pages see it: who, in which language and time zone, and the CSRF token."""

    site = SITE
    locale: str
    fmt: i18n.Formatter

    @property
    def user(self) -> wallets.WalletUser:
        """The signed-in user (only on pages that require one)."""
        assert self.session is not None
        return self.session.user

    @property
    def languages(self) -> dict[str, str]:
        return i18n.LANGUAGES

    @property
    def html_lang(self) -> str:
        return i18n.html_lang(self.locale)


async def _ctx(request: Request) -> Ctx:
    p: Platform = request.app.state.platform
    session = await wallet_app.session_for(p, request.cookies.get(SESSION_COOKIE))
    lang = request.cookies.get(LANG_COOKIE)
    locale = lang if lang in i18n.LANGUAGES else i18n.negotiate(request.headers.get("accept-language"))
    fmt = i18n.Formatter(locale, i18n.zone(request.cookies.get(TZ_COOKIE)))
    csrf, new_cookie = kit.csrf_token(request, SITE, session.csrf_token if session is not None else None)
    return Ctx(request, p, session, csrf, locale, fmt, new_csrf_cookie=new_cookie)


def _render(ctx: Ctx, template: str, status: int = 200, *, offline: bool = False, **values: Any) -> Response:
    """Render a page; ``offline``: the service worker may keep it (only the signed-in user's GET pages)."""
    since = values.pop("since", 0)
    html = (
        _env(ctx.locale)
        .get_template(template)
        .render(c=ctx, fmt=ctx.fmt, since=since, offline=offline, rendered_at=ctx.p.now(), **values)
    )
    resp = ctx.finish(HTMLResponse(html, status_code=status))
    if offline and status == 200 and ctx.session is not None and ctx.request.method == "GET":
        resp.headers[OFFLINE_HEADER] = "page"
    return resp


async def _form(ctx: Ctx) -> FormData:
    """The POSTed form, after the CSRF and origin checks."""
    return await ctx.form()


Handler = Callable[[Ctx], Awaitable[Response]]


def page(*, signed_in: bool) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a handler: build its context, send anonymous visitors to sign in, map refusals to pages."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            ctx = await _ctx(request)
            if signed_in and ctx.session is None:
                return ctx.signed_out()
            try:
                return await fn(ctx)
            except kit.Forbidden:
                return _render(ctx, "error.html", 403, error="forbidden")
            except TillpayError as e:
                if e.code in (Code.NOT_FOUND, Code.CONFIRMATION_NOT_FOUND, Code.TRADE_NOT_EXIST):
                    return _render(ctx, "error.html", 404, error="not_found")
                if e.code is Code.TRY_AGAIN:  # the hashing pool is full
                    resp = _render(ctx, "error.html", 429, error="busy")
                    resp.headers["Retry-After"] = "1"
                    return resp
                if e.code is Code.PIN_LOCKED:
                    # Too many wrong PINs in a row: the password unlocks the PIN, so sign in again.
                    await wallet_app.sign_out(ctx.p, request.cookies.get(SESSION_COOKIE))
                    resp = ctx.redirect("/wallet/login?next=" + quote(ctx.path, safe=""))
                    SITE.delete_cookie(resp, SESSION_COOKIE)
                    return resp
                raise

        return endpoint

    return wrap


# ------------------------------------------------------------------------------------------ sign-in


@page(signed_in=False)
async def login(ctx: Ctx) -> Response:
    """The sign-in form; a successful sign-in registers this browser as a device if it is not one."""
    nxt = SITE.local_next(ctx.request.query_params.get("next"))
    if ctx.request.method == "GET":
        if ctx.session is not None:
            return ctx.redirect(nxt)
        return _render(ctx, "login.html", next=nxt, error=None, login_id="")
    form = await _form(ctx)
    login_id = str(form.get("login", "")).strip()
    password = str(form.get("password", ""))
    nxt = SITE.local_next(str(form.get("next", "")))
    try:
        result = await wallet_app.sign_in(
            ctx.p,
            login_id,
            password,
            browser_token=ctx.request.cookies.get(BROWSER_COOKIE),
            user_agent=ctx.request.headers.get("user-agent", ""),
            client=ctx.request.client.host if ctx.request.client else "unknown",
        )
    except wallet_app.SignInRefused as e:
        log.info("wallet sign-in refused", reason=e.reason)
        status = 429 if e.reason in ("locked", "busy") else 401
        resp = _render(ctx, "login.html", status, next=nxt, error=e.reason, login_id=login_id)
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    log.info("wallet sign-in", user=result.session.user.id, device=result.session.device.device_no)
    resp = ctx.redirect(nxt)
    max_age = int(wallet_app.SESSION_LIFETIME.total_seconds())
    ctx.set_cookie(resp, SESSION_COOKIE, result.token, max_age)
    ctx.set_cookie(resp, BROWSER_COOKIE, result.browser_token, 400 * 86400)
    SITE.delete_cookie(resp, CSRF_COOKIE)
    return resp


@page(signed_in=False)
async def logout(ctx: Ctx) -> Response:
    """End the session; the browser's device stays registered (and the page forgets its secret)."""
    await _form(ctx)
    await wallet_app.sign_out(ctx.p, ctx.request.cookies.get(SESSION_COOKIE))
    resp = ctx.redirect("/wallet/login")
    SITE.delete_cookie(resp, SESSION_COOKIE)
    return resp


@page(signed_in=False)
async def language(ctx: Ctx) -> Response:
    """The language switch: remembered in a cookie, then back to the page it was used on."""
    form = await _form(ctx)
    lang = str(form.get("lang", ""))
    resp = ctx.redirect(SITE.local_next(str(form.get("next", ""))))
    if lang in i18n.LANGUAGES:
        ctx.set_cookie(resp, LANG_COOKIE, lang, 400 * 86400)
    return resp


# --------------------------------------------------------------------------------------------- pages


async def root(request: Request) -> Response:
    """``/wallet`` without the slash."""
    return RedirectResponse("/wallet/", status_code=308)


@page(signed_in=True)
async def home(ctx: Ctx) -> Response:
    """Balance, recent payments and the way to the payment code."""
    recent = await wallet_app.history(ctx.p, ctx.user, limit=5)
    since = recent[0].payment.id if recent else 0
    topped = ctx.request.query_params.get("topped") == "1"
    return _render(ctx, "home.html", offline=not topped, recent=recent, since=since, topped=topped)


@page(signed_in=True)
async def code(ctx: Ctx) -> Response:
    """The payment code screen; the codes are made in the browser from the device secret (see code.js)."""
    since = await wallet_app.last_payment_id(ctx.p, ctx.user.id)
    return _render(ctx, "code.html", offline=True, since=since)


@page(signed_in=True)
async def history(ctx: Ctx) -> Response:
    """Every payment, newest first, with both amounts and its refunds."""
    before_text = ctx.request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    items = await wallet_app.history(ctx.p, ctx.user, before=before, limit=30)
    more = items[-1].payment.id if len(items) == 30 else None
    return _render(ctx, "history.html", offline=True, items=items, more=more)


@page(signed_in=True)
async def payment(ctx: Ctx) -> Response:
    """One payment: the success or failure screen, with its refunds."""
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    it = await wallet_app.item(ctx.p, ctx.user, trade_no)
    if it.payment.status is Status.WAIT_BUYER_PAY:
        return ctx.redirect(f"/wallet/confirm/{trade_no}")
    return _render(ctx, "payment.html", offline=True, it=it, since=it.payment.id)


@page(signed_in=True)
async def confirm(ctx: Ctx) -> Response:
    """A payment waiting for the customer: show merchant, both amounts and rate; confirm with PIN or reject."""
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    uid = ctx.user.id
    if ctx.request.method == "POST":
        form = await _form(ctx)
        if form.get("action") == "reject":
            await wallet_app.item(ctx.p, ctx.user, trade_no)  # NOT_FOUND unless it is this user's
            try:
                await payments.reject(ctx.p, uid, trade_no)
            except TillpayError as e:
                if e.code is not Code.CONFIRMATION_NOT_FOUND:
                    raise
            return ctx.redirect(f"/wallet/payments/{trade_no}")
        pin = str(form.get("pin", ""))
        if not wallets.PIN_RE.match(pin):
            return ctx.redirect(f"/wallet/confirm/{trade_no}?e=PIN_FORMAT")
        try:
            await payments.confirm(ctx.p, uid, pin, trade_no)
        except TillpayError as e:
            if e.code is Code.WRONG_PIN:
                return ctx.redirect(f"/wallet/confirm/{trade_no}?e=WRONG_PIN")
            if e.code not in (
                Code.USER_PAYMENT_VERIFICATION_FAILED,
                Code.PAYMENT_TIMEOUT,
                Code.CONFIRMATION_NOT_FOUND,
            ):
                raise
        return ctx.redirect(f"/wallet/payments/{trade_no}")
    it = await wallet_app.item(ctx.p, ctx.user, trade_no)
    if it.payment.status is not Status.WAIT_BUYER_PAY or (
        it.payment.expires_at and it.payment.expires_at <= ctx.p.now()
    ):
        return ctx.redirect(f"/wallet/payments/{trade_no}")
    left = await wallet_app.pin_attempts_left(ctx.p, uid, trade_no)
    error = ctx.request.query_params.get("e")
    return _render(
        ctx,
        "confirm.html",
        it=it,
        left=left,
        error=error if error in ("WRONG_PIN", "PIN_FORMAT") else None,
        since=it.payment.id,
        remaining=_remaining(ctx, it.payment.expires_at),
    )


def _remaining(ctx: Ctx, expires_at: Any) -> int:
    if expires_at is None:
        return 0
    return max(0, int((expires_at - ctx.p.now()).total_seconds()))


@page(signed_in=True)
async def topup(ctx: Ctx) -> Response:
    """Sandbox only: add made-up money; the form's nonce makes a double submit fund once.

    The wallet becomes a sandbox wallet in the same transaction, so what it pays is never settled.
    """
    user = ctx.user
    if not ctx.p.settings.sandbox:  # not routed in production either (wallet_routes)
        return ctx.finish(HTMLResponse("not found", status_code=404))
    if ctx.request.method == "GET":
        return _render(ctx, "topup.html", nonce=secrets.token_urlsafe(18), error=None, amount="")
    form = await _form(ctx)
    nonce = str(form.get("nonce", ""))
    amount_text = str(form.get("amount", "")).strip()
    if not kit.NONCE_RE.match(nonce):
        raise kit.Forbidden
    try:
        amount = parse_amount(amount_text, user.currency)
        await wallets.fund(ctx.p, user.login_id, amount, f"wallet-app:{user.id}:{nonce}", sandbox=True)
    except (InvalidAmount, UnknownCurrency):
        return _render(ctx, "topup.html", 400, nonce=nonce, error="format", amount=amount_text)
    except TillpayError as e:
        if e.code is not Code.AMOUNT_OUT_OF_RANGE:
            raise
        return _render(ctx, "topup.html", 400, nonce=nonce, error="range", amount=amount_text)
    return ctx.redirect("/wallet/?topped=1")


@page(signed_in=True)
async def devices(ctx: Ctx) -> Response:
    """The user's devices; each can be revoked."""
    items = await wallet_app.devices(ctx.p, ctx.user.id)
    assert ctx.session is not None
    return _render(ctx, "devices.html", items=items, current=ctx.session.device.id)


@page(signed_in=True)
async def revoke(ctx: Ctx) -> Response:
    """Revoke one of the user's devices (revoking this browser's own device signs it out)."""
    await _form(ctx)
    assert ctx.session is not None
    device_id = ctx.request.path_params["device_id"]
    await wallet_app.revoke_device(ctx.p, ctx.user.id, device_id)
    if device_id == ctx.session.device.id:
        resp = ctx.redirect("/wallet/login")
        SITE.delete_cookie(resp, SESSION_COOKIE)
        SITE.delete_cookie(resp, BROWSER_COOKIE)
        return resp
    return ctx.redirect("/wallet/devices")


@page(signed_in=False)
async def qr_order(ctx: Ctx) -> Response:
    """A merchant-presented QR order: anyone sees what it is; a signed-in customer pays it with the PIN."""
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    user = ctx.session.user if ctx.session else None
    if ctx.request.method == "POST":
        form = await _form(ctx)
        if user is None:
            return ctx.redirect("/wallet/login?next=" + quote(f"/wallet/qr/{trade_no}", safe=""))
        pin = str(form.get("pin", ""))
        if not wallets.PIN_RE.match(pin):
            return ctx.redirect(f"/wallet/qr/{trade_no}?e=PIN_FORMAT")
        try:
            view = await payments.confirm(ctx.p, user.id, pin, trade_no, precreated=True)
        except TillpayError as e:
            if e.code is Code.WRONG_PIN:
                return ctx.redirect(f"/wallet/qr/{trade_no}?e=WRONG_PIN")
            if e.code not in (
                Code.USER_PAYMENT_VERIFICATION_FAILED,
                Code.PAYMENT_TIMEOUT,
                Code.CONFIRMATION_NOT_FOUND,
            ):
                raise
            return ctx.redirect(f"/wallet/qr/{trade_no}")
        if view.buyer_id is None:  # closed without charging this user (e.g. frozen): show the order
            return ctx.redirect(f"/wallet/qr/{trade_no}")
        return ctx.redirect(f"/wallet/payments/{trade_no}")
    order = await wallet_app.order(ctx.p, trade_no, user)
    error = ctx.request.query_params.get("e")
    left = await wallet_app.order_pin_attempts_left(ctx.p, trade_no)
    return _render(
        ctx,
        "qr.html",
        order=order,
        left=left,
        error=error if error in ("WRONG_PIN", "PIN_FORMAT") else None,
        remaining=_remaining(ctx, order.payment.expires_at),
    )


# ------------------------------------------------------------------------------ installable web app

#: What the service worker keeps for offline use besides pages: everything the pages load.
_PRECACHE = (
    "wallet.css",
    "wallet.js",
    "paycode.js",
    "code128.js",
    "vendor/qrcode-generator-2.0.4.js",
    "icon.svg",
    "icon-192.png",
    "icon-512.png",
)


@functools.cache
def _service_worker() -> bytes:
    """sw.js with its version: a digest of itself and of every file it keeps, so any change installs anew."""
    source = (STATIC / "sw.js").read_text(encoding="utf-8")
    digest = hashlib.sha256(source.encode())
    for name in _PRECACHE:
        digest.update(name.encode() + b"\0" + (STATIC / name).read_bytes())
    assets = json.dumps([f"/wallet/static/{n}" for n in _PRECACHE])
    return (
        source.replace('"__VERSION__"', json.dumps(digest.hexdigest()[:16]))
        .replace('["__ASSETS__"]', assets)
        .replace('"__OFFLINE_HEADER__"', json.dumps(OFFLINE_HEADER.lower()))
        .replace('"__START_URL__"', json.dumps(START_URL))
        .encode()
    )


async def service_worker(request: Request) -> Response:
    """The service worker, served from ``/wallet/`` so that its scope covers every wallet page."""
    # no-store (from kit.harden): the browser looks for a new version on every navigation.
    return kit.harden(Response(_service_worker(), media_type="text/javascript"))


async def manifest(request: Request) -> Response:
    """The web app manifest: the wallet installs to the home screen and opens on the payment code."""
    ctx = await _ctx(request)
    _ = i18n.translations(ctx.locale).gettext
    data = {
        "id": START_URL,
        "name": _("Tillpay Wallet"),
        "short_name": "Tillpay",
        "lang": ctx.html_lang,
        "start_url": START_URL,
        "scope": "/wallet/",
        "display": "standalone",
        "orientation": "portrait",
        "theme_color": "#1456d9",
        "background_color": "#ffffff",
        "icons": [
            {"src": "/wallet/static/icon-192.png", "sizes": "192x192", "type": "image/png"},
            {"src": "/wallet/static/icon-512.png", "sizes": "512x512", "type": "image/png"},
            {
                "src": "/wallet/static/icon-512.png",
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
            {"src": "/wallet/static/icon.svg", "sizes": "any", "type": "image/svg+xml"},
        ],
    }
    resp = kit.harden(JSONResponse(data, media_type="application/manifest+json"))
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Vary"] = "Cookie, Accept-Language"
    return resp


# ----------------------------------------------------------------------------------------------- API


def _json(data: Any, status: int = 200) -> Response:
    return kit.harden(JSONResponse(data, status_code=status))


@page(signed_in=True)
async def api_device(ctx: Ctx) -> Response:
    """This browser's device: number and code secret (kept by the page for offline codes), used slots."""
    assert ctx.session is not None
    d = ctx.session.device
    now_step = paycode.step_at(int(ctx.p.now().timestamp()))
    used = await wallet_app.used_slots(ctx.p, d.id, now_step - 2)
    return _json(
        {
            "device_no": d.device_no,
            "secret": d.secret.hex(),
            "step_seconds": paycode.TIME_STEP,
            "slots": paycode.SLOTS,
            "used": [list(u) for u in used],
            "server_time": ctx.p.now().timestamp(),
        }
    )


async def _state(ctx: Ctx, since: int) -> dict[str, Any]:
    snap = await wallet_app.snapshot(ctx.p, ctx.user, since)
    return {
        "pending": [
            {
                "trade_no": i.payment.trade_no,
                "url": f"/wallet/confirm/{i.payment.trade_no}",
                "expires_at": i.payment.expires_at.isoformat() if i.payment.expires_at else None,
            }
            for i in snap.pending
        ],
        "recent": [
            {
                "trade_no": i.payment.trade_no,
                "status": i.payment.status.value,
                "url": f"/wallet/payments/{i.payment.trade_no}",
            }
            for i in snap.recent
        ],
    }


def _since(ctx: Ctx) -> int:
    text = ctx.request.query_params.get("since", "0")
    return int(text) if text.isdigit() and len(text) < 19 else 0


@page(signed_in=True)
async def api_state(ctx: Ctx) -> Response:
    """Waiting confirmations and new payments, for browsers without server-sent events (polling)."""
    return _json(await _state(ctx, _since(ctx)))


@page(signed_in=True)
async def api_events(ctx: Ctx) -> Response:
    """Server-sent events: the state above, sent whenever it changes (checked every POLL_SECONDS)."""
    since = _since(ctx)
    token = ctx.request.cookies.get(SESSION_COOKIE)

    async def stream() -> AsyncIterator[str]:
        # Several server processes may serve one user, so changes are found in the database, not in memory.
        yield "retry: 1000\n\n"
        started = last_sent = time.monotonic()
        last: str | None = None
        while time.monotonic() - started < STREAM_SECONDS:
            if await wallet_app.session_for(ctx.p, token) is None:
                yield "event: signed-out\ndata: {}\n\n"
                return
            data = json.dumps(await _state(ctx, since), separators=(",", ":"))
            if data != last:
                yield f"event: state\ndata: {data}\n\n"
                last, last_sent = data, time.monotonic()
            elif time.monotonic() - last_sent > HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    resp = StreamingResponse(stream(), media_type="text/event-stream")
    resp.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return kit.harden(resp)


def wallet_routes(*, sandbox: bool = False) -> list[BaseRoute]:
    """The routes of the wallet app, to include in the Tillpay ASGI app; self top-up only in a sandbox."""
    sandbox_only = [Route("/wallet/topup", topup, methods=["GET", "POST"])] if sandbox else []
    return [
        Route("/wallet", root),
        Route("/wallet/", home),
        Route("/wallet/login", login, methods=["GET", "POST"]),
        Route("/wallet/logout", logout, methods=["POST"]),
        Route("/wallet/lang", language, methods=["POST"]),
        Route("/wallet/code", code),
        Route("/wallet/history", history),
        *sandbox_only,
        Route("/wallet/devices", devices),
        Route("/wallet/devices/{device_id:int}/revoke", revoke, methods=["POST"]),
        Route("/wallet/payments/{trade_no}", payment),
        Route("/wallet/confirm/{trade_no}", confirm, methods=["GET", "POST"]),
        Route("/wallet/qr/{trade_no}", qr_order, methods=["GET", "POST"]),
        Route("/wallet/sw.js", service_worker),
        Route("/wallet/manifest.webmanifest", manifest),
        Route("/wallet/api/device", api_device),
        Route("/wallet/api/state", api_state),
        Route("/wallet/api/events", api_events),
        Mount("/wallet/static", app=StaticFiles(directory=STATIC), name="wallet-static"),
    ]
