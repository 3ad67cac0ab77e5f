"""``tillpay merchant``: merchants, their keys (cli/keys.py) and secondary merchants (cli/secondary.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from tillpay.cli.common import Ctx, pass_ctx
from tillpay.cli.keys import key_add, key_revoke, keys, md5_rotate, sign_types
from tillpay.cli.samples import notify_samples
from tillpay.cli.secondary import secondary
from tillpay.outbound import notify_url_problem
from tillpay.services import merchants as merchant_service
from tillpay.services import testmode
from tillpay.services.platform import Merchant, Platform

# ------------------------------------------------------------------------------------------- merchants


@click.group()
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
        "mode": "test" if m.is_test else "live",
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
        "\n".join(
            f"{m.partner_id}  {m.settlement_currency}  {m.status:7}  {'test' if m.is_test else 'live'}  {m.name}"
            for m in ms
        )
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


def _json_too(c: Ctx, as_json: bool) -> None:
    # ``--json`` after the command, as well as before it (``tillpay --json merchant ...``).
    c.as_json = c.as_json or as_json


@merchant.command("test-credentials")
@click.argument("partner_id")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_ctx
def merchant_test_credentials(c: Ctx, partner_id: str, as_json: bool) -> None:
    """The live merchant's test credentials (a test merchant of its own, made on first use).

    Same wire and endpoints (Antom's also at /ams/sandbox/api/...), sandbox wallets only, its own test
    clock, never settled or paid out. The merchant private key is printed only when they are made.
    """
    _json_too(c, as_json)
    new = c.run(lambda p: merchant_service.test_merchant_of(p, partner_id))
    m = new.merchant
    data = _merchant_json(m) | {"test_of": partner_id, "merchant_private_key": new.merchant_private_key}
    text = (
        f"TEST credentials of {partner_id} (sandbox money only, never settled)\n"
        f"partner id     {m.partner_id}\nMD5 key        {m.md5_key}\n"
        f"app id         {m.app_id}  (Alipay Open Platform)\n"
        f"client id      {m.client_id}  (Antom, keyVersion 1; /ams/sandbox/api/... or /ams/api/...)\n"
        f"currency       {m.settlement_currency}\n"
        + (
            f"merchant private key (shown once):\n{new.merchant_private_key}"
            if new.merchant_private_key
            else "merchant private key: shown when the test credentials were made\n"
        )
        + f"Tillpay public key (verifies responses):\n{m.gateway_public_key}"
    )
    c.out(data, text)


@merchant.command("clock")
@click.argument("partner_id")
@click.option("--advance", help="Move the test clock forward: 90s, 15m, 2h, 3d, 1w or e.g. 1d12h.")
@click.option("--show", is_flag=True, help="Show the test clock (the default without --advance).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_ctx
def merchant_clock(c: Ctx, partner_id: str, advance: str | None, show: bool, as_json: bool) -> None:
    """A test merchant's test clock: show it, or move it forward (live merchants use real time).

    Moving it expires the test merchant's payments that are due by its time and writes the test
    settlement files of the business days that closed (docs/sandbox.md).
    """
    _json_too(c, as_json)
    if advance and show:
        raise click.UsageError("give --advance or --show, not both")

    async def go(p: Platform) -> testmode.ClockView:
        if advance:
            return await testmode.advance(p, partner_id, testmode.parse_duration(advance))
        return await testmode.show(p, partner_id)

    view = c.run(go)
    run = view.settlement
    lines = [
        f"TEST clock of {view.partner_id}: {view.merchant_time.isoformat(timespec='seconds')}"
        f" (real time + {timedelta(seconds=view.offset_seconds)})",
        f"business day   {view.business_day}, closes {view.next_cutoff.isoformat(timespec='seconds')}",
    ]
    if advance:
        lines.append(f"expired        {view.expired} payment(s)")
    lines.append(f"closed days    up to {run.last_closed}, {len(run.batches)} test batch(es)")
    lines += [f"  {f.name}" for f in run.files]
    c.out(view.to_json(), "\n".join(lines))


for _command in (key_add, keys, key_revoke, sign_types, md5_rotate, secondary, notify_samples):
    merchant.add_command(_command)
