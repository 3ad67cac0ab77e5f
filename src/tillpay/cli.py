"""``tillpay``: the operator's command line. Every command takes ``--json`` for scripts."""

from __future__ import annotations

import sys
from pathlib import Path

from tillpay import shutdown

# Before the imports below (seconds on a loaded machine): a SIGTERM to a starting ``tillpay serve`` or
# ``tillpay worker`` is recorded, and start-up stops cleanly at its next stage (tillpay/shutdown.py).
if Path(sys.argv[0]).name in ("tillpay", "cli.py") and {"serve", "worker"} & set(sys.argv[1:]):
    shutdown.install()

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click

from tillpay import __version__
from tillpay.config import Settings, get_settings
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import InvalidAmount, UnknownCurrency, format_amount, parse_amount
from tillpay.logs import configure_logging
from tillpay.outbound import notify_url_problem
from tillpay.services import audit as audit_service
from tillpay.services import fx as fx_service
from tillpay.services import merchants as merchant_service
from tillpay.services import payments as payment_service
from tillpay.services import wallets as wallet_service
from tillpay.services.platform import Merchant, Platform
from tillpay.services.views import PaymentView
from tillpay.store.migrate import upgrade

T = TypeVar("T")


class Ctx:
    """What every command shares: settings and output mode."""

    def __init__(self, settings: Settings, as_json: bool) -> None:
        self.settings = settings
        self.as_json = as_json

    def run(self, fn: Callable[[Platform], Awaitable[T]]) -> T:
        """Migrate the database if needed, then run one use case on a fresh platform."""
        upgrade(self.settings.database_url)

        async def go() -> T:
            p = Platform(self.settings)
            try:
                return await fn(p)
            finally:
                await p.close()

        try:
            return asyncio.run(go())
        except TillpayError as e:
            self.fail(e.code.value, e.detail)

    def fail(self, code: str, message: str, exit_code: int = 1) -> NoReturn:
        """Report an error in the chosen output mode and exit non-zero."""
        if self.as_json:
            click.echo(json.dumps({"error": code, "message": message}))
        else:
            click.echo(f"error: {code}: {message}", err=True)
        sys.exit(exit_code)

    def out(self, data: dict[str, Any], text: str) -> None:
        """Print ``data`` as JSON or ``text`` for people."""
        click.echo(json.dumps(data, indent=2, default=str) if self.as_json else text)


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url", envvar="TILLPAY_DATABASE_URL", help="SQLAlchemy URL (default: sqlite file tillpay.db)."
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(__version__, prog_name="tillpay")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, as_json: bool) -> None:
    """Tillpay: a self-hostable in-store payment gateway speaking Alipay's wire protocols."""
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    configure_logging(
        os.environ.get("TILLPAY_LOG_LEVEL", "warning")
        if ctx.invoked_subcommand != "serve"
        else settings.log_level
    )
    if ctx.invoked_subcommand not in ("serve", "worker"):
        shutdown.uninstall()  # a one-off command keeps SIGTERM's default
    ctx.obj = Ctx(settings, as_json)


def _amount(text: str, currency: str) -> int:
    try:
        return parse_amount(text, currency)
    except (InvalidAmount, UnknownCurrency) as e:
        raise click.BadParameter(str(e)) from None


