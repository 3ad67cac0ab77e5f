"""Secondary merchants and their stores (MAPI ``offline.maintain``/``queryStatus``) and the pays that name
them, on SQLite and PostgreSQL. Fields: ``global/offline_maintain`` and melitigo/AlipaySDK's sample."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

import factories as f
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.domain.secmerchant import Registration
from tillpay.services import payments, secmerchants
from tillpay.services.payments import PayCommand
from tillpay.services.platform import Merchant, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio

#: melitigo/AlipaySDK AlipayOverseasSecmerchantOfflineMaintainSample, with fixed ids.
SAMPLE = {
    "secondary_merchant_name": "Mika's coffee shop",
    "secondary_merchant_id": "MID_1001",
    "store_id": "SID_2001",
    "store_name": "Mika's coffee shop Burlington",
    "store_country": "US",
    "store_address": "3 Old Concord Rd, Burlington, MA 01803",
    "store_industry": "5499",
    "internal_store_photo": "https://www.mikascoffee.test/img_321323.jpg",
    "external_storefront_photo": "https://www.mikascoffee.test/img_321322.jpg",
    "secondary_merchant_type": "INDIVIDUAL",
    "register_country": "US",
    "register_address": "3 Old Concord Rd, Burlington, MA 01803",
    "shareholder_name": "mika",
    "shareholder_id": "3428000000000000",
    "contact_no": "18688888888",
}


def reg(**over: str) -> Registration:
    return Registration.parse({**SAMPLE, **over})


def pay_cmd(m: Merchant, code: str, ptid: str, **kw: Any) -> PayCommand:
    return PayCommand(
        merchant=m,
        partner_trans_id=ptid,
        code=code,
        price_amount=1250,
        price_currency=m.settlement_currency,
        settle_currency=m.settlement_currency,
        subject="Coffee",
        dialect="mapi",
        **kw,
    )


async def count(p: Platform, table: t.Table) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_registration_is_stored_listed_and_approved(platform: Platform) -> None:
    m = (await f.merchant(platform)).merchant
    done = await secmerchants.maintain(platform, m.id, reg())
    assert (done.created, done.status.active) == (True, True)
    [sm] = await secmerchants.list_secondary(platform, m.id)
    assert (sm.secondary_merchant_id, sm.name, sm.merchant_type, sm.status) == (
        "MID_1001",
        "Mika's coffee shop",
        "INDIVIDUAL",
        "active",
    )
    [store] = sm.stores
    assert (store.store_id, store.name, store.country, store.industry) == (
        "SID_2001",
        "Mika's coffee shop Burlington",
        "US",
        "5499",
    )
    status = await secmerchants.query_status(platform, m.id, "MID_1001", "SID_2001")
    assert status.active and status.reject_reason is None


async def test_the_same_registration_again_changes_nothing_and_a_new_one_overwrites(
    platform: Platform, clock: Any
) -> None:
    m = (await f.merchant(platform)).merchant
    await secmerchants.maintain(platform, m.id, reg())
    [first] = await secmerchants.list_secondary(platform, m.id)
    clock.advance(60)
    again = await secmerchants.maintain(platform, m.id, reg())
    assert (again.created, again.changed) == (False, False)
    [same] = await secmerchants.list_secondary(platform, m.id)
    assert same == first  # not even updated_at moved
    clock.advance(60)
    moved = await secmerchants.maintain(platform, m.id, reg(store_address="1 Main St", store_industry="5812"))
    assert (moved.created, moved.changed) == (False, True)
    [after] = await secmerchants.list_secondary(platform, m.id)
    assert (after.stores[0].address, after.stores[0].industry) == ("1 Main St", "5812")
    assert after.updated_at == first.updated_at  # the merchant's own fields did not change
    second = await secmerchants.maintain(platform, m.id, reg(store_id="SID_2002"))
    assert second.created
    [both] = await secmerchants.list_secondary(platform, m.id)
    assert [s.store_id for s in both.stores] == ["SID_2001", "SID_2002"]
    assert await count(platform, t.secondary_merchants) == 1


async def test_one_partner_never_sees_or_changes_another_partners_secondary_merchants(
    platform: Platform,
) -> None:
    a = (await f.merchant(platform)).merchant
    b = (await f.merchant(platform)).merchant
    await secmerchants.maintain(platform, a.id, reg())
    assert await secmerchants.list_secondary(platform, b.id) == []
    with pytest.raises(TillpayError) as e:
        await secmerchants.query_status(platform, b.id, "MID_1001", "SID_2001")
    assert e.value.code is Code.NOT_FOUND
    with pytest.raises(TillpayError):
        await secmerchants.set_status(platform, b.id, "MID_1001", None, "disabled", "not yours")
    # B registers the same ids: its own rows, A's untouched.
    await secmerchants.maintain(platform, b.id, reg(secondary_merchant_name="Other shop"))
    [a_sm] = await secmerchants.list_secondary(platform, a.id)
    [b_sm] = await secmerchants.list_secondary(platform, b.id)
    assert (a_sm.name, b_sm.name) == ("Mika's coffee shop", "Other shop")


BAD = [
    ({"secondary_merchant_id": "MID 1"}, "secondary_merchant_id"),
    ({"secondary_merchant_id": "M-1"}, "secondary_merchant_id"),
    ({"secondary_merchant_name": ""}, "secondary_merchant_name"),
    ({"secondary_merchant_name": "x" * 129}, "secondary_merchant_name"),
    ({"store_name": "x" * 257}, "store_name"),
    ({"store_id": "a b"}, "store_id"),
    ({"store_country": "USA"}, "store_country"),
    ({"store_country": "us"}, "store_country"),
    ({"store_industry": "54"}, "store_industry"),
    ({"store_industry": "4121"}, "extend_params"),
    ({"secondary_merchant_type": "COMPANY"}, "secondary_merchant_type"),
    ({"internal_store_photo": "ftp://x/y.jpg"}, "internal_store_photo"),
    ({"contact_email": "nobody"}, "contact_email"),
    ({"contact_no": "call me"}, "contact_no"),
    ({"extend_params": "{not json"}, "extend_params"),
    ({"store_industry": "4121", "extend_params": '[{"operation_id": "D1"}]'}, "contact_person"),
]


@pytest.mark.parametrize(("over", "names"), BAD)
async def test_every_bad_field_is_refused_by_name_and_changes_nothing(
    platform: Platform, over: dict[str, str], names: str
) -> None:
    m = (await f.merchant(platform)).merchant
    with pytest.raises(TillpayError) as e:
        await secmerchants.maintain(platform, m.id, reg(**over))
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    assert names in e.value.detail
    assert await count(platform, t.secondary_merchants) == 0
    assert await count(platform, t.secondary_stores) == 0


async def test_a_taxi_registers_with_its_drivers(platform: Platform) -> None:
    m = (await f.merchant(platform)).merchant
    drivers = '[{"operation_id": "D1", "contact_person": "Ann", "contact_way": "+852 1234-5678"}]'
    done = await secmerchants.maintain(
        platform, m.id, reg(store_industry="4121", store_id="AB1234", extend_params=drivers)
    )
    assert done.created


async def test_a_pay_naming_a_registered_secondary_merchant_records_its_registered_names(
    platform: Platform,
) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform)).merchant
    c = await f.customer(platform, "USD", balance=100_000)
    await secmerchants.maintain(platform, m.id, reg())
    out = await payments.pay(
        platform,
        pay_cmd(m, await f.code(platform, c), "SM-1", secondary_merchant_id="MID_1001", store_id="SID_2001"),
    )
    v = out.payment
    assert v.status is Status.TRADE_SUCCESS
    assert (v.secondary_merchant_id, v.secondary_merchant_name, v.secondary_merchant_industry) == (
        "MID_1001",
        "Mika's coffee shop",
        "5499",
    )
    assert (v.store_id, v.store_name) == ("SID_2001", "Mika's coffee shop Burlington")
    # As stored, and as a query returns it.
    q = await payments.query(platform, m, partner_trans_id="SM-1")
    assert (q.secondary_merchant_name, q.store_name) == (
        "Mika's coffee shop",
        "Mika's coffee shop Burlington",
    )
    # What the pay sends itself wins over the registration.
    out2 = await payments.pay(
        platform,
        pay_cmd(
            m,
            await f.code(platform, c),
            "SM-2",
            secondary_merchant_id="MID_1001",
            secondary_merchant_name="Mika's",
            secondary_merchant_industry="5812",
            store_id="SID_2001",
            store_name="Counter 2",
        ),
    )
    v2 = out2.payment
    assert (v2.secondary_merchant_name, v2.secondary_merchant_industry, v2.store_name) == (
        "Mika's",
        "5812",
        "Counter 2",
    )


async def test_a_pay_naming_an_unregistered_secondary_merchant_is_recorded_as_sent(
    platform: Platform,
) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform)).merchant
    c = await f.customer(platform, "USD", balance=100_000)
    out = await payments.pay(
        platform,
        pay_cmd(
            m,
            await f.code(platform, c),
            "U-1",
            secondary_merchant_id="MID_9",
            secondary_merchant_name="Walk-in",
            store_id="S9",
        ),
    )
    v = out.payment
    assert v.status is Status.TRADE_SUCCESS
    assert (
        v.secondary_merchant_id,
        v.secondary_merchant_name,
        v.secondary_merchant_industry,
        v.store_name,
    ) == (
        "MID_9",
        "Walk-in",
        None,
        None,
    )


@pytest.mark.parametrize("store", [None, "SID_2001"])
async def test_a_pay_naming_a_disabled_secondary_merchant_or_store_is_refused_and_records_nothing(
    platform: Platform, store: str | None
) -> None:
    await f.rates(platform)
    m = (await f.merchant(platform)).merchant
    c = await f.customer(platform, "USD", balance=100_000)
    await secmerchants.maintain(platform, m.id, reg())
    await secmerchants.set_status(platform, m.id, "MID_1001", store, "disabled", "closed for audit")
    status = await secmerchants.query_status(platform, m.id, "MID_1001", "SID_2001")
    assert (status.active, status.reject_reason) == (False, "closed for audit")
    code = await f.code(platform, c)
    cmd = pay_cmd(m, code, "D-1", secondary_merchant_id="MID_1001", store_id="SID_2001")
    with pytest.raises(TillpayError) as e:
        await payments.pay(platform, cmd)
    assert e.value.code is Code.ILLEGAL_ARGUMENT and "disabled" in e.value.detail
    assert await count(platform, t.payments) == 0
    assert await count(platform, t.code_uses) == 0
    # A registration again does not undo the operator's disable; enabling does, and the code still pays.
    await secmerchants.maintain(platform, m.id, reg())
    with pytest.raises(TillpayError):
        await payments.pay(platform, cmd)
    await secmerchants.set_status(platform, m.id, "MID_1001", store, "active")
    assert (await payments.pay(platform, replace(cmd, code=await f.code(platform, c)))).code is None


@pytest.mark.parametrize("careful", [False, True])
async def test_the_one_statement_read_and_the_careful_path_record_and_refuse_alike(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, careful: bool
) -> None:
    if careful:
        # The careful path runs when the one-statement read cannot decide (wrong codes counted, a
        # known id...); forcing it shows both paths take the registration the same way.
        async def undecided(*args: Any) -> None:
            return None

        monkeypatch.setattr(payments, "_payer_at_once", undecided)
    await f.rates(platform)
    m = (await f.merchant(platform)).merchant
    c = await f.customer(platform, "USD", balance=100_000)
    await secmerchants.maintain(platform, m.id, reg())
    await secmerchants.maintain(platform, m.id, reg(store_id="SID_OFF"))
    await secmerchants.set_status(platform, m.id, "MID_1001", "SID_OFF", "disabled")
    ok = await payments.pay(
        platform,
        pay_cmd(m, await f.code(platform, c), "P-1", secondary_merchant_id="MID_1001", store_id="SID_2001"),
    )
    assert (ok.payment.secondary_merchant_name, ok.payment.secondary_merchant_industry) == (
        "Mika's coffee shop",
        "5499",
    )
    with pytest.raises(TillpayError) as e:
        await payments.pay(
            platform,
            pay_cmd(
                m, await f.code(platform, c), "P-2", secondary_merchant_id="MID_1001", store_id="SID_OFF"
            ),
        )
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    assert await count(platform, t.payments) == 1
