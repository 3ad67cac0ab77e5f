"""``tillpay wallet``: wallet users, top-ups, payment codes and confirmations."""

from __future__ import annotations

from typing import Any

import click

from tillpay.cli.common import Ctx, pass_ctx
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import InvalidAmount, UnknownCurrency, format_amount, parse_amount
from tillpay.services import payments as payment_service
from tillpay.services import wallets as wallet_service
from tillpay.services.platform import Platform
from tillpay.services.views import PaymentView


def _amount(text: str, currency: str) -> int:
    try:
        return parse_amount(text, currency)
    except (InvalidAmount, UnknownCurrency) as e:
        raise click.BadParameter(str(e)) from None


# --------------------------------------------------------------------------------------------- wallets


@click.group()
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
@click.option(
    "--sandbox",
    is_flag=True,
    help="A sandbox wallet: pays test merchants (test credentials) only, never settled.",
)
@pass_ctx
def wallet_add(
    c: Ctx, login_id: str, currency: str, pin: str, name: str | None, password: str | None, sandbox: bool
) -> None:
    """Create a wallet user with a first device (``--sandbox``: a sandbox wallet for test merchants)."""
    user, device = c.run(
        lambda p: wallet_service.add_user(
            p,
            login_id=login_id,
            currency=currency.upper(),
            pin=pin,
            name=name,
            password=password,
            sandbox=sandbox,
        )
    )
    data = _user_json(user) | {"device_no": device.device_no}
    note = " (sandbox wallet: pays test merchants only, never settled)" if user.sandbox else ""
    c.out(data, f"created {user.login_id} ({user.currency}), device {device.device_no}{note}")


@wallet.command("topup")
@click.option("--login", "login_id", required=True)
@click.option("--amount", required=True, help="Amount in the wallet's currency, e.g. 100.00.")
@click.option(
    "--reference",
    required=True,
    help="Where the money came from (bank transfer id, ticket): recorded with the entry, used once.",
)
@click.option(
    "--sandbox",
    is_flag=True,
    help="Sandbox money: the wallet becomes a sandbox wallet (test merchants only, never settled).",
)
@pass_ctx
def wallet_topup(c: Ctx, login_id: str, amount: str, reference: str, sandbox: bool) -> None:
    """Fund a wallet from the bank; a repeated reference adds nothing."""

    async def go(p: Platform) -> wallet_service.TopUp:
        u = await wallet_service.user_by_login(p, login_id)
        return await wallet_service.fund(p, login_id, _amount(amount, u.currency), reference, sandbox=sandbox)

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