# ---------------------------------------------------------------------------------------------- serve


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--demo", is_flag=True, help="Create the demo merchant, wallet and rates on first start and print them."
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Sandbox mode (TILLPAY_MODE=sandbox): self top-up and console test payments, never settled.",
)
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
@click.option(
    "--no-worker", is_flag=True, help="Do not deliver notifications or close expired payments here."
)
@click.option("--public-url", help="The URL customers reach this server on (for QR codes).")
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM, with its chain); needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="The certificate's private key (PEM)."
)
@click.option("--max-body-bytes", type=int, help="Largest request body (TILLPAY_MAX_BODY_BYTES).")
@click.option(
    "--header-timeout", type=float, help="Seconds for a request head (TILLPAY_HEADER_TIMEOUT_SECONDS)."
)
@click.option("--body-timeout", type=float, help="Seconds for a request body (TILLPAY_BODY_TIMEOUT_SECONDS).")
@click.option(
    "--keep-alive", type=int, help="Seconds an idle connection stays open (TILLPAY_KEEP_ALIVE_SECONDS)."
)
@click.option(
    "--limit-concurrency",
    type=int,
    help="Most connections and requests per process; more get 503 (TILLPAY_LIMIT_CONCURRENCY).",
)
@pass_ctx
def serve(
    c: Ctx,
    host: str,
    port: int,
    demo: bool,
    sandbox: bool,
    workers: int,
    no_worker: bool,
    public_url: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    max_body_bytes: int | None,
    header_timeout: float | None,  # float-ok: seconds
    body_timeout: float | None,  # float-ok: seconds
    keep_alive: int | None,
    limit_concurrency: int | None,
) -> None:
    """Run the gateway (and, unless --no-worker, the notification and expiry worker).

    Production unless ``--sandbox``, ``--demo`` (which implies it) or ``TILLPAY_MODE=sandbox``.
    """
    shutdown.exit_if_requested()
    import uvicorn

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    scheme = "https" if tls_cert else "http"
    settings = c.settings.model_copy(
        update={
            "public_url": public_url
            or (c.settings.public_url if "TILLPAY_PUBLIC_URL" in os.environ else f"{scheme}://{host}:{port}"),
            "embedded_worker": c.settings.embedded_worker and not no_worker,
            "mode": "sandbox" if demo or sandbox else c.settings.mode,
        }
        | {
            key: value
            for key, value in (
                ("max_body_bytes", max_body_bytes),
                ("header_timeout_seconds", header_timeout),
                ("body_timeout_seconds", body_timeout),
                ("keep_alive_seconds", keep_alive),
                ("limit_concurrency", limit_concurrency),
            )
            if value is not None
        }
    )
    upgrade(settings.database_url)
    shutdown.exit_if_requested()
    if demo:
        from tillpay.demo import ensure_demo, print_demo

        info = asyncio.run(ensure_demo(settings))
        print_demo(info, settings, as_json=c.as_json)
        shutdown.exit_if_requested()
    click.echo(
        f"Tillpay {__version__} on {settings.public_url}, mode {settings.mode}"
        + (": self top-up and test payments on, never settled" if settings.sandbox else ""),
        err=True,
    )
    os.environ["TILLPAY_MODE"] = settings.mode
    os.environ["TILLPAY_DATABASE_URL"] = settings.database_url
    os.environ["TILLPAY_PUBLIC_URL"] = settings.public_url
    os.environ["TILLPAY_EMBEDDED_WORKER"] = "true" if settings.embedded_worker else "false"
    # The app (and each worker process) reads the limits from the environment.
    os.environ["TILLPAY_MAX_BODY_BYTES"] = str(settings.max_body_bytes)
    os.environ["TILLPAY_HEADER_TIMEOUT_SECONDS"] = str(settings.header_timeout_seconds)
    os.environ["TILLPAY_BODY_TIMEOUT_SECONDS"] = str(settings.body_timeout_seconds)
    # /metrics sums every server process's counters through files in one fresh directory
    # (prometheus-client's multiprocess mode, chosen when it is first imported: nothing here has yet).
    metrics_dir = tempfile.mkdtemp(prefix="tillpay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "tillpay.web.asgi:create",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            # h11 with a deadline for the request head (uvicorn has none), then idle and concurrency limits.
            http="tillpay.web.limits:TimedH11Protocol",
            timeout_keep_alive=settings.keep_alive_seconds,
            limit_concurrency=settings.limit_concurrency,
            h11_max_incomplete_event_size=settings.max_header_bytes,
            proxy_headers=True,
            forwarded_allow_ips=settings.forwarded_allow_ips,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    shutdown.exit_if_requested()  # uvicorn hands the SIGTERM it stopped on back to our handler


@main.command()
@pass_ctx
def migrate(c: Ctx) -> None:
    """Create or upgrade the database schema (every command does this on its own too)."""
    upgrade(c.settings.database_url)
    c.out({"status": "ok"}, "schema is up to date")


# ------------------------------------------------------------------------------------------- merchants


@main.group()
def merchant() -> None:
    """Onboard and manage merchants."""


def _merchant_json(m: Merchant) -> dict[str, Any]:
    return {
        "partner_id": m.partner_id,
        "name": m.name,
        "settlement_currency": m.settlement_currency,
        "md5_key": m.md5_key,
        "notify_url": m.notify_url,
        "mcc": m.mcc,
        "status": m.status,
        "merchant_public_key": m.public_key,
        "tillpay_public_key": m.gateway_public_key,
        "app_id": m.app_id,
        "client_id": m.client_id,
    }


@merchant.command("add")
@click.option("--name", required=True)
@click.option("--currency", required=True, help="Settlement currency, e.g. USD.")
@click.option("--notify-url", help="Default URL for asynchronous notifications.")
@click.option("--partner-id", help="16 digits starting 2088 (default: generated).")
@click.option("--md5-key", help="32 letters and digits (default: generated).")
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(exists=True, dir_okay=False),
    help="The merchant's RSA public key (PEM). Without it a key pair is generated and printed once.",
)
@click.option("--mcc", default="5411", show_default=True, help="Merchant category code.")
@pass_ctx
def merchant_add(
    c: Ctx,
    name: str,
    currency: str,
    notify_url: str | None,
    partner_id: str | None,
    md5_key: str | None,
    public_key_file: str | None,
    mcc: str,
) -> None:
    """Create a merchant and print its partner id and keys."""
    if notify_url and (problem := notify_url_problem(c.settings, notify_url)):
        raise click.BadParameter(f"the notify URL {problem}", param_hint="--notify-url")
    pub = Path(public_key_file).read_text() if public_key_file else None
    new = c.run(
        lambda p: merchant_service.add_merchant(
            p,
            name=name,
            settlement_currency=currency.upper(),
            notify_url=notify_url,
            partner_id=partner_id,
            md5_key=md5_key,
            public_key=pub,
            mcc=mcc,
        )
    )
    data = _merchant_json(new.merchant)
    data["merchant_private_key"] = new.merchant_private_key
    text = (
        f"partner id     {new.merchant.partner_id}\nMD5 key        {new.merchant.md5_key}\n"
        f"app id         {new.merchant.app_id}  (Alipay Open Platform)\n"
        f"client id      {new.merchant.client_id}  (Antom, keyVersion 1)\n"
        f"currency       {new.merchant.settlement_currency}\n"
        + (
            f"merchant private key (shown once):\n{new.merchant_private_key}"
            if new.merchant_private_key
            else ""
        )
        + f"Tillpay public key (verifies responses):\n{new.merchant.gateway_public_key}"
    )
    c.out(data, text)


