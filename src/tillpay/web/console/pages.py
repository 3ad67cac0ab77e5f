"""The merchant console under ``/console``: server-rendered pages, downloads and a small JSON API.

Security rules every handler keeps (as in the wallet app):
- the session cookie is HttpOnly, SameSite=Strict, path ``/console``, and Secure over https;
- every POST carries the session's CSRF token (before sign-in a double-submit cookie) and, when the
  browser sends an Origin header, it must be this server's;
- every lookup goes through ``services.console`` with the session's merchant id in the query, so an id
  of another merchant in a URL or an API call finds nothing (404, the same as an unknown id);
- what a role may do is checked here, on the server, for every action (the pages only hide buttons);
- pages load scripts, styles and images from this server only (Content-Security-Policy ``'self'``, no
  inline scripts or styles); Jinja2 escapes every value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jinja2
import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import InvalidAmount, parse_amount
from tillpay.domain.settlement import digest_text, sha256_hex
from tillpay.services import (
    attempts,
    console,
    console_auth,
    heartbeats,
    payments,
    samples,
    sandbox_settlement,
    secmerchants,
    stores,
    testmode,
)
from tillpay.services.console_auth import ConsoleSession
from tillpay.services.platform import Merchant, Platform
from tillpay.web import kit
from tillpay.web.console import charts
from tillpay.web.wallet import i18n

log = structlog.get_logger("tillpay.console")

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

SITE = kit.Site(
    prefix="/console", session_cookie="tp_console", csrf_cookie="tp_console_csrf", samesite="strict"
)
SESSION_COOKIE = SITE.session_cookie
CSRF_COOKIE = SITE.csrf_cookie
_TRADE_NO_RE = re.compile(r"^\d{16,64}$")
#: A notification id: lower-case hex, or a sample's (``SAMPLE`` first, see services/samples.py).
_NOTIFY_ID_RE = re.compile(r"^(?:SAMPLE)?[0-9a-f]{16,64}$")
_FILE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9A-Za-z]+/[0-9A-Za-z_.-]+\.txt$")


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["ROLES"] = console_auth.ROLES
    env.globals["DIALECTS"] = console.DIALECTS
    return env


@dataclass
class Ctx(kit.PageCtx[ConsoleSession]):
    """One request as the pages see it: who, the formatter, and the CSRF token."""

    site = SITE
    fmt: i18n.Formatter
    _merchant: Merchant | None = None

    @property
    def user(self) -> console_auth.ConsoleUser:
        """The signed-in user (only on pages that require one)."""
        assert self.session is not None
        return self.session.user

    async def merchant(self) -> Merchant:
        """The signed-in user's merchant (fresh: keys and notify URL change from this console)."""
        if self._merchant is None:
            self._merchant = await self.p.merchant_by_partner(self.user.partner_id, fresh=True)
        return self._merchant

    def require(self, action: str) -> None:
        """Refuse (403) unless the user's role allows ``action``."""
        if not self.user.can(action):
            raise kit.Forbidden


async def _ctx(request: Request) -> Ctx:
    p: Platform = request.app.state.platform
    session = await console_auth.session_for(p, request.cookies.get(SESSION_COOKIE))
    fmt = i18n.Formatter("en", ZoneInfo(p.settings.timezone))
    csrf, new_cookie = kit.csrf_token(request, SITE, session.csrf_token if session is not None else None)
    return Ctx(request, p, session, csrf, fmt, new_csrf_cookie=new_cookie)


def _render(ctx: Ctx, template: str, status: int = 200, **values: Any) -> Response:
    html = _env().get_template(template).render(c=ctx, fmt=ctx.fmt, **values)
    return ctx.finish(HTMLResponse(html, status_code=status))


async def _form(ctx: Ctx) -> FormData:
    """The POSTed form, after the CSRF and origin checks."""
    return await ctx.form(max_files=1, max_fields=50)


Handler = Callable[[Ctx], Awaitable[Response]]
_NOT_FOUND = (Code.NOT_FOUND, Code.TRADE_NOT_EXIST)


