"""The secondary merchant rules without a database: extend_info, registration fields, what a pay records,
and notifications queued before the secondary merchant fields existed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.secmerchant import Registered, SecondaryRef, parse_extend_info, resolve
from tillpay.protocols.mapi import notify
from tillpay.services.platform import Merchant


def test_extend_info_keeps_the_fields_tillpay_uses_and_ignores_the_others() -> None:
    ref = parse_extend_info(
        {
            "secondary_merchant_id": "M_1",
            "store_id": 101,
            "terminal_id": " T1 ",
            "mcc": "5812",
            "region_code": "HK",
        }
    )
    assert ref == SecondaryRef(secondary_merchant_id="M_1", store_id="101", terminal_id="T1")
    assert parse_extend_info({}) == SecondaryRef()
    assert parse_extend_info({"store_id": ""}) == SecondaryRef()


@pytest.mark.parametrize(
    "value",
    [
        [],
        "x",
        None,
        {"store_id": 1.5},
        {"store_id": None, "terminal_id": False},
        {"secondary_merchant_industry": "581", "secondary_merchant_id": "M"},
        {"secondary_merchant_id": "é"},
        {"store_name": "n" * 257},
    ],
)
def test_a_bad_extend_info_is_illegal_argument(value: object) -> None:
    with pytest.raises(TillpayError) as e:
        parse_extend_info(value)
    assert e.value.code is Code.ILLEGAL_ARGUMENT and "extend_info" in e.value.detail


def test_a_pay_takes_what_it_left_out_from_the_registration_and_keeps_what_it_sent() -> None:
    reg = Registered("Registered name", True, "Registered store", "5499", True)
    given = SecondaryRef(secondary_merchant_id="M", store_id="S", store_name="Till 2")
    assert resolve(given, reg) == SecondaryRef(
        secondary_merchant_id="M",
        secondary_merchant_name="Registered name",
        secondary_merchant_industry="5499",
        store_id="S",
        store_name="Till 2",
    )
    assert resolve(given, None) == given
    with pytest.raises(TillpayError):
        resolve(given, Registered("n", False, None, None, None))
    with pytest.raises(TillpayError):
        resolve(given, Registered("n", True, "s", "5499", False))


def test_a_notification_queued_before_the_secondary_fields_existed_still_renders() -> None:
    payment = {
        "partner_trans_id": "P1",
        "trade_no": "T1",
        "status": "TRADE_SUCCESS",
        "price_amount": 100,
        "price_currency": "USD",
        "settle_currency": "USD",
        "created_at": "2026-11-25T10:00:00+00:00",
        "paid_at": "2026-11-25T10:00:00+00:00",
        "closed_at": None,
        "buyer_id": None,
        "buyer_login": None,
        "subject": "x",
        "wallet_amount": None,
        "result_code": None,
        "store_id": "S1",
        "terminal_id": None,
    }
    m = Merchant(1, "2088000000000001", "Shop", "k" * 32, None, "", "", "USD", None, "5411", "active")
    f = notify.fields("n1", "payment", {"payment": payment}, datetime(2026, 11, 25, tzinfo=UTC), m)
    assert f["store_id"] == "S1" and "secondary_merchant_id" not in f and "terminal_id" not in f
