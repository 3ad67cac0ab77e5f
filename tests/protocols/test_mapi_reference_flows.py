"""The rest of the suite's MAPI scenarios, driven by the reference client (tests/mapi_reference.py), which
follows the public MAPI clients (melitigo/AlipaySDK, Yurunsoft/PaySDK, Alipay's classic demo) and imports
none of Tillpay's signing, protocol or client code: the customer's confirmation and its timeout, the
over-balance refusal, partial refunds, another merchant's order, a precreated order paid by the wallet,
every kind of notification (pay, close, refund, reverse) with each sign type, signed refusals, the
secondary-merchant services and a pay naming them, and the scheme's ``payment_inst``. Every answer is
verified by the public rule (a signed refusal over melitigo's ``error=<value>`` string); every
notification by the classic notify rule. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import mapi_reference as ref
from conftest import LiveServer
from mapi_helpers import Shop, counts, make_shop
from notify_receivers import FormReceiver
from tillpay.services import payments, secmerchants
from tillpay.store import tables as t
from web.test_notify_inspector_http import _owner, _sign_in

PAY = "alipay.acquire.overseas.spot.pay"
QUERY = "alipay.acquire.overseas.query"
CANCEL = "alipay.acquire.cancel"
REFUND = "alipay.acquire.overseas.spot.refund"
REFUND_QUERY = "alipay.acquire.refund.query"
PRECREATE = "alipay.acquire.precreate"
MAINTAIN = "alipay.overseas.secmerchant.offline.maintain"
QUERY_STATUS = "alipay.overseas.secmerchant.maintain.queryStatus"
PIN = "123456"  # the factories' customer PIN


def _ms() -> str:
    return str(int(time.time() * 1000))


def _beijing(offset: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + timedelta(hours=8) + offset).strftime("%Y-%m-%d %H:%M:%S")


def _pay(
    c: ref.ReferenceClient, shop: Shop, live: LiveServer, ptid: str, amount: str, currency: str, **kw: str
) -> ref.Answer:
    params = {"trans_name": "Watch", **kw}
    return c.call(
        PAY,
        alipay_seller_id=shop.partner,
        partner_trans_id=ptid,
        buyer_identity_code=shop.code(live),
        trans_amount=amount,
        currency=currency,
        **params,
    )


def _fast_notifications(live: LiveServer) -> None:
    live.server.config.app.state.platform.settings = live.settings.model_copy(
        update={"notify_schedule": "0,0,0"}
    )


def _verified(shop: Shop, form: dict[str, str]) -> dict[str, str]:
    """A notification as a merchant checks it (classic rule); a changed field must fail the check."""
    m = shop.new.merchant
    assert ref.verify_notification(form, md5_key=m.md5_key, public_key_pem=m.gateway_public_key), form
    tampered = {**form, "trade_status": form["trade_status"] + "X"}
    assert not ref.verify_notification(tampered, md5_key=m.md5_key, public_key_pem=m.gateway_public_key)
    return form


def _by_action(receiver: FormReceiver, n: int) -> dict[str, dict[str, str]]:
    receiver.wait(n)
    return {f["notify_action_type"]: f for f in receiver.received}


@pytest.fixture
def receiver() -> Iterator[FormReceiver]:
    r = FormReceiver()
    yield r
    r.close()


# ---------------------------------------------------------------------- the customer's confirmation


@pytest.mark.loopback_receivers
def test_a_pay_waits_for_the_customer_then_pays_refunds_and_reverses_each_notified_and_verified(
    live: LiveServer, receiver: FormReceiver
) -> None:
    """RSA (SHA1withRSA) through the classic demo's POST: UNKNOW / WAIT_BUYER_PAY, the till polls, the
    customer confirms, then a partial refund and a cancel of the rest; four notifications."""
    _fast_notifications(live)
    shop = make_shop(live, currency="CNY")
    c = shop.reference(live, "RSA", "classic")
    wait = _pay(c, shop, live, "CF-1", "2500.00", "CNY", notify_url=receiver.url)
    assert (wait["result_code"], wait["alipay_trans_status"], wait["error"]) == (
        "UNKNOW",
        "WAIT_BUYER_PAY",
        "WAIT_BUYER_PAY",
    )
    assert c.call(QUERY, partner_trans_id="CF-1")["alipay_trans_status"] == "WAIT_BUYER_PAY"
    assert receiver.received == []  # nothing final yet
    live.run(lambda p: payments.confirm(p, shop.customer.user.id, PIN))
    paid = c.call(QUERY, partner_trans_id="CF-1")
    assert (paid["result_code"], paid["alipay_trans_status"]) == ("SUCCESS", "TRADE_SUCCESS")
    assert paid["alipay_trans_id"] == wait["alipay_trans_id"] and paid["trans_amount_cny"] == "2500.00"
    refund = c.call(
        REFUND,
        partner_trans_id="CF-1",
        partner_refund_id="CF-1-R",
        refund_amount="500.00",
        currency="CNY",
        notify_url=receiver.url,
    )
    assert refund["result_code"] == "SUCCESS"
    cancel = c.call(CANCEL, out_trade_no="CF-1", timestamp=_ms())
    assert (cancel["result_code"], cancel["retry_flag"], cancel["action"]) == ("SUCCESS", "N", "refund")
    notes = _by_action(receiver, 3)
    assert sorted(notes) == ["payByAccountAction", "refundFPAction", "reverseAction"]
    for form in notes.values():
        assert form["sign_type"] == "RSA" and form["out_trade_no"] == "CF-1"
        _verified(shop, form)
    assert notes["refundFPAction"]["refund_amount"] == "500.00"
    # The cancel's reversal is notified to the pay's notify_url: the order closed after it was paid.
    reverse = notes["reverseAction"]
    assert (reverse["trade_status"], reverse["trade_no"]) == ("TRADE_CLOSED", wait["alipay_trans_id"])
    assert reverse["gmt_payment"] and reverse["gmt_close"] and "close_reason" not in reverse
    assert shop.balance(live) == 1_000_000


@pytest.mark.loopback_receivers
def test_nobody_confirms_the_till_cancels_and_the_close_is_notified(
    live: LiveServer, receiver: FormReceiver
) -> None:
    """MD5 in GBK, signed with ``_input_charset`` in the URL only (melitigo ``execute``)."""
    _fast_notifications(live)
    shop = make_shop(live, currency="CNY")
    c = shop.reference(live, "MD5", "url-charset", "GBK")
    wait = _pay(c, shop, live, "NC-1", "2500.00", "CNY", notify_url=receiver.url, trans_name="手表")
    assert wait["result_code"] == "UNKNOW"
    cancel = c.call(CANCEL, trade_no=wait["alipay_trans_id"], timestamp=_beijing())
    assert (cancel["result_code"], cancel["action"], cancel["out_trade_no"]) == ("SUCCESS", "close", "NC-1")
    closed = c.call(QUERY, alipay_trans_id=wait["alipay_trans_id"])
    assert closed["alipay_trans_status"] == "TRADE_CLOSED"
    form = _verified(shop, _by_action(receiver, 1)["closeTradeAction"])
    assert (form["trade_status"], form["subject"], form["sign_type"]) == ("TRADE_CLOSED", "手表", "MD5")
    assert live.run(lambda p: payments.pending_for_user(p, shop.customer.user.id)) == []
    assert shop.balance(live) == 1_000_000


@pytest.mark.loopback_receivers
def test_an_over_balance_pay_above_the_confirm_limit_is_refused_at_once_and_not_notified(
    live: LiveServer, receiver: FormReceiver
) -> None:
    # 2500.00 CNY is above the 2000.00 CNY confirm limit and above the customer's 2000.00 CNY.
    shop = make_shop(live, currency="CNY", balance=200_000)
    code = shop.code(live)
    c = shop.reference(live, "RSA2", "get")
    pay = c.call(
        PAY,
        alipay_seller_id=shop.partner,
        partner_trans_id="OB-1",
        buyer_identity_code=code,
        trans_name="TV",
        trans_amount="2500.00",
        currency="CNY",
        notify_url=receiver.url,
    )
    assert (pay["result_code"], pay["error"]) == ("FAILED", "BUYER_BALANCE_NOT_ENOUGH")
    assert pay["alipay_trans_status"] != "WAIT_BUYER_PAY"
    assert live.run(lambda p: payments.pending_for_user(p, shop.customer.user.id)) == []
    assert c.call(QUERY, partner_trans_id="OB-1")["close_reason"] == "BUYER_BALANCE_NOT_ENOUGH"
    assert shop.balance(live) == 200_000 and shop.code(live) == code
    assert counts(live)["outbox"] == 0  # a pay that fails synchronously is not notified


# ------------------------------------------------------------------------------- refunds and orders


def test_partial_refunds_never_exceed_the_payment_and_gmt_create_is_beijing_time(live: LiveServer) -> None:
    shop = make_shop(live, currency="CNY")
    c = shop.reference(live, "MD5", "classic")
    paid = _pay(c, shop, live, "PR-1", "100.00", "CNY")
    assert paid["result_code"] == "SUCCESS"
    for prid, amount in (("PR-1-A", "30.00"), ("PR-1-B", "30.00")):
        refund = c.call(
            REFUND, partner_trans_id="PR-1", partner_refund_id=prid, refund_amount=amount, currency="CNY"
        )
        assert refund["result_code"] == "SUCCESS"
    over = c.call(
        REFUND, partner_trans_id="PR-1", partner_refund_id="PR-1-C", refund_amount="40.01", currency="CNY"
    )
    assert (over["result_code"], over["error"]) == ("FAILED", "REFUND_AMT_RESTRICTION")
    rest = c.call(
        REFUND, partner_trans_id="PR-1", partner_refund_id="PR-1-C", refund_amount="40.00", currency="CNY"
    )
    assert rest["result_code"] == "SUCCESS"
    assert c.call(QUERY, partner_trans_id="PR-1")["refund_amount_total"] == "100.00"
    rq = c.call(REFUND_QUERY, out_trade_no="PR-1", out_return_no="PR-1-B")
    assert (rq["response_code"], rq["refund_result_code"], rq["out_return_no"]) == (
        "SUCCESS",
        "SUCCESS",
        "PR-1-B",
    )

    async def created(p: Any) -> datetime:
        async with p.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.refunds.c.created_at).where(t.refunds.c.partner_refund_id == "PR-1-B")
                )
            ).one()
        return row.created_at  # type: ignore[no-any-return]

    at = live.run(created)
    assert rq["gmt_create"] == (at.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    assert shop.balance(live) == 1_000_000


def test_another_merchants_order_cannot_be_refunded_cancelled_or_queried(live: LiveServer) -> None:
    a, b = make_shop(live, currency="CNY"), make_shop(live, currency="CNY")
    ca, cb = a.reference(live, "RSA2"), b.reference(live, "MD5")
    paid = _pay(ca, a, live, "AO-1", "10.00", "CNY")
    refund = cb.call(
        REFUND, partner_trans_id="AO-1", partner_refund_id="AO-1-R", refund_amount="1.00", currency="CNY"
    )
    assert (refund["result_code"], refund["error"]) == ("FAILED", "TRADE_NOT_EXIST")
    query = cb.call(QUERY, alipay_trans_id=paid["alipay_trans_id"])
    assert (query["result_code"], query["error"]) == ("FAIL", "TRADE_NOT_EXIST")
    cancel = cb.call(CANCEL, trade_no=paid["alipay_trans_id"], timestamp=_ms())
    assert (cancel["result_code"], cancel["detail_error_code"]) == ("FAIL", "TRADE_NOT_EXIST")
    assert cb.call(REFUND_QUERY, out_trade_no="AO-1", out_return_no="x")["response_code"] == "TRADE_NOT_EXIST"
    assert cb.call(CANCEL, out_trade_no="AO-1", timestamp=_ms())["action"] == "none"  # B's own id space
    assert ca.call(QUERY, partner_trans_id="AO-1")["alipay_trans_status"] == "TRADE_SUCCESS"


@pytest.mark.loopback_receivers
def test_a_precreated_order_paid_in_the_wallet_is_queried_and_notified(
    live: LiveServer, receiver: FormReceiver
) -> None:
    _fast_notifications(live)
    shop = make_shop(live)
    c = shop.reference(live, "RSA2", "classic")
    pre = c.call(
        PRECREATE,
        out_trade_no="QP-1",
        subject="Lunch set",
        total_fee="5.00",
        currency="USD",
        timestamp=_ms(),
        notify_url=receiver.url,
    )
    assert pre["result_code"] == "SUCCESS"
    trade_no = pre["trade_no"]
    live.run(lambda p: payments.confirm(p, shop.customer.user.id, PIN, trade_no, precreated=True))
    q = c.call(QUERY, partner_trans_id="QP-1")
    assert (q["alipay_trans_status"], q["trans_amount_cny"]) == ("TRADE_SUCCESS", "35.51")
    form = _verified(shop, _by_action(receiver, 1)["payByAccountAction"])
    assert (form["trade_no"], form["trade_status"], form["sign_type"]) == (trade_no, "TRADE_SUCCESS", "RSA2")


# ----------------------------------------------------------------------------------- signed refusals


@pytest.mark.parametrize("sign_type", ["MD5", "RSA", "RSA2"])
def test_signed_refusals_verify_over_melitigos_error_string_and_a_changed_one_does_not(
    live: LiveServer, sign_type: str
) -> None:
    shop = make_shop(live)
    c = shop.reference(live, sign_type)
    before = counts(live)
    refusals = {
        "bad amount": c.signed(
            PAY,
            {
                "alipay_seller_id": shop.partner,
                "partner_trans_id": "SR-1",
                "buyer_identity_code": shop.code(live),
                "trans_name": "x",
                "trans_amount": "-1",
                "currency": "USD",
            },
        ),
        "cancel without ids": c.signed(CANCEL, {"timestamp": _ms()}),
        "stale timestamp": c.signed(CANCEL, {"out_trade_no": "SR-2", "timestamp": "1456507704121"}),
        "precreate without amount": c.signed(
            PRECREATE, {"out_trade_no": "SR-3", "subject": "x", "currency": "USD", "timestamp": _ms()}
        ),
        "tampered": {**c.signed(QUERY, {"partner_trans_id": "SR-4"}), "partner_trans_id": "SR-5"},
    }
    for name, params in refusals.items():
        answer = c.send(params)
        assert not answer.is_success and answer.sign and answer.sign_type == sign_type, name
        c.check(answer)  # verifies over error=<value>
        assert answer.detail, name
        forged = ref.Answer(**{**answer.__dict__, "error": "SYSTEM_ERROR"})
        with pytest.raises(ref.ReferenceSignatureError):
            c.check(forged)
    assert c.send(refusals["tampered"]).error == "ILLEGAL_SIGN"
    assert counts(live) == before


# ------------------------------------------------------------------------------- secondary merchants


def _registration(**over: str) -> dict[str, str]:
    base = {
        "timestamp": _beijing(),
        "secondary_merchant_name": "Harbour Noodles",
        "secondary_merchant_id": "MID_7",
        "store_id": "SID_70",
        "store_name": "Harbour Noodles Quay",
        "store_country": "HK",
        "store_address": "1 Quay Street, Central",
        "store_industry": "5812",
    }
    base.update(over)
    return base


@pytest.mark.loopback_receivers
def test_secondary_merchant_services_and_a_pay_naming_the_store_through_the_classic_demo_post(
    live: LiveServer, receiver: FormReceiver
) -> None:
    _fast_notifications(live)
    shop = make_shop(live)
    c = shop.reference(live, "MD5", "classic")
    assert c.call(MAINTAIN, **_registration())["result_code"] == "SUCCESS"
    # Malformed: a signed refusal that verifies, and nothing stored.
    bad = c.send(c.signed(MAINTAIN, _registration(store_industry="55", store_id="SID_71")))
    assert (bad.is_success, bad.error) == (False, "ILLEGAL_ARGUMENT") and bad.detail
    c.check(bad)
    stale = c.send(c.signed(MAINTAIN, _registration(timestamp=_beijing(-timedelta(minutes=31)))))
    assert stale.error == "ILLEGAL_ARGUMENT"
    status = c.call(
        QUERY_STATUS,
        timestamp=_beijing(),
        secondary_merchant_id="MID_7",
        store_id="SID_70",
        payment_method="INSTORE_PAYMENT",
    )
    assert (status["result_code"], status["status"]) == ("SUCCESS", "APPROVED")
    unknown = c.call(
        QUERY_STATUS,
        timestamp=_beijing(),
        secondary_merchant_id="MID_7",
        store_id="SID_71",
        payment_method="INSTORE_PAYMENT",
    )
    assert (unknown["result_code"], unknown["error"]) == ("FAIL", "NOT_FOUND")
    paid = _pay(
        c,
        shop,
        live,
        "SMR-1",
        "12.50",
        "USD",
        notify_url=receiver.url,
        extend_info=json.dumps(
            {"secondary_merchant_id": "MID_7", "store_id": "SID_70", "terminal_id": "T-3"}
        ),
    )
    assert paid["result_code"] == "SUCCESS"
    form = _verified(shop, _by_action(receiver, 1)["payByAccountAction"])
    assert (form["secondary_merchant_name"], form["store_name"], form["terminal_id"]) == (
        "Harbour Noodles",  # filled from the registration
        "Harbour Noodles Quay",
        "T-3",
    )
    m = shop.new.merchant
    live.run(lambda p: secmerchants.set_status(p, m.id, "MID_7", "SID_70", "disabled", "licence expired"))
    disabled = c.call(
        QUERY_STATUS,
        timestamp=_beijing(),
        secondary_merchant_id="MID_7",
        store_id="SID_70",
        payment_method="INSTORE_PAYMENT",
    )
    assert (disabled["status"], disabled["reject_reason"]) == ("FAILED", "licence expired")
    before = counts(live)
    refused = c.send(
        c.signed(
            PAY,
            {
                "alipay_seller_id": shop.partner,
                "partner_trans_id": "SMR-2",
                "buyer_identity_code": shop.code(live),
                "trans_name": "Noodles",
                "trans_amount": "9.00",
                "currency": "USD",
                "extend_info": json.dumps({"secondary_merchant_id": "MID_7", "store_id": "SID_70"}),
            },
        )
    )
    assert (refused.is_success, refused.error) == (False, "ILLEGAL_ARGUMENT") and "disabled" in (
        refused.detail or ""
    )
    c.check(refused)
    assert counts(live) == before
    [sm] = live.run(lambda p: secmerchants.list_secondary(p, m.id))
    assert [s.store_id for s in sm.stores] == ["SID_70"]


# ------------------------------------------------------------------------------------- payment_inst


def test_payment_inst_is_the_schemes_setting(live: LiveServer) -> None:
    live.server.config.app.state.platform.settings = live.settings.model_copy(
        update={"payment_inst": "ALIPAYHK"}
    )
    shop = make_shop(live, currency="CNY")
    c = shop.reference(live, "RSA2", "classic")
    assert _pay(c, shop, live, "PI-1", "8.00", "CNY")["payment_inst"] == "ALIPAYHK"
    assert c.call(QUERY, partner_trans_id="PI-1")["payment_inst"] == "ALIPAYHK"


# ------------------------------------------------------------------------------ shown in the console


def test_where_a_pay_happened_is_shown_in_the_console_pages_and_its_csv(live: LiveServer) -> None:
    """extend_info's names, from a classic-demo till, on the Stores page, the payment, the list and the CSV."""
    shop = make_shop(live)
    c = shop.reference(live, "MD5", "classic")
    assert c.call(MAINTAIN, **_registration())["result_code"] == "SUCCESS"
    extend = {"secondary_merchant_id": "MID_7", "store_id": "SID_70", "terminal_id": "POS-42"}
    paid = _pay(c, shop, live, "CON-1", "3.00", "USD", extend_info=json.dumps(extend))
    assert paid["result_code"] == "SUCCESS"
    trade_no = paid["alipay_trans_id"]
    live.run(lambda p: _owner(p, shop.partner))
    web = _sign_in(live, shop.partner)
    try:
        stores = web.get("/console/stores")
        assert stores.status_code == 200
        assert "MID_7" in stores.text and "Harbour Noodles Quay" in stores.text and "5812" in stores.text
        page = web.get(f"/console/payments/{trade_no}").text
        assert "SID_70 / POS-42" in page and "Harbour Noodles Quay" in page
        assert "Harbour Noodles (MID_7), MCC 5812" in page
        assert "Harbour Noodles (MID_7, MCC 5812)" in web.get("/console/payments").text
        rows = list(csv.DictReader(io.StringIO(web.get("/console/payments.csv").text)))
    finally:
        web.close()
    [row] = [r for r in rows if r["trade_no"] == trade_no]
    assert (row["store_id"], row["terminal_id"], row["store_name"]) == (
        "SID_70",
        "POS-42",
        "Harbour Noodles Quay",
    )
    assert (
        row["secondary_merchant_id"],
        row["secondary_merchant_name"],
        row["secondary_merchant_industry"],
    ) == (
        "MID_7",
        "Harbour Noodles",
        "5812",
    )