@merchant.command("list")
@pass_ctx
def merchant_list(c: Ctx) -> None:
    """List merchants."""
    ms = c.run(merchant_service.list_merchants)
    c.out(
        {"merchants": [_merchant_json(m) for m in ms]},
        "\n".join(f"{m.partner_id}  {m.settlement_currency}  {m.status:7}  {m.name}" for m in ms)
        or "no merchants",
    )


@merchant.command("show")
@click.argument("partner_id")
@pass_ctx
def merchant_show(c: Ctx, partner_id: str) -> None:
    """Show one merchant with its keys."""
    m = c.run(lambda p: p.merchant_by_partner(partner_id, fresh=True))
    data = _merchant_json(m)
    c.out(data, "\n".join(f"{k}: {v}" for k, v in data.items()))


@merchant.command("freeze")
@click.argument("partner_id")
@pass_ctx
def merchant_freeze(c: Ctx, partner_id: str) -> None:
    """Freeze a merchant: its payments are declined."""
    m = c.run(lambda p: merchant_service.set_merchant_status(p, partner_id, "frozen"))
    c.out(_merchant_json(m), f"{m.partner_id} is frozen")


@merchant.command("unfreeze")
@click.argument("partner_id")
@pass_ctx
def merchant_unfreeze(c: Ctx, partner_id: str) -> None:
    """Re-activate a frozen merchant."""
    m = c.run(lambda p: merchant_service.set_merchant_status(p, partner_id, "active"))
    c.out(_merchant_json(m), f"{m.partner_id} is active")


# --------------------------------------------------------------------------------------------- wallets


@main.group()
def wallet() -> None:
    """Wallet users: create, fund, show payment codes, answer confirmations."""


def _user_json(u: wallet_service.WalletUser) -> dict[str, Any]:
    return {
        "login_id": u.login_id,
        "name": u.name,
        "currency": u.currency,
        "balance": format_amount(u.balance, u.currency),
        "balance_minor": u.balance,
        "status": u.status,
        "sandbox": u.sandbox,
    }