def page(*, signed_in: bool = True) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a handler: context, sign-in redirect (401 for the API), refusals and not-found as pages."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            ctx = await _ctx(request)
            api = SITE.is_api(request)
            if signed_in and ctx.session is None:
                return ctx.signed_out()
            try:
                return await fn(ctx)
            except kit.Forbidden:
                if api:
                    return kit.json_error(SITE, "FORBIDDEN", 403)
                return _render(ctx, "error.html", 403, error="forbidden")
            except TillpayError as e:
                if e.code in _NOT_FOUND:
                    if api:
                        return kit.json_error(SITE, "NOT_FOUND", 404)
                    return _render(ctx, "error.html", 404, error="not_found")
                raise

        return endpoint

    return wrap


# ------------------------------------------------------------------------------------------ sign-in


@page(signed_in=False)
async def login(ctx: Ctx) -> Response:
    """The sign-in form."""
    nxt = SITE.local_next(ctx.request.query_params.get("next"))
    if ctx.request.method == "GET":
        if ctx.session is not None:
            return ctx.redirect(nxt)
        return _render(ctx, "login.html", next=nxt, error=None, login="")
    form = await _form(ctx)
    login_id = str(form.get("login", "")).strip()
    password = str(form.get("password", ""))
    nxt = SITE.local_next(str(form.get("next", "")))
    client = ctx.request.client.host if ctx.request.client else "unknown"
    try:
        token, session = await console_auth.sign_in(ctx.p, login_id, password, client=client)
    except console_auth.SignInRefused as e:
        log.info("console sign-in refused", reason=e.reason)
        status = 429 if e.reason in ("locked", "busy") else 401
        resp = _render(
            ctx, "login.html", status, next=nxt, error=e.reason, login=login_id, retry_after=e.retry_after
        )
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    log.info("console sign-in", user=session.user.id, merchant=session.user.partner_id)
    resp = ctx.redirect(nxt)
    ctx.set_cookie(resp, SESSION_COOKIE, token, int(console_auth.SESSION_LIFETIME.total_seconds()))
    SITE.delete_cookie(resp, CSRF_COOKIE)
    return resp


@page(signed_in=False)
async def logout(ctx: Ctx) -> Response:
    """End the session."""
    await _form(ctx)
    await console_auth.sign_out(ctx.p, ctx.request.cookies.get(SESSION_COOKIE))
    resp = ctx.redirect("/console/login")
    SITE.delete_cookie(resp, SESSION_COOKIE)
    return resp


async def root(request: Request) -> Response:
    """``/console`` without the slash."""
    return RedirectResponse("/console/", status_code=308)


# ---------------------------------------------------------------------------------------- dashboard


@page()
async def dashboard(ctx: Ctx) -> Response:
    """Today's and this month's figures, the charts, the confirmation share and recent declines."""
    d = await console.dashboard(ctx.p, ctx.user.merchant_id, now=(await ctx.merchant()).clock(ctx.p.now()))
    day_chart = charts.bars(
        [(x.strftime("%d"), v) for x, v in d.per_day],
        title="Sales per day, last 30 days",
        chart_id="chart-days",
    )
    hour_chart = charts.bars(
        [(f"{h:02d}", v) for h, v in d.per_hour], title="Sales per hour, today", chart_id="chart-hours"
    )
    # Many wrong payment codes from this merchant: an alert here and in the log, not a block on its tills.
    bad_codes = await payments.bad_code_alert(ctx.p, ctx.user.merchant_id)
    return _render(
        ctx,
        "dashboard.html",
        d=d,
        day_chart=day_chart,
        hour_chart=hour_chart,
        bad_codes=bad_codes,
        bad_code_minutes=ctx.p.settings.bad_code_window_seconds // 60,
    )


# ------------------------------------------------------------------------------------- transactions


def _filter(ctx: Ctx, merchant: Merchant) -> tuple[console.TxFilter, str | None]:
    params = dict(ctx.request.query_params)
    try:
        return console.parse_filter(params, merchant.settlement_currency), None
    except TillpayError as e:
        return console.TxFilter(), e.detail


def _before(ctx: Ctx) -> int | None:
    text = ctx.request.query_params.get("before", "")
    return int(text) if text.isdigit() and len(text) < 19 else None


