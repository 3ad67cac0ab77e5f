"""The gateway while the database is down. MAPI: a gateway refusal (``is_success=F``, ``SYSTEM_ERROR``), never an unsigned
``is_success=T`` answer that the public clients' signature check rejects.

PostgreSQL only: the database is taken away from a running server by refusing its connections and
ending the ones it holds, which a SQLite file cannot be made to do while the server has it open.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

import dialect_clients
import mapi_helpers
from conftest import LiveServer, _pg_conn, pg_admin_url
from tillpay.client import GatewayRejected

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@contextmanager
def database_down(db_url: str) -> Iterator[None]:
    """No new connection to the server's database, and the open ones ended; back afterwards."""
    name = make_url(db_url).database
    with _pg_conn(pg_admin_url()) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_request_while_the_database_is_down_is_refused_and_tells_the_till_to_send_it_again(
    live: LiveServer, db_url: str
) -> None:
    shop = mapi_helpers.make_shop(live)
    before = mapi_helpers.counts(live)
    code = shop.code(live)
    with shop.client(live, "MD5") as client:
        with database_down(db_url):
            for send in (
                lambda: client.pay("DOWN-1", code, "1.00", "USD", "database down"),
                lambda: client.query("DOWN-1"),
            ):
                # The client's transport also checks each answer by the public clients' rule.
                with pytest.raises(GatewayRejected) as refused:
                    send()
                assert refused.value.error == "SYSTEM_ERROR"
                assert refused.value.detail and "nothing was done" in refused.value.detail
        # Back up: the same pay, sent again, is answered (signed) and pays once.
        paid = client.pay("DOWN-1", code, "1.00", "USD", "database down")
        assert paid.ok and paid.status == "TRADE_SUCCESS"
    after = mapi_helpers.counts(live)
    assert after["payments"] == before["payments"] + 1


def test_open_platform_and_antom_answer_unknown_while_the_database_is_down_and_pay_once_after(
    live: LiveServer, db_url: str
) -> None:
    # What a till must do with the answer: Open Platform code 20000 / ACQ.SYSTEM_ERROR and Antom's
    # resultStatus "U" (UNKNOWN_EXCEPTION) both mean "outcome unknown: query, or send it again", never a
    # final failure (alipay-sdk-python hands back the code; global-open-sdk-python the resultStatus).
    shop, other = dialect_clients.make_shop(live), dialect_clients.make_shop(live)  # two customers' codes
    before = dialect_clients.counts(live)
    open_client, antom = shop.open(), other.antom()
    open_code, antom_code = shop.code(), other.code()
    biz = {
        "out_trade_no": "DOWN-OPEN-1",
        "scene": "bar_code",
        "auth_code": open_code,
        "subject": "database down",
        "total_amount": "1.00",
    }
    # Both credentials are looked up once while the database is up (the gateway caches a merchant).
    assert open_client.call("alipay.trade.query", {"out_trade_no": "DOWN-OPEN-1"}).sub_code
    assert antom.call("inquiryPayment", {"paymentRequestId": "DOWN-ANTOM-1"}).result[0] == "F"
    with database_down(db_url):
        opened = open_client.send("alipay.trade.pay", open_client.params("alipay.trade.pay", biz))
        assert (opened.code, opened.sub_code) == ("20000", "ACQ.SYSTEM_ERROR"), opened.raw
        answered = antom.raw("pay", json.dumps(_antom_pay("DOWN-ANTOM-1", antom_code)))
        assert answered.result == ("U", "UNKNOWN_EXCEPTION"), answered.body
    # Back up: the same requests, sent again, are answered, signed, and each pays once.
    paid = open_client.call("alipay.trade.pay", biz)
    assert paid.code == "10000" and paid["trade_no"], paid.node
    again = antom.call("pay", _antom_pay("DOWN-ANTOM-1", antom_code))
    assert again.result == ("S", "SUCCESS"), again.body
    after = dialect_clients.counts(live)
    assert after["payments"] == before["payments"] + 2


def _antom_pay(request_id: str, code: str) -> dict[str, object]:
    return {
        "productCode": "IN_STORE_PAYMENT",
        "paymentRequestId": request_id,
        "paymentAmount": {"currency": "USD", "value": "100"},
        "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
        "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
        "order": {"orderDescription": "database down", "orderAmount": {"currency": "USD", "value": "100"}},
    }