@wallet.command("add")
@click.option("--login", "login_id", required=True, help="Login id, e.g. an email address.")
@click.option("--currency", default="CNY", show_default=True, help="The wallet's currency.")
@click.option("--pin", required=True, help="Six-digit payment PIN, for confirmations.")
@click.option("--name", help="Display name.")
@click.option("--password", help="Password for the wallet app.")
@pass_ctx
def wallet_add(
    c: Ctx, login_id: str, currency: str, pin: str, name: str | None, password: str | None
) -> None:
    """Create a wallet user with a first device."""
    user, device = c.run(
        lambda p: wallet_service.add_user(
            p, login_id=login_id, currency=currency.upper(), pin=pin, name=name, password=password
        )
    )
    data = _user_json(user) | {"device_no": device.device_no}
    c.out(data, f"created {user.login_id} ({user.currency}), device {device.device_no}")


@wallet.command("topup")
@click.option("--login", "login_id", required=True)
@click.option("--amount", required=True, help="Amount in the wallet's currency, e.g. 100.00.")
@click.option(
    "--reference",
    required=True,
    help="Where the money came from (bank transfer id, ticket): recorded with the entry, used once.",
)
@pass_ctx
def wallet_topup(c: Ctx, login_id: str, amount: str, reference: str) -> None:
    """Fund a wallet from the bank; a repeated reference adds nothing."""

    async def go(p: Platform) -> wallet_service.TopUp:
        u = await wallet_service.user_by_login(p, login_id)
        return await wallet_service.fund(p, login_id, _amount(amount, u.currency), reference)

    r = c.run(go)
    u = r.user
    data = _user_json(u) | {"reference": r.reference, "entry_id": r.entry_id, "added": r.added}
    note = "" if r.added else f" (reference {r.reference} was recorded already: nothing added)"
    c.out(
        data,
        f"{u.login_id} balance {format_amount(u.balance, u.currency)} {u.currency}, "
        f"reference {r.reference}, entry {r.entry_id}{note}",
    )


@wallet.command("show")
@click.option("--login", "login_id", required=True)
@pass_ctx
def wallet_show(c: Ctx, login_id: str) -> None:
    """Show a wallet's balance, devices and latest top-ups with their references."""

    async def go(
        p: Platform,
    ) -> tuple[wallet_service.WalletUser, list[wallet_service.Device], list[wallet_service.TopUpEntry]]:
        u = await wallet_service.user_by_login(p, login_id)
        return u, await wallet_service.devices_of(p, u.id), await wallet_service.topups_of(p, u)

    u, devices, topups = c.run(go)
    data = _user_json(u) | {
        "devices": [{"device_no": d.device_no, "status": d.status} for d in devices],
        "topups": [
            {
                "reference": e.reference,
                "amount": format_amount(e.amount, u.currency),
                "entry_id": e.entry_id,
                "at": e.created_at.isoformat(),
            }
            for e in topups
        ],
    }
    c.out(
        data,
        f"{u.login_id}  {format_amount(u.balance, u.currency)} {u.currency}"
        + ("  (sandbox wallet: never settled)" if u.sandbox else "")
        + "  "
        f"devices: {', '.join(str(d.device_no) for d in devices)}"
        + "".join(
            f"\n  top-up {format_amount(e.amount, u.currency)} reference {e.reference} ({e.created_at:%Y-%m-%d %H:%M})"
            for e in topups
        ),
    )


@wallet.command("code")
@click.option("--login", "login_id", required=True)
@click.option("--device", "device_no", type=int, help="Device number (default: the first active device).")
@pass_ctx
def wallet_code(c: Ctx, login_id: str, device_no: int | None) -> None:
    """Print the device's current payment code (what the wallet app shows)."""

    async def go(p: Platform) -> tuple[str, int]:
        u = await wallet_service.user_by_login(p, login_id)
        devices = [d for d in await wallet_service.devices_of(p, u.id) if d.status == "active"]
        if device_no is not None:
            devices = [d for d in devices if d.device_no == device_no]
        if not devices:
            raise TillpayError(Code.NOT_FOUND, "no such active device")
        return await wallet_service.current_code(p, devices[0]), devices[0].device_no

    code, dev = c.run(go)
    c.out({"code": code, "device_no": dev}, code)


@wallet.command("unlock-pin")
@click.option("--login", "login_id", required=True)
@pass_ctx
def wallet_unlock_pin(c: Ctx, login_id: str) -> None:
    """Unlock a PIN locked by too many wrong PINs (the customer can also sign in again)."""
    u = c.run(lambda p: wallet_service.unlock_pin(p, login_id))
    c.out({"login_id": u.login_id, "pin": "unlocked"}, f"{u.login_id}: PIN unlocked")


