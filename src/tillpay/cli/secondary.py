"""``tillpay merchant secondary``: the secondary merchants and stores a merchant registered through MAPI."""

from __future__ import annotations

import click

from tillpay.cli.common import Ctx
from tillpay.services import secmerchants
from tillpay.services.platform import Platform
from tillpay.services.secmerchants import SecondaryMerchant


@click.group("secondary")
def secondary() -> None:
    """Secondary merchants and their stores, as an acquirer or ISV registered them.

    A merchant that acquires for others (an acquirer or ISV) registers each secondary merchant and
    store through MAPI ``alipay.overseas.secmerchant.offline.maintain`` and asks for its status with
    ``alipay.overseas.secmerchant.maintain.queryStatus``. A spot.pay whose ``extend_info`` names a
    registered secondary merchant takes its name, MCC and store name from the registration when it
    leaves them out. A disabled secondary merchant or store cannot take payments; its status query
    answers FAILED with the reason. See docs/secondary-merchants.md.
    """


def _text(found: list[SecondaryMerchant]) -> str:
    lines = []
    for sm in found:
        state = sm.status + (f" ({sm.reject_reason})" if sm.reject_reason else "")
        lines.append(f"{sm.secondary_merchant_id}  {state}  {sm.name}")
        for st in sm.stores:
            s_state = st.status + (f" ({st.reject_reason})" if st.reject_reason else "")
            lines.append(
                f"    {st.store_id}  {st.industry}  {st.country}  {s_state}  {st.name}  {st.address}"
            )
    return "\n".join(lines) or "no secondary merchants"


@secondary.command("list")
@click.argument("partner_id")
@click.pass_obj
def secondary_list(c: Ctx, partner_id: str) -> None:
    """List one merchant's secondary merchants with their stores (id, MCC, country, state, name, address)."""

    async def go(p: Platform) -> list[SecondaryMerchant]:
        m = await p.merchant_by_partner(partner_id, fresh=True)
        return await secmerchants.list_secondary(p, m.id)

    found = c.run(go)
    c.out({"partner_id": partner_id, "secondary_merchants": [sm.to_json() for sm in found]}, _text(found))


def _set(c: Ctx, partner_id: str, smid: str, store: str | None, status: str, reason: str | None) -> None:
    async def go(p: Platform) -> None:
        m = await p.merchant_by_partner(partner_id, fresh=True)
        await secmerchants.set_status(p, m.id, smid, store, status, reason)

    c.run(go)
    what = f"store {store} of secondary merchant {smid}" if store else f"secondary merchant {smid}"
    c.out(
        {"partner_id": partner_id, "secondary_merchant_id": smid, "store_id": store, "status": status},
        f"{what} is {status}",
    )


@secondary.command("disable")
@click.argument("partner_id")
@click.argument("secondary_merchant_id")
@click.option("--store", "store_id", help="Disable only this store (default: the secondary merchant).")
@click.option("--reason", help="Shown as reject_reason by queryStatus and in the console.")
@click.pass_obj
def secondary_disable(
    c: Ctx, partner_id: str, secondary_merchant_id: str, store_id: str | None, reason: str | None
) -> None:
    """Stop a secondary merchant (or one store) from taking payments; queryStatus answers FAILED."""
    _set(c, partner_id, secondary_merchant_id, store_id, "disabled", reason)


@secondary.command("enable")
@click.argument("partner_id")
@click.argument("secondary_merchant_id")
@click.option("--store", "store_id", help="Enable only this store (default: the secondary merchant).")
@click.pass_obj
def secondary_enable(c: Ctx, partner_id: str, secondary_merchant_id: str, store_id: str | None) -> None:
    """Let a disabled secondary merchant (or store) take payments again."""
    _set(c, partner_id, secondary_merchant_id, store_id, "active", None)
