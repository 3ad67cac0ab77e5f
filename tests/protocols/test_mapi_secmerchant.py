"""The Retail Store's optional MAPI services over real HTTP: ``alipay.overseas.secmerchant.offline.maintain``
and ``alipay.overseas.secmerchant.maintain.queryStatus`` (fields: ``global/offline_maintain``,
``hkapi/offline_querystatus``, melitigo/AlipaySDK's samples), and spot.pay's ``extend_info`` naming a
secondary merchant (Yurunsoft/PaySDK ``ExtendInfo``; reference §7), stored, queried and notified."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from conftest import LiveServer
from mapi_helpers import Shop, counts, make_shop
from mapi_reference import Style, verify_notification
from notify_receivers import FormReceiver as Receiver
from tillpay.client import GatewayRejected
from tillpay.services import secmerchants
from tillpay.store import tables as t

MAINTAIN = "alipay.overseas.secmerchant.offline.maintain"
QUERY_STATUS = "alipay.overseas.secmerchant.maintain.queryStatus"
BEIJING = timedelta(hours=8)


def beijing_now(offset: timedelta = timedelta(0)) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8, as melitigo/AlipaySDK's sample sends ``timestamp``."""
    return (datetime.now(UTC) + BEIJING + offset).strftime("%Y-%m-%d %H:%M:%S")


def registration(**over: str) -> dict[str, str]:
    """melitigo/AlipaySDK ``AlipayOverseasSecmerchantOfflineMaintainSample``'s fields, fixed ids."""
    base = {
        "timestamp": beijing_now(),
        "secondary_merchant_name": "Mika's coffee shop",
        "secondary_merchant_id": "MID_1001",
        "store_id": "SID_2001",
        "store_name": "Mika's coffee shop",
        "store_country": "US",
        "store_address": "3 Old Concord Rd, Burlington, MA 01803美国",
        "store_industry": "5499",
        "internal_store_photo": "https://www.mikascoffee.test/img_321323.jpg",
        "external_storefront_photo": "https://www.mikascoffee.test/img_321322.jpg",
        "secondary_merchant_type": "INDIVIDUAL",
        "register_country": "US",
        "register_address": "3 Old Concord Rd, Burlington, MA 01803美国",
        "shareholder_name": "mika",
        "shareholder_id": "3428000000000000",
        "contact_no": "18688888888",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v != "<drop>"}


def status_query(**over: str) -> dict[str, str]:
    base = {
        "timestamp": beijing_now(),
        "secondary_merchant_id": "MID_1001",
        "store_id": "SID_2001",
        "payment_method": "INSTORE_PAYMENT",
    }
    base.update(over)
    return base


def secondary_counts(live: LiveServer) -> tuple[int, int]:
    async def go(p: Any) -> tuple[int, int]:
        async with p.engine.connect() as conn:
            a = len((await conn.execute(select(t.secondary_merchants.c.id))).all())
            b = len((await conn.execute(select(t.secondary_stores.c.id))).all())
        return a, b

    return live.run(go)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("sign_type", "style"), [("MD5", "classic"), ("RSA2", "url-charset"), ("RSA", "get")]
)
def test_a_partner_registers_a_secondary_merchant_and_its_store_then_queries_its_status(
    live: LiveServer, sign_type: str, style: Style
) -> None:
    shop = make_shop(live)
    # The client written from the public clients' rules: it signs, sends and verifies as they do.
    c = shop.reference(live, sign_type, style)
    r = c.call(MAINTAIN, **registration())
    assert r.is_success and r["result_code"] == "SUCCESS", r
    assert (r.get("secondary_merchant_id"), r.get("store_id")) == ("MID_1001", "SID_2001")
    s = c.call(QUERY_STATUS, **status_query())
    assert s.is_success and s["result_code"] == "SUCCESS"
    assert (s.get("status"), s.get("payment_method"), s.get("reject_reason")) == (
        "APPROVED",
        "INSTORE_PAYMENT",
        None,
    )
    # The same registration again is accepted and changes nothing; a changed one overwrites.
    assert c.call(MAINTAIN, **registration())["result_code"] == "SUCCESS"
    assert c.call(MAINTAIN, **registration(store_name="Mika's Burlington"))["result_code"] == "SUCCESS"
    [sm] = live.run(lambda p: secmerchants.list_secondary(p, shop.new.merchant.id))
    assert sm.name == "Mika's coffee shop" and sm.stores[0].name == "Mika's Burlington"
    assert sm.stores[0].address == "3 Old Concord Rd, Burlington, MA 01803美国"
    assert secondary_counts(live) == (1, 1)