def _payment_line(v: PaymentView) -> str:
    wallet = (
        f" = {format_amount(v.wallet_amount, v.wallet_currency or '')} {v.wallet_currency}"
        if v.wallet_amount is not None
        else ""
    )
    return (
        f"{v.trade_no}  {v.status.value:15} {format_amount(v.price_amount, v.price_currency)} "
        f"{v.price_currency}{wallet}  {v.subject}"
    )


@wallet.command("pending")
@click.option("--login", "login_id", required=True)
@pass_ctx
def wallet_pending(c: Ctx, login_id: str) -> None:
    """List payments waiting for this customer's confirmation."""

    async def go(p: Platform) -> list[PaymentView]:
        u = await wallet_service.user_by_login(p, login_id)
        return await payment_service.pending_for_user(p, u.id)

    views = c.run(go)
    c.out(
        {"pending": [v.to_json() for v in views]}, "\n".join(map(_payment_line, views)) or "nothing pending"
    )


@wallet.command("confirm")
@click.option("--login", "login_id", required=True)
@click.option("--pin", required=True)
@click.option("--trade-no", help="Which payment (default: the newest waiting one).")
@pass_ctx
def wallet_confirm(c: Ctx, login_id: str, pin: str, trade_no: str | None) -> None:
    """Confirm a payment that waits for the customer, with the PIN."""

    async def go(p: Platform) -> PaymentView:
        u = await wallet_service.user_by_login(p, login_id)
        return await payment_service.confirm(p, u.id, pin, trade_no)

    v = c.run(go)
    c.out(v.to_json(), _payment_line(v))


@wallet.command("reject")
@click.option("--login", "login_id", required=True)
@click.option("--trade-no", help="Which payment (default: the newest waiting one).")
@pass_ctx
def wallet_reject(c: Ctx, login_id: str, trade_no: str | None) -> None:
    """Reject a payment that waits for the customer."""

    async def go(p: Platform) -> PaymentView:
        u = await wallet_service.user_by_login(p, login_id)
        return await payment_service.reject(p, u.id, trade_no)

    v = c.run(go)
    c.out(v.to_json(), _payment_line(v))


@wallet.command("pay-qr")
@click.argument("qr")
@click.option("--login", "login_id", required=True)
@click.option("--pin", required=True)
@pass_ctx
def wallet_pay_qr(c: Ctx, qr: str, login_id: str, pin: str) -> None:
    """Pay a merchant-presented QR order (its URL or its transaction id)."""
    trade_no = qr.rstrip("/").rsplit("/", 1)[-1]

    async def go(p: Platform) -> PaymentView:
        u = await wallet_service.user_by_login(p, login_id)
        return await payment_service.confirm(p, u.id, pin, trade_no, precreated=True)

    v = c.run(go)
    c.out(v.to_json(), _payment_line(v))


@wallet.command("freeze")
@click.option("--login", "login_id", required=True)
@pass_ctx
def wallet_freeze(c: Ctx, login_id: str) -> None:
    """Freeze a wallet: its payments are declined."""
    u = c.run(lambda p: wallet_service.set_status(p, login_id, "frozen"))
    c.out(_user_json(u), f"{u.login_id} is frozen")


@wallet.command("unfreeze")
@click.option("--login", "login_id", required=True)
@pass_ctx
def wallet_unfreeze(c: Ctx, login_id: str) -> None:
    """Re-activate a frozen wallet."""
    u = c.run(lambda p: wallet_service.set_status(p, login_id, "active"))
    c.out(_user_json(u), f"{u.login_id} is active")


# -------------------------------------------------------------------------------------------------- fx


@main.group()
def fx() -> None:
    """Exchange rates."""


@fx.command("set")
@click.argument("base")
@click.argument("quote")
@click.argument("rate")
@click.option(
    "--effective",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="When the rate takes effect (ISO time, UTC if no offset; default: now).",
)
@pass_ctx
def fx_set(c: Ctx, base: str, quote: str, rate: str, effective: datetime | None) -> None:
    """Load a rate: RATE units of QUOTE per one unit of BASE (e.g. fx set USD CNY 7.1023)."""
    from datetime import UTC

    when = effective.replace(tzinfo=effective.tzinfo or UTC) if effective else None
    r = c.run(lambda p: fx_service.set_rate(p, base.upper(), quote.upper(), rate, when))
    c.out(
        {"base": r.base, "quote": r.quote, "rate": str(r.rate), "effective_at": r.effective_at.isoformat()},
        f"1 {r.base} = {r.rate} {r.quote} from {r.effective_at.isoformat()}",
    )


