"""Issue 14, finding 2 against a running server: a notify URL cannot aim Tillpay inward.

The server here has Tillpay's defaults (no allow-list). Its would-be targets are receivers of the test's
own on loopback, which must see no request at all.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from conftest import LiveServer
from dialect_clients import counts, make_shop
from notify_receivers import FormReceiver
from tillpay.client import GatewayRejected
from tillpay.domain.errors import TillpayError
from tillpay.services import console
from tillpay.services.audit import audit

# (notify URL, what the refusal says); the first four are internal, the rest are refused by shape.
REFUSED = [
    ("http://127.0.0.1:8080/notify", "names a loopback address"),
    ("http://[::1]/notify", "names a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "names a link-local address"),  # not-contacted
    ("http://192.168.0.1/notify", "names a private address"),  # not-contacted
    ("http://shop.example:22/notify", "uses port 22"),
    ("http://admin:secret@shop.example/notify", "must not contain a user name or password"),
    ("ftp://shop.example/notify", ""),  # the dialects' own URL patterns call it malformed first
]


def test_every_dialect_and_the_console_refuse_an_internal_notify_url_at_the_request(live: LiveServer) -> None:
    shop = make_shop(live)
    before = counts(live)
    for n, (url, why) in enumerate(REFUSED):
        # MAPI: a gateway error, ILLEGAL_ARGUMENT.
        with shop.mapi() as c, pytest.raises(GatewayRejected) as e:
            c.pay(f"M-{n}", shop.code(), "1.00", "USD", "Tea", notify_url=url)
        assert e.value.error == "ILLEGAL_ARGUMENT" and why in str(e.value.detail), (url, e.value)
        # Open Platform: 40002 isv.invalid-notify-url.
        biz = {"out_trade_no": f"O-{n}", "scene": "bar_code", "auth_code": shop.code(), "subject": "Tea"}
        reply = shop.open().call("alipay.trade.pay", {**biz, "total_amount": "1.00"}, notify_url=url)
        assert (reply.code, reply.sub_code) == ("40002", "isv.invalid-notify-url"), (url, reply.node)
        assert why in reply["sub_msg"]
        # Antom: PARAM_ILLEGAL, for the payment's and a refund's notify URL alike.
        pay = shop.antom().pay(f"A-{n}", shop.code(), 100, "USD", paymentNotifyUrl=url)
        assert pay.result == ("F", "PARAM_ILLEGAL") and why in pay.body["result"]["resultMessage"], url
        # The console's default notify URL.
        with pytest.raises(TillpayError) as refused:
            live.run(lambda p, url=url: console.set_notify_url(p, shop.merchant, url))
        assert why in refused.value.detail
    assert counts(live) == before  # nothing was stored or queued


def _notifications(live: LiveServer, merchant_id: int) -> list[Any]:
    return live.run(lambda p: console.notifications(p, merchant_id))  # type: ignore[no-any-return]


def _wait_attempts(live: LiveServer, merchant_id: int, n: int) -> Any:
    """The first notification once it has ``n`` attempts and has ended (delivered or failed)."""
    deadline = time.monotonic() + 20
    while True:
        # Not "pending": after a Redeliver it is pending until the worker has sent it again.
        notes = _notifications(live, merchant_id)
        if notes and len(notes[0].attempts) >= n and notes[0].status not in ("sending", "pending"):
            return notes[0]
        assert time.monotonic() < deadline, notes
        time.sleep(0.05)


def test_a_name_for_loopback_is_refused_when_connecting_and_nothing_is_connected_to(db_url: str) -> None:
    # Every port is allowed here, so only the address stands between the worker and the receiver.
    live = LiveServer(db_url, notify_allow_ports="1-65535")
    receiver = FormReceiver()
    try:
        shop = make_shop(live)
        url = receiver.url.replace("127.0.0.1", "localhost")  # passes the edge: only a name
        with shop.mapi() as c:
            assert c.pay("N-1", shop.code(), "1.00", "USD", "Tea", notify_url=url).ok
        note = _wait_attempts(live, shop.merchant.id, 1)
        assert note.status == "failed" and len(note.attempts) == 1  # refused: not retried
        (attempt,) = note.attempts
        assert attempt.http_status is None and attempt.response is None
        assert attempt.error == "refused: localhost does not resolve to a public address"
        # "Redeliver" repeats the refusal, never the request: no port scan through the console.
        assert live.run(lambda p: console.redeliver(p, shop.merchant.id, note.notify_id))
        again = _wait_attempts(live, shop.merchant.id, 2)
        assert again.status == "failed" and again.attempts[1].error == attempt.error
        assert receiver.received == []
    finally:
        receiver.close()
        live.stop()
    assert not live.run(audit)