def test_a_precreate_business_failure_is_spelled_as_its_model(live: LiveServer) -> None:
    """AlipayAcquirePrecreateResponse: ``FAIL`` with ``detail_error_code``/``detail_error_des``, no ``error``."""
    shop = make_shop(live)
    c = shop.reference(live, "RSA2", "classic")
    base = {"subject": "x", "total_fee": "1.00", "timestamp": _ms()}
    euro = c.call(PRECREATE, out_trade_no="PF-1", currency="EUR", **base)
    assert (euro["result_code"], euro["detail_error_code"]) == ("FAIL", "CURRENCY_NOT_SUPPORT")
    assert euro["detail_error_des"] and "error" not in euro.fields
    assert c.call(PRECREATE, out_trade_no="PF-2", currency="USD", **base)["result_code"] == "SUCCESS"
    again = c.call(PRECREATE, out_trade_no="PF-2", currency="USD", **{**base, "total_fee": "2.00"})
    assert (again["result_code"], again["detail_error_code"]) == ("FAIL", "REPEAT_REQ_INCONSISTENT")
    assert "error" not in again.fields


def test_the_charset_in_url_and_body_is_compared_as_written(live: LiveServer) -> None:
    """``utf-8`` in the URL and ``UTF-8`` in the signed body: it cannot be told which was signed."""
    shop = make_shop(live)
    c = shop.reference(live, "MD5", "classic")
    signed = c.signed(QUERY, {"partner_trans_id": "CS-1"})
    r = httpx.post(
        live.url + "/gateway.do?_input_charset=utf-8",
        content=urllib.parse.urlencode(signed).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    answer = ref.parse(r.content, r.headers["content-type"])
    assert (answer.is_success, answer.error) == (False, "ILLEGAL_ARGUMENT")
    assert "'utf-8'" in (answer.detail or "") and "'UTF-8'" in (answer.detail or "")
    c.check(answer)
    lower = shop.reference(live, "MD5", "classic", "utf-8")  # one value, any case: accepted
    assert lower.call(QUERY, partner_trans_id="CS-1")["error"] == "TRADE_NOT_EXIST"