@fx.command("list")
@pass_ctx
def fx_list(c: Ctx) -> None:
    """Show the rates in effect now."""
    rates = c.run(fx_service.current_rates)
    c.out(
        {
            "rates": [
                {
                    "base": r.base,
                    "quote": r.quote,
                    "rate": str(r.rate),
                    "effective_at": r.effective_at.isoformat(),
                }
                for r in rates
            ]
        },
        "\n".join(f"{r.base}/{r.quote}  {r.rate}  since {r.effective_at.isoformat()}" for r in rates)
        or "no rates loaded",
    )


@fx.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def fx_import(c: Ctx, csv_file: str) -> None:
    """Load rates from a CSV file with the header base,quote,rate[,effective_at]; all or nothing."""
    text = Path(csv_file).read_text(encoding="utf-8")
    n = c.run(lambda p: fx_service.import_rates_csv(p, text))
    c.out({"imported": n}, f"imported {n} rates")


@fx.group("margin")
def fx_margin() -> None:
    """The FX margin the customer pays on a conversion, per currency pair."""


@fx_margin.command("set")
@click.argument("base")
@click.argument("quote")
@click.argument("bps", type=int)
@pass_ctx
def fx_margin_set(c: Ctx, base: str, quote: str, bps: int) -> None:
    """Set the margin for BASE/QUOTE (either direction) in basis points: 50 = 0.50%."""
    m = c.run(lambda p: fx_service.set_margin(p, base.upper(), quote.upper(), bps))
    c.out(
        {"base": m.base, "quote": m.quote, "bps": m.bps, "effective_at": m.effective_at.isoformat()},
        f"{m.base}/{m.quote} margin {m.bps} bps",
    )


@fx_margin.command("list")
@pass_ctx
def fx_margin_list(c: Ctx) -> None:
    """Show the margins in force (pairs without one use TILLPAY_FX_DEFAULT_MARGIN_BPS)."""
    ms = c.run(fx_service.current_margins)
    c.out(
        {
            "margins": [{"base": m.base, "quote": m.quote, "bps": m.bps} for m in ms],
            "default_bps": c.settings.fx_default_margin_bps,
        },
        "\n".join(f"{m.base}/{m.quote}  {m.bps} bps" for m in ms)
        + f"\nother pairs: {c.settings.fx_default_margin_bps} bps",
    )


# ------------------------------------------------------------------------------------------------ risk


@main.group()
def risk() -> None:
    """Risk rules and limits: per scheme, with overrides per merchant and per user."""


def _scope(merchant_id: str | None, user: str | None) -> tuple[str, str]:
    if merchant_id and user:
        raise click.UsageError("give --merchant or --user, not both")
    if merchant_id:
        return "merchant", merchant_id
    if user:
        return "user", user
    return "scheme", ""