def test_a_disabled_store_reports_failed_with_the_reason(live: LiveServer) -> None:
    shop = make_shop(live)
    with shop.client(live, "MD5") as c:
        assert c.call(MAINTAIN, registration()).ok
        m = shop.new.merchant
        live.run(
            lambda p: secmerchants.set_status(p, m.id, "MID_1001", "SID_2001", "disabled", "licence expired")
        )
        s = c.call(QUERY_STATUS, status_query())
    assert (s.get("status"), s.get("reject_reason")) == ("FAILED", "licence expired")


def test_the_status_of_a_store_nobody_registered_or_another_partner_registered_is_not_found(
    live: LiveServer,
) -> None:
    a, b = make_shop(live), make_shop(live)
    with a.client(live, "MD5") as c:
        assert c.call(MAINTAIN, registration()).ok
    with b.client(live, "MD5") as c:
        r = c.call(QUERY_STATUS, status_query())
        assert (r.result_code, r.error) == ("FAIL", "NOT_FOUND")
        r = c.call(QUERY_STATUS, status_query(store_id="SID_OTHER"))
        assert (r.result_code, r.error) == ("FAIL", "NOT_FOUND")
        # B's registration under the same ids is B's own; A's stays as it was.
        assert c.call(MAINTAIN, registration(secondary_merchant_name="B's shop")).ok
    [a_sm] = live.run(lambda p: secmerchants.list_secondary(p, a.new.merchant.id))
    assert a_sm.name == "Mika's coffee shop"