@page()
async def payment_list(ctx: Ctx) -> Response:
    """The transaction list: filters, search by any id, server-side pages, CSV export."""
    m = await ctx.merchant()
    f, error = _filter(ctx, m)
    result = await console.list_payments(ctx.p, m.id, f, before=_before(ctx))
    params = {k: v for k, v in ctx.request.query_params.items() if k != "before" and v}
    # Searching by an id that matches exactly one payment goes straight to it.
    if f.q and len(result.items) == 1 and _before(ctx) is None:
        return ctx.redirect(f"/console/payments/{result.items[0].trade_no}")
    next_url = (
        "/console/payments?" + urlencode({**params, "before": result.next_before})
        if result.next_before
        else None
    )
    return _render(
        ctx,
        "payments.html",
        page=result,
        params=params,
        error=error,
        next_url=next_url,
        csv_url="/console/payments.csv" + ("?" + urlencode(params) if params else ""),
        store_list=await stores.list_stores(ctx.p, m.id),
        terminal_list=await stores.list_terminals(ctx.p, m.id),
    )


@page()
async def payment_csv(ctx: Ctx) -> Response:
    """Every payment matching the filters, as CSV."""
    m = await ctx.merchant()
    f, error = _filter(ctx, m)
    if error:
        return kit.harden(Response(error, status_code=400, media_type="text/plain"))
    name = f"tillpay-payments-{m.partner_id}-{ctx.p.now().strftime('%Y%m%d%H%M%S')}.csv"
    resp = StreamingResponse(console.export_csv(ctx.p, m.id, f), media_type="text/csv; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return kit.harden(resp)


def _refund_error(e: TillpayError) -> str:
    return {
        Code.REFUND_AMOUNT_EXCEED: "That is more than is left to refund.",
        Code.TRADE_HAS_CLOSE: "The payment is closed: fully refunded or cancelled.",
        Code.TRADE_STATUS_ERROR: "The payment is not paid yet.",
        Code.REFUND_WINDOW_EXCEED: "The refund window of this payment has passed.",
        Code.AMOUNT_OUT_OF_RANGE: "Enter an amount above zero.",
        Code.REPEAT_REQ_INCONSISTENT: "This form was already used for another amount; reload the page.",
    }.get(e.code, e.detail)


@page()
async def payment_detail(ctx: Ctx) -> Response:
    """One payment: amounts, quote, timeline, refunds, notifications, settlement; the refund form."""
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    d = await console.payment_detail(ctx.p, ctx.user.merchant_id, trade_no)
    error = ctx.request.query_params.get("error")
    return _render(
        ctx,
        "payment.html",
        d=d,
        refund_id=console.new_refund_id(),
        error=error[:200] if error else None,
        done=ctx.request.query_params.get("refunded"),
    )


@page()
async def payment_refund(ctx: Ctx) -> Response:
    """Refund from the detail page, under the refund id the page was rendered with."""
    form = await _form(ctx)
    ctx.require("refund")
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    m = await ctx.merchant()
    d = await console.payment_detail(ctx.p, m.id, trade_no)  # NOT_FOUND unless it is this merchant's
    url = f"/console/payments/{trade_no}"
    try:
        amount = parse_amount(str(form.get("amount", "")).strip(), d.payment.price_currency)
        r = await console.refund(
            ctx.p, m, trade_no, amount, str(form.get("refund_id", "")), str(form.get("reason", "")) or None
        )
    except InvalidAmount:
        return ctx.redirect(url + "?" + urlencode({"error": "Enter an amount like 12.50."}))
    except TillpayError as e:
        if e.code in _NOT_FOUND:
            raise
        return ctx.redirect(url + "?" + urlencode({"error": _refund_error(e)}))
    log.info("console refund", user=ctx.user.id, trade_no=trade_no, refund_no=r.refund_no)
    return ctx.redirect(url + "?" + urlencode({"refunded": r.refund_no}))


# ---------------------------------------------------------------------------------------------- API


def _json(data: Any, status: int = 200) -> Response:
    return kit.harden(JSONResponse(data, status_code=status))


@page()
async def api_payments(ctx: Ctx) -> Response:
    """``GET /console/api/payments``: the list with the same filters as the page, as JSON."""
    m = await ctx.merchant()
    f, error = _filter(ctx, m)
    if error:
        return _json({"error": "ILLEGAL_ARGUMENT", "message": error}, 400)
    result = await console.list_payments(ctx.p, m.id, f, before=_before(ctx))
    return _json({"payments": [v.to_json() for v in result.items], "next_before": result.next_before})


@page()
async def api_payment(ctx: Ctx) -> Response:
    """``GET /console/api/payments/{trade_no}``: one payment and its refunds."""
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    return _json(await console.payment_api(ctx.p, ctx.user.merchant_id, trade_no))


@page()
async def api_refund(ctx: Ctx) -> Response:
    """``POST /console/api/payments/{trade_no}/refund`` with JSON ``amount`` (text), ``refund_id``.

    The CSRF token goes in the ``X-CSRF-Token`` header; the same ``refund_id`` again returns the first
    refund.
    """
    ctx.check_origin()
    ctx.check_token(ctx.request.headers.get("x-csrf-token", ""))
    ctx.require("refund")
    trade_no = ctx.request.path_params["trade_no"]
    if not _TRADE_NO_RE.match(trade_no):
        raise TillpayError(Code.NOT_FOUND)
    m = await ctx.merchant()
    d = await console.payment_detail(ctx.p, m.id, trade_no)
    try:
        body = json.loads(await ctx.request.body())
        if not isinstance(body, dict):
            raise ValueError
        amount = parse_amount(str(body.get("amount", "")), d.payment.price_currency)
        r = await console.refund(ctx.p, m, trade_no, amount, str(body.get("refund_id", "")), None)
    except (ValueError, InvalidAmount):
        return _json({"error": "ILLEGAL_ARGUMENT", "message": "send JSON {amount, refund_id}"}, 400)
    except TillpayError as e:
        if e.code in _NOT_FOUND:
            raise
        return _json({"error": e.code.value, "message": e.detail}, 400)
    return _json(
        {"refund_no": r.refund_no, "partner_refund_id": r.partner_refund_id, "amount": r.price_amount}
    )


# ---------------------------------------------------------------------------------------- settlements


@page()
async def settlements(ctx: Ctx) -> Response:
    """Batches with payouts and status; the files with their digests."""
    ctx.require("settlements")
    m = await ctx.merchant()
    if m.is_test:
        # Test data: the test merchant's days closed by its test clock, as test files (never a live run).
        run = await sandbox_settlement.run(ctx.p, m)
        return _render(ctx, "settlements.html", batches=[], files=[], test_run=run, error=None)
    return _render(
        ctx,
        "settlements.html",
        batches=await console.batches(ctx.p, m),
        files=await console.files(ctx.p, m),
        test_run=None,
        error=None,
    )


@page()
async def test_file_download(ctx: Ctx) -> Response:
    """One of the test merchant's test files (test data only)."""
    ctx.require("settlements")
    m = await ctx.merchant()
    if not m.is_test:
        raise TillpayError(Code.NOT_FOUND)
    path = sandbox_settlement.file_path(ctx.p, m, ctx.request.query_params.get("name", ""))
    data = path.read_bytes()
    resp = Response(data, media_type="text/plain; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
    resp.headers["X-Content-SHA256"] = sha256_hex(data)
    return kit.harden(resp)


def _file_name(ctx: Ctx) -> str:
    name = ctx.request.query_params.get("name", "")
    if not _FILE_RE.match(name) or ".." in name:
        raise TillpayError(Code.NOT_FOUND)
    return name


@page()
async def settlement_download(ctx: Ctx) -> Response:
    """One of the merchant's files, byte for byte as ``tillpay settle files`` lists it."""
    ctx.require("settlements")
    view, data = await console.file(ctx.p, await ctx.merchant(), _file_name(ctx))
    resp = Response(data, media_type="text/plain; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{view.name.rsplit("/", 1)[-1]}"'
    resp.headers["X-Content-SHA256"] = view.sha256
    return kit.harden(resp)


@page()
async def settlement_digest(ctx: Ctx) -> Response:
    """The file's ``.sha256`` companion (``sha256sum -c`` format)."""
    ctx.require("settlements")
    view, _ = await console.file(ctx.p, await ctx.merchant(), _file_name(ctx))
    short = view.name.rsplit("/", 1)[-1]
    resp = Response(digest_text(view.sha256, view.name), media_type="text/plain; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{short}.sha256"'
    return kit.harden(resp)


@page()
async def settlement_reconcile(ctx: Ctx) -> Response:
    """Reconcile an uploaded journal (CSV) against the merchant's files of one day: the HTML report."""
    form = await _form(ctx)
    ctx.require("settlements")
    m = await ctx.merchant()
    day = str(form.get("day", ""))
    upload = form.get("journal")
    files = [
        f for f in await console.files(ctx.p, m) if f.settle_date.isoformat() == day and f.kind != "pain001"
    ]

    async def again(msg: str) -> Response:
        return _render(
            ctx,
            "settlements.html",
            400,
            batches=await console.batches(ctx.p, m),
            files=await console.files(ctx.p, m),
            test_run=None,
            error=msg,
        )

    if not files:
        return await again("Choose a day that has files.")
    if upload is None or isinstance(upload, str):
        return await again("Choose your journal file (CSV) to upload.")
    data = await upload.read(20_000_001)
    if len(data) > 20_000_000:
        return await again("The journal is larger than 20 MB; use tillpay reconcile instead.")
    try:
        html = await console.reconcile_report(ctx.p, m, files, data)
    except ValueError as e:
        return await again(f"The journal could not be read: {e}")
    resp = Response(html, media_type="text/html; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="reconciliation-{m.partner_id}-{day}.html"'
    return kit.harden(resp)


# ---------------------------------------------------------------------------------------- integration


@page()
async def integration(ctx: Ctx) -> Response:
    """Ids, keys, Tillpay's public key, the notify URL, the test credentials, the test clock and the test
    payment button."""
    ctx.require("integration")
    return await _integration_page(
        ctx,
        await ctx.merchant(),
        error=ctx.request.query_params.get("error", "")[:200] or None,
        done=ctx.request.query_params.get("done", "")[:80] or None,
    )


async def _integration_page(
    ctx: Ctx,
    m: Merchant,
    *,
    error: str | None = None,
    done: str | None = None,
    new_md5_key: str | None = None,
) -> Response:
    clock = await testmode.show(ctx.p, m.partner_id) if m.is_test else None
    test = None
    if not m.is_test:
        test_pid = await console.test_partner_of(ctx.p, m)
        test = await ctx.p.merchant_by_partner(test_pid, fresh=True) if test_pid else None
    return _render(
        ctx,
        "integration.html",
        m=m,
        test=test,
        clock=clock,
        keys=await console.key_versions(ctx.p, m),
        error=error,
        done=done,
        new_private_key=None,
        new_md5_key=new_md5_key,
    )


@page()
async def switch_mode(ctx: Ctx) -> Response:
    """The "Test data / Live data" switch: the session shows the test merchant's data, or the live one's.
    Switching to test data the first time makes the test credentials (owner only): their private key
    is shown once, on the page this answers."""
    form = await _form(ctx)
    assert ctx.session is not None
    test = str(form.get("mode", "")) == "test"
    try:
        private_key = await console_auth.set_test_mode(ctx.p, ctx.session, test)
    except TillpayError as e:
        return _render(ctx, "error.html", 403, error="forbidden", detail=e.detail)
    log.info("console mode", user=ctx.user.id, mode="test" if test else "live")
    if private_key is None:
        nxt = SITE.local_next(str(form.get("next", "")) or "/console/")
        return ctx.redirect(nxt)
    session = await console_auth.session_for(ctx.p, ctx.request.cookies.get(SESSION_COOKIE))
    fresh = replace(ctx, session=session, _merchant=None)
    m = await fresh.merchant()
    return _render(
        fresh,
        "integration.html",
        m=m,
        test=None,
        clock=await testmode.show(ctx.p, m.partner_id),
        keys=await console.key_versions(ctx.p, m),
        error=None,
        done="test credentials made",
        new_private_key=private_key,
        new_md5_key=None,
    )


@page()
async def move_clock(ctx: Ctx) -> Response:
    """Test data only: move the test merchant's clock forward (owner and manager)."""
    form = await _form(ctx)
    ctx.require("integration")
    m = await ctx.merchant()
    try:
        view = await testmode.advance(
            ctx.p, m.partner_id, testmode.parse_duration(str(form.get("advance", "")))
        )
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    log.info("console clock moved", user=ctx.user.id, merchant=m.partner_id, offset=view.offset_seconds)
    done = f"test clock at {ctx.fmt.datetime(view.merchant_time)}; {view.expired} payment(s) expired"
    return ctx.redirect("/console/integration?" + urlencode({"done": done}))


@page()
async def key_rotate(ctx: Ctx) -> Response:
    """Upload the merchant's new RSA public key (PEM text or a .pem file)."""
    form = await _form(ctx)
    ctx.require("keys")
    pem = str(form.get("public_key", "")).strip()
    upload = form.get("public_key_file")
    if not pem and upload is not None and not isinstance(upload, str):
        pem = (await upload.read(8001)).decode("utf-8", "replace").strip()
    try:
        version = await console.rotate_key(ctx.p, await ctx.merchant(), pem)
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    log.info("console key rotated", user=ctx.user.id, version=version)
    return ctx.redirect(
        "/console/integration?" + urlencode({"done": f"key version {version} is now current"})
    )


@page()
async def key_revoke(ctx: Ctx) -> Response:
    """Revoke an older key version at once."""
    form = await _form(ctx)
    ctx.require("keys")
    try:
        version = await console.revoke_key(ctx.p, await ctx.merchant(), str(form.get("version", "")))
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    log.info("console key revoked", user=ctx.user.id, version=version)
    return ctx.redirect("/console/integration?" + urlencode({"done": f"key version {version} is revoked"}))


@page()
async def sign_types(ctx: Ctx) -> Response:
    """Choose the sign types the merchant's requests may use (leaving MD5 out disables the MD5 key)."""
    form = await _form(ctx)
    ctx.require("keys")
    try:
        m = await console.set_sign_types(
            ctx.p, await ctx.merchant(), [str(v) for v in form.getlist("sign_type")]
        )
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    log.info("console sign types", user=ctx.user.id, sign_types=sorted(m.sign_types or ["all"]))
    return ctx.redirect("/console/integration?" + urlencode({"done": "sign types saved"}))


@page()
async def md5_rotate(ctx: Ctx) -> Response:
    """A new MD5 key, shown on this answer only (never in a URL or a log)."""
    form = await _form(ctx)
    ctx.require("keys")
    m = await ctx.merchant()
    try:
        key = await console.rotate_md5_key(ctx.p, m, end_old_now=form.get("end_old_now") == "1")
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    log.info("console md5 key rotated", user=ctx.user.id)
    m = await ctx.p.merchant_by_partner(m.partner_id, fresh=True)
    resp = await _integration_page(ctx, m, done="a new MD5 key is current", new_md5_key=key)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@page()
async def notify_url(ctx: Ctx) -> Response:
    """Change the merchant's default notify URL."""
    form = await _form(ctx)
    ctx.require("keys")
    try:
        await console.set_notify_url(ctx.p, await ctx.merchant(), str(form.get("notify_url", "")))
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    return ctx.redirect("/console/integration?" + urlencode({"done": "notify URL saved"}))


@page()
async def gateway_key(ctx: Ctx) -> Response:
    """Tillpay's public key for this merchant (verifies responses and notifications)."""
    m = await ctx.merchant()
    resp = Response(m.gateway_public_key, media_type="application/x-pem-file")
    resp.headers["Content-Disposition"] = f'attachment; filename="tillpay-public-key-{m.partner_id}.pem"'
    return kit.harden(resp)


@page()
async def test_payment(ctx: Ctx) -> Response:
    """Sandbox only: pay the merchant from its sandbox wallet; then show the payment."""
    if not ctx.p.settings.sandbox:  # not routed in production either (console_routes)
        return ctx.finish(HTMLResponse("not found", status_code=404))
    form = await _form(ctx)
    ctx.require("integration")
    m = await ctx.merchant()
    try:
        amount = parse_amount(str(form.get("amount", "")).strip(), m.settlement_currency)
        view = await console.test_payment(ctx.p, m, amount)
    except InvalidAmount:
        return ctx.redirect("/console/integration?" + urlencode({"error": "Enter an amount like 1.00."}))
    except TillpayError as e:
        return ctx.redirect("/console/integration?" + urlencode({"error": e.detail}))
    log.info("console test payment", user=ctx.user.id, trade_no=view.trade_no)
    return ctx.redirect(f"/console/payments/{view.trade_no}")


@page()
async def notifications(ctx: Ctx) -> Response:
    """The notification log: every notification, every attempt and its answer."""
    ctx.require("integration")
    items = await console.notifications(ctx.p, ctx.user.merchant_id)
    q = ctx.request.query_params
    return _render(
        ctx,
        "notifications.html",
        items=items,
        done=q.get("redelivered"),
        sending=q.get("sending"),
        samples_sent=q.get("samples", "")[:8],
        samples_allowed=samples.allowed(ctx.p, await ctx.merchant()),
        error=q.get("error", "")[:300] or None,
        wait=_wait_seconds(q.get("wait")),
    )


@page()
async def notify_samples(ctx: Ctx) -> Response:
    """Queue one sample notification of each kind the merchant's dialects send (test merchants, or any
    merchant of a sandbox server; rate-limited per merchant)."""
    await _form(ctx)
    ctx.require("integration")
    m = await ctx.merchant()
    try:
        queued = await samples.send_samples(ctx.p, m)
    except TillpayError as e:
        return ctx.redirect("/console/notifications?" + urlencode({"error": e.detail}))
    log.info("console notify samples", user=ctx.user.id, count=len(queued))
    return ctx.redirect("/console/notifications?" + urlencode({"samples": len(queued)}))


@page()
async def notification_detail(ctx: Ctx) -> Response:
    """The notification inspector: each attempt's request as sent (headers, body, signature) and the
    merchant's answer; the redeliver button."""
    ctx.require("integration")
    notify_id = ctx.request.path_params["notify_id"]
    if not _NOTIFY_ID_RE.match(notify_id):
        raise TillpayError(Code.NOT_FOUND)
    n = await console.notification(ctx.p, ctx.user.merchant_id, notify_id)
    q = ctx.request.query_params
    return _render(
        ctx,
        "notification.html",
        n=n,
        done="redelivered" in q,
        sending="sending" in q,
        error=q.get("error", "")[:300] or None,
        wait=_wait_seconds(q.get("wait")),
    )


def _wait_seconds(text: str | None) -> int | None:
    """Redeliver's "try again in N s", from the redirect's query (digits only, else nothing shown)."""
    return int(text) if text and text.isdigit() and len(text) <= 5 else None


@page()
async def redeliver(ctx: Ctx) -> Response:
    """Queue one of the merchant's notifications for delivery now; back to the log, or to the
    notification's own page when the form came from there."""
    form = await _form(ctx)
    ctx.require("integration")
    notify_id = ctx.request.path_params["notify_id"]
    if not _NOTIFY_ID_RE.match(notify_id):
        raise TillpayError(Code.NOT_FOUND)
    try:
        queued = await console.redeliver(ctx.p, ctx.user.merchant_id, notify_id)
        outcome, value = ("redelivered" if queued else "sending"), notify_id
    except attempts.Throttled as e:
        log.info("redeliver throttled", notify_id=notify_id, retry_after=e.retry_after)
        outcome, value = "wait", str(e.retry_after)
    if form.get("back") == "detail":
        return ctx.redirect(f"/console/notifications/{notify_id}?" + urlencode({outcome: value}))
    return ctx.redirect("/console/notifications?" + urlencode({outcome: value}))


# ---------------------------------------------------------------------------------------------- stores


@page()
async def store_list(ctx: Ctx) -> Response:
    """Stores and terminals, with links to their payments; add and disable them. Below them, the
    secondary merchants and stores registered through MAPI ``offline.maintain``."""
    mid = ctx.user.merchant_id
    return _render(
        ctx,
        "stores.html",
        store_list=await stores.list_stores(ctx.p, mid),
        terminal_list=await stores.list_terminals(ctx.p, mid),
        secondary_list=await secmerchants.list_secondary(ctx.p, mid),
        terminal_health=await heartbeats.terminal_health(ctx.p, mid),
        quiet_for=_duration(ctx.p.settings.heartbeat_quiet_seconds),
        error=ctx.request.query_params.get("error", "")[:200] or None,
    )


def _duration(seconds: int) -> str:
    """``5 minutes`` or ``90 seconds``."""
    return f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"


@page()
async def store_add(ctx: Ctx) -> Response:
    """Register a store or a terminal."""
    form = await _form(ctx)
    ctx.require("stores")
    mid = ctx.user.merchant_id
    try:
        if form.get("kind") == "terminal":
            await stores.add_terminal(
                ctx.p,
                mid,
                str(form.get("ident", "")),
                str(form.get("name", "")),
                str(form.get("store_id", "")),
            )
        else:
            await stores.add_store(ctx.p, mid, str(form.get("ident", "")), str(form.get("name", "")))
    except TillpayError as e:
        return ctx.redirect("/console/stores?" + urlencode({"error": e.detail}))
    return ctx.redirect("/console/stores")


@page()
async def store_status(ctx: Ctx) -> Response:
    """Disable or enable a store or a terminal."""
    form = await _form(ctx)
    ctx.require("stores")
    kind = "terminal" if form.get("kind") == "terminal" else "store"
    try:
        await stores.set_status(
            ctx.p, ctx.user.merchant_id, kind, str(form.get("ident", "")), str(form.get("status", ""))
        )
    except TillpayError as e:
        if e.code is Code.NOT_FOUND:
            raise
        return ctx.redirect("/console/stores?" + urlencode({"error": e.detail}))
    return ctx.redirect("/console/stores")


# ----------------------------------------------------------------------------------------------- users


@page()
async def users(ctx: Ctx) -> Response:
    """The merchant's console users (owners only): add, disable."""
    ctx.require("users")
    return _render(
        ctx,
        "users.html",
        items=await console_auth.users_of(ctx.p, ctx.user.merchant_id),
        error=ctx.request.query_params.get("error", "")[:200] or None,
    )


@page()
async def user_add(ctx: Ctx) -> Response:
    """Add a user to this merchant."""
    form = await _form(ctx)
    ctx.require("users")
    try:
        await console_auth.add_user(
            ctx.p,
            partner_id=ctx.user.partner_id,
            login=str(form.get("login", "")),
            password=str(form.get("password", "")),
            role=str(form.get("role", "")),
            name=str(form.get("name", "")) or None,
        )
    except TillpayError as e:
        return ctx.redirect("/console/users?" + urlencode({"error": e.detail}))
    return ctx.redirect("/console/users")


@page()
async def user_status(ctx: Ctx) -> Response:
    """Disable or re-enable a user of this merchant (not oneself)."""
    form = await _form(ctx)
    ctx.require("users")
    uid_text = str(form.get("user_id", ""))
    if not uid_text.isdigit() or int(uid_text) == ctx.user.id:
        raise kit.Forbidden
    await console_auth.set_user_status(
        ctx.p, ctx.user.merchant_id, int(uid_text), str(form.get("status", ""))
    )
    return ctx.redirect("/console/users")


def console_routes(*, sandbox: bool = False) -> list[BaseRoute]:
    """The routes of the merchant console, to include in the Tillpay ASGI app; test payments only in a sandbox."""
    sandbox_only = (
        [Route("/console/integration/test-payment", test_payment, methods=["POST"])] if sandbox else []
    )
    return [
        Route("/console", root),
        Route("/console/", dashboard),
        Route("/console/login", login, methods=["GET", "POST"]),
        Route("/console/logout", logout, methods=["POST"]),
        Route("/console/payments", payment_list),
        Route("/console/payments.csv", payment_csv),
        Route("/console/payments/{trade_no}", payment_detail),
        Route("/console/payments/{trade_no}/refund", payment_refund, methods=["POST"]),
        Route("/console/settlements", settlements),
        Route("/console/settlements/download", settlement_download),
        Route("/console/settlements/digest", settlement_digest),
        Route("/console/settlements/reconcile", settlement_reconcile, methods=["POST"]),
        Route("/console/settlements/test-download", test_file_download),
        Route("/console/mode", switch_mode, methods=["POST"]),
        Route("/console/integration/clock", move_clock, methods=["POST"]),
        Route("/console/integration", integration),
        Route("/console/integration/keys", key_rotate, methods=["POST"]),
        Route("/console/integration/keys/revoke", key_revoke, methods=["POST"]),
        Route("/console/integration/notify-url", notify_url, methods=["POST"]),
        Route("/console/integration/sign-types", sign_types, methods=["POST"]),
        Route("/console/integration/md5-rotate", md5_rotate, methods=["POST"]),
        Route("/console/integration/tillpay-public-key.pem", gateway_key),
        *sandbox_only,
        Route("/console/notifications", notifications),
        Route("/console/notifications/samples", notify_samples, methods=["POST"]),
        Route("/console/notifications/{notify_id}", notification_detail),
        Route("/console/notifications/{notify_id}/redeliver", redeliver, methods=["POST"]),
        Route("/console/stores", store_list),
        Route("/console/stores/add", store_add, methods=["POST"]),
        Route("/console/stores/status", store_status, methods=["POST"]),
        Route("/console/users", users),
        Route("/console/users/add", user_add, methods=["POST"]),
        Route("/console/users/status", user_status, methods=["POST"]),
        Route("/console/api/payments", api_payments),
        Route("/console/api/payments/{trade_no}", api_payment),
        Route("/console/api/payments/{trade_no}/refund", api_refund, methods=["POST"]),
        Mount("/console/static", app=StaticFiles(directory=STATIC), name="console-static"),
    ]