def _load_document(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON: both are accepted
    except yaml.YAMLError as e:
        raise click.BadParameter(f"{name} is not YAML or JSON: {e}") from None


@risk.command("show")
@click.option("--merchant", "merchant_id", help="Show what applies to this merchant (partner id).")
@click.option("--user", help="Show what applies to this wallet user (login id); with --merchant too.")
@click.option("--stored", is_flag=True, help="Show the stored rule document instead of the effective rules.")
@pass_ctx
def risk_show(c: Ctx, merchant_id: str | None, user: str | None, stored: bool) -> None:
    """Show the rules in force (scheme, merged with merchant and user overrides)."""
    import yaml

    from tillpay.domain import risk as risk_domain
    from tillpay.services import risk as risk_service

    if stored:
        doc = c.run(risk_service.stored_rules)
        c.out(doc, yaml.safe_dump(doc, sort_keys=True, allow_unicode=True).rstrip())
        return
    cfg = c.run(lambda p: risk_service.effective(p, merchant_id or "", user))
    data = risk_domain.to_text(cfg)
    c.out(data, yaml.safe_dump(data, sort_keys=True, allow_unicode=True).rstrip())


@risk.command("set")
@click.argument("rule")
@click.argument("value")
@click.option("--merchant", "merchant_id", help="Override for one merchant (partner id).")
@click.option("--user", help="Override for one wallet user (login id).")
@pass_ctx
def risk_set(c: Ctx, rule: str, value: str, merchant_id: str | None, user: str | None) -> None:
    """Set one rule, e.g. `risk set daily_limit '{CNY: "50000.00"}'` or `risk set velocity_count 10`."""
    from tillpay.services import risk as risk_service

    scope, subject = _scope(merchant_id, user)
    parsed = _load_document(value, "VALUE")
    stored = c.run(lambda p: risk_service.set_rules(p, scope, subject, {rule: parsed}))
    c.out(
        {"scope": scope, "subject": subject, "rules": stored},
        f"{scope} {subject} {rule} = {stored[rule]}".replace("  ", " "),
    )


@risk.command("import")
@click.argument("rules_file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def risk_import(c: Ctx, rules_file: str) -> None:
    """Load a rule document (YAML or JSON: scheme, merchants, users); each named scope is replaced."""
    from tillpay.services import risk as risk_service

    doc = _load_document(Path(rules_file).read_text(encoding="utf-8"), rules_file)
    res = c.run(lambda p: risk_service.import_rules(p, doc))
    c.out(res, f"imported {res['scopes']} rule scopes")


@risk.command("explain")
@click.argument("trade_no")
@pass_ctx
def risk_explain(c: Ctx, trade_no: str) -> None:
    """Why a payment was allowed, sent for confirmation or declined: the rules that fired and their inputs."""
    from tillpay.services import risk as risk_service

    e = c.run(lambda p: risk_service.explain(p, trade_no))
    data = {
        "trade_no": e.trade_no,
        "verdict": e.verdict,
        "rule": e.rule,
        "code": e.code,
        "fired": e.fired,
        "inputs": e.inputs,
        "rules": e.config,
        "decided_at": e.decided_at.isoformat(),
    }
    lines = [
        f"{e.trade_no}: {e.verdict} by rule {e.rule}" + (f" ({e.code})" if e.code else ""),
        f"rules that fired: {', '.join(e.fired) or 'none'}",
        "inputs:",
    ]
    lines += [f"  {k}: {v}" for k, v in e.inputs.items()]
    c.out(data, "\n".join(lines))


# ----------------------------------------------------------------------------------------------- audit


@main.command()
@pass_ctx
def audit(c: Ctx) -> None:
    """Check every ledger invariant; exit 1 and name what broke if any fails."""
    findings = c.run(audit_service.audit)
    data = {
        "ok": not findings,
        "checks": list(audit_service.CHECKS),
        "findings": [
            {"check": f.check, "description": f.description, "count": f.count, "examples": f.examples}
            for f in findings
        ],
    }
    if findings:
        text = "\n".join(
            f"FAIL {f.check}: {f.description} ({f.count} rows)\n    " + "\n    ".join(f.examples)
            for f in findings
        )
    else:
        text = f"ok: all {len(audit_service.CHECKS)} ledger checks pass"
    c.out(data, text)
    sys.exit(1 if findings else 0)


from tillpay.cli_keys import (  # noqa: E402 - it imports this module's Ctx, so it comes last
    key_add,
    key_revoke,
    keys,
    md5_rotate,
    sign_types,
)

merchant.add_command(key_add)
for _command in (keys, key_revoke, sign_types, md5_rotate):
    merchant.add_command(_command)

from tillpay.secmerchant_cli import secondary  # noqa: E402 - it imports this module's Ctx

merchant.add_command(secondary)

from tillpay.ecr.cli import ecr as _ecr  # noqa: E402 - registered last, like every command group

main.add_command(_ecr)

# Settlement, reconciliation and simulation live in their own module, which imports Ctx from here.
from tillpay.settlement_cli import reconcile, settle, simulate  # noqa: E402

main.add_command(settle)
main.add_command(reconcile)
main.add_command(simulate)

from tillpay.console_cli import console as _console  # noqa: E402 - imports this module's Ctx

main.add_command(_console)

from tillpay.worker.cli import worker as _worker  # noqa: E402 - registered last, like every command group

main.add_command(_worker)

from tillpay.bench.cli import bench as _bench  # noqa: E402 - registered last, like every command group

main.add_command(_bench)

from tillpay.ops.cli import backup as _backup  # noqa: E402 - registered last, like every command group
from tillpay.ops.cli import ha as _ha  # noqa: E402

main.add_command(_ha)
main.add_command(_backup)

if __name__ == "__main__":  # pragma: no cover
    main()