def bad_registrations() -> list[dict[str, str]]:
    """Built when the test runs: the timestamps are relative to now, not to collection time."""
    return [
        {"timestamp": "<drop>"},
        {"timestamp": "1456507704121"},  # epoch ms is the precreate format, not this service's
        {"timestamp": "2024-02-30 10:00:00"},
        {"timestamp": beijing_now(-timedelta(minutes=31))},  # "the request expires in 30 minutes"
        {"timestamp": beijing_now(timedelta(minutes=31))},
        {"secondary_merchant_id": "<drop>"},
        {"secondary_merchant_id": "MID-1"},
        {"secondary_merchant_id": "M" * 65},
        {"secondary_merchant_name": "n" * 129},
        {"store_name": "<drop>"},
        {"store_name": "s" * 257},
        {"store_country": "USA"},
        {"store_industry": "55"},
        {"store_industry": "4121"},  # a taxi without its drivers
        {"secondary_merchant_type": "PERSON"},
        {"extend_params": "[1, 2]"},
        {"store_name": 'say "hi"'},  # Alipay: no halfwidth quotation marks in values
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_malformed_registration_is_illegal_argument_with_a_reason_and_changes_nothing(
    live: LiveServer,
) -> None:
    shop = make_shop(live)
    with shop.client(live, "MD5") as c:
        for over in bad_registrations():
            with pytest.raises(GatewayRejected) as e:
                c.call(MAINTAIN, registration(**over))
            assert e.value.error == "ILLEGAL_ARGUMENT", over
            assert e.value.detail, over
        for over in ({"payment_method": "ONLINE_PAYMENT"}, {"store_id": "<drop>"}, {"timestamp": "x"}):
            params = {k: v for k, v in status_query(**over).items() if v != "<drop>"}
            with pytest.raises(GatewayRejected) as e:
                c.call(QUERY_STATUS, params)
            assert e.value.error == "ILLEGAL_ARGUMENT", over
    assert secondary_counts(live) == (0, 0)


# ------------------------------------------------------------------------------ spot.pay extend_info


def pay(shop: Shop, live: LiveServer, ptid: str, extend: Any, **kw: str) -> Any:
    with shop.client(live, "MD5") as c:
        return c.call(
            "alipay.acquire.overseas.spot.pay",
            {
                "alipay_seller_id": shop.partner,
                "partner_trans_id": ptid,
                "buyer_identity_code": shop.code(live),
                "trans_amount": "12.50",
                "currency": "USD",
                "trans_name": "Flat white",
                "extend_info": extend if isinstance(extend, str) else json.dumps(extend),
                **kw,
            },
        )


def stored(live: LiveServer, ptid: str) -> dict[str, Any]:
    async def go(p: Any) -> dict[str, Any]:
        cols = (
            t.payments.c.secondary_merchant_id,
            t.payments.c.secondary_merchant_name,
            t.payments.c.secondary_merchant_industry,
            t.payments.c.store_id,
            t.payments.c.store_name,
            t.payments.c.terminal_id,
        )
        async with p.engine.connect() as conn:
            row = (await conn.execute(select(*cols).where(t.payments.c.partner_trans_id == ptid))).one()
        return dict(row._mapping)

    return live.run(go)  # type: ignore[no-any-return]


@pytest.mark.loopback_receivers
def test_a_pay_naming_a_registered_secondary_merchant_stores_and_notifies_its_names(live: LiveServer) -> None:
    shop = make_shop(live)
    receiver = Receiver()
    try:
        with shop.client(live, "MD5") as c:
            assert c.call(MAINTAIN, registration()).ok
        r = pay(
            shop,
            live,
            "SM-1",
            {"secondary_merchant_id": "MID_1001", "store_id": "SID_2001", "terminal_id": "T1"},
            notify_url=receiver.url,
        )
        assert r.ok, r
        assert stored(live, "SM-1") == {
            "secondary_merchant_id": "MID_1001",
            "secondary_merchant_name": "Mika's coffee shop",  # filled from the registration
            "secondary_merchant_industry": "5499",
            "store_id": "SID_2001",
            "store_name": "Mika's coffee shop",
            "terminal_id": "T1",
        }
        receiver.wait(1)
        note = receiver.received[0]
        assert (note["secondary_merchant_id"], note["secondary_merchant_name"]) == (
            "MID_1001",
            "Mika's coffee shop",
        )
        assert (
            note["secondary_merchant_industry"],
            note["store_id"],
            note["store_name"],
            note["terminal_id"],
        ) == (
            "5499",
            "SID_2001",
            "Mika's coffee shop",
            "T1",
        )
        assert verify_notification(note, md5_key=shop.new.merchant.md5_key)
    finally:
        receiver.httpd.shutdown()


def test_a_pay_with_every_extend_info_field_of_the_public_clients_is_accepted(live: LiveServer) -> None:
    shop = make_shop(live)
    extend = {
        "secondary_merchant_name": "Lotte",
        "secondary_merchant_id": "123",
        "secondary_merchant_industry": "5812",
        "store_id": "A101",
        "store_name": "Lotte Myeongdong",
        "terminal_id": "POS-7",
        "sys_service_provider_id": "2088000000000001",
        "region_code": "KR",  # an AOP key Tillpay does not use: accepted and ignored
    }
    assert pay(shop, live, "ALL-1", extend).ok
    assert stored(live, "ALL-1") == {
        "secondary_merchant_id": "123",
        "secondary_merchant_name": "Lotte",
        "secondary_merchant_industry": "5812",
        "store_id": "A101",
        "store_name": "Lotte Myeongdong",
        "terminal_id": "POS-7",
    }


def test_a_pay_naming_a_disabled_secondary_merchant_is_refused_and_charges_nothing(live: LiveServer) -> None:
    shop = make_shop(live)
    with shop.client(live, "MD5") as c:
        assert c.call(MAINTAIN, registration()).ok
    m = shop.new.merchant
    live.run(lambda p: secmerchants.set_status(p, m.id, "MID_1001", None, "disabled", "terminated"))
    before, balance = counts(live), shop.balance(live)
    with pytest.raises(GatewayRejected) as e:
        pay(shop, live, "D-1", {"secondary_merchant_id": "MID_1001", "store_id": "SID_2001"})
    assert e.value.error == "ILLEGAL_ARGUMENT" and "disabled" in (e.value.detail or "")
    assert counts(live) == before and shop.balance(live) == balance


BAD_EXTEND_INFO = [
    "[]",
    '"store"',
    "42",
    "{not json",
    {"secondary_merchant_name": "n" * 129, "secondary_merchant_id": "M1"},
    {"secondary_merchant_id": "M" * 65},
    {"secondary_merchant_id": "M 1"},
    {"secondary_merchant_industry": "58120", "secondary_merchant_id": "M1"},
    {"secondary_merchant_industry": "food", "secondary_merchant_id": "M1"},
    {"secondary_merchant_name": "no id"},
    {"store_name": "s" * 257},
    {"store_id": "S" * 65},
    {"terminal_id": "T" * 65},
    {"store_id": {"nested": 1}},
    {"terminal_id": True},
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_malformed_extend_info_is_illegal_argument_and_changes_nothing(live: LiveServer) -> None:
    shop = make_shop(live)
    before = counts(live)
    for i, extend in enumerate(BAD_EXTEND_INFO):
        with pytest.raises(GatewayRejected) as e:
            pay(shop, live, f"BAD-{i}", extend)
        assert e.value.error == "ILLEGAL_ARGUMENT", extend
        assert "extend_info" in (e.value.detail or ""), extend
    assert counts(live) == before
