"""The notification inspector's data: each attempt keeps the request exactly as it was POSTed (headers
and body, signature included) beside the merchant's answer; one merchant never sees another's. Real
deliveries to a receiver on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import http.server
import json
import threading
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import select

import factories as f
from conftest import LOOPBACK_RECEIVERS
from notify_receivers import ReceiverServer
from tillpay.domain.errors import TillpayError
from tillpay.outbound import OutboundClient
from tillpay.services import console, payments
from tillpay.services.merchants import NewMerchant
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import outbox
from tillpay.store import tables as t
from tillpay.worker.notifier import UNBUILDABLE, deliver_due

pytestmark = [pytest.mark.anyio, pytest.mark.loopback_receivers]

#: dialect → the merchant's acknowledgement
ACK = {"mapi": b"success", "openapi": b"success", "antom": b'{"result":{"resultStatus":"S"}}'}


class RawReceiver:
    """Records each POST's raw body and headers; answers ``answers[i]`` to the i-th (``ok`` after)."""

    def __init__(self, answers: list[bytes], ok: bytes = b"success") -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                n = len(outer.bodies) - 1
                answer = answers[n] if n < len(answers) else ok
                self.send_response(200)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def _paid(p: Platform, url: str, order: str = "INS-1", dialect: str = "mapi") -> NewMerchant:
    await f.rates(p)
    m = await f.merchant(p, notify_url=url)
    c = await f.customer(p)
    await payments.pay(
        p,
        payments.PayCommand(
            merchant=m.merchant,
            partner_trans_id=order,
            code=await f.code(p, c),
            price_amount=1000,
            price_currency="USD",
            settle_currency="USD",
            subject="Tea",
            dialect=dialect,
            notify_url=url,
        ),
    )
    return m


@pytest.mark.parametrize("dialect", ["mapi", "openapi", "antom"])
async def test_each_attempt_keeps_the_exact_request_and_the_answer(
    platform: Platform, clock: FakeClock, dialect: str
) -> None:
    receiver = RawReceiver([b"<script>alert(1)</script>"], ok=ACK[dialect])
    platform.settings = platform.settings.model_copy(update=LOOPBACK_RECEIVERS)
    try:
        m = await _paid(platform, receiver.url, dialect=dialect)
        async with OutboundClient.from_settings(platform.settings) as client:
            assert await deliver_due(platform, client) == 1  # answered with a script: not acknowledged
            clock.advance(3600)
            assert await deliver_due(platform, client) == 1
        (listed,) = await console.notifications(platform, m.merchant.id)
        n = await console.notification(platform, m.merchant.id, listed.notify_id)
        assert n.status == "delivered" and len(n.attempts) == 2 == len(receiver.bodies)
        for a, body, headers in zip(n.attempts, receiver.bodies, receiver.headers, strict=True):
            # The body kept is byte for byte the body the merchant's server read.
            assert a.request_body is not None and a.request_body.encode("utf-8") == body
            assert a.request_headers is not None
            kept = {k.lower(): v for k, v in a.request_headers.items()}
            assert kept == headers  # every header, as received (Host, Content-Length, ...)
            if dialect == "antom":  # a JSON body; the signature travels in a header
                assert json.loads(body)["notifyId"] == n.notify_id
                assert a.signature == headers["signature"] and "signature=" in a.signature
                assert a.fields == ()
            else:  # signed form fields
                fields = dict(parse_qsl(body.decode()))
                assert a.signature == fields["sign"] and a.signature
                assert dict(a.fields) == fields
            assert not any("key" in k.lower() for k in kept)  # no key of the merchant's, ever
            assert m.merchant.md5_key not in body.decode() and m.merchant.md5_key not in str(kept)
        first, second = n.attempts
        assert first.http_status == 200 and first.response == "<script>alert(1)</script>"
        assert second.response == ACK[dialect].decode()
    finally:
        receiver.close()


async def test_a_merchant_never_reads_another_merchants_notification(platform: Platform) -> None:
    receiver = RawReceiver([])
    platform.settings = platform.settings.model_copy(update=LOOPBACK_RECEIVERS)
    try:
        b = await _paid(platform, receiver.url, "INS-B")
        a = await f.merchant(platform)
        (theirs,) = await console.notifications(platform, b.merchant.id)
        assert (await console.notification(platform, b.merchant.id, theirs.notify_id)).notify_id
        with pytest.raises(TillpayError) as e:
            await console.notification(platform, a.merchant.id, theirs.notify_id)
        assert e.value.code.name == "NOT_FOUND"
    finally:
        receiver.close()


async def test_a_long_body_is_cut_and_an_antom_signature_comes_from_its_header(platform: Platform) -> None:
    m = await _paid(platform, "http://127.0.0.1:9/notify")
    (n,) = await console.notifications(platform, m.merchant.id)
    oid = await _outbox_id(platform, n.notify_id)
    body = "{" + "x" * (2 * outbox.REQUEST_BODY_CHARS) + "}"
    await outbox.record_attempt(
        platform.engine,
        oid,
        outbox.Attempt(
            platform.now(),
            200,
            "fail",
            None,
            request_headers={
                "content-type": "application/json; charset=UTF-8",
                "signature": "algorithm=RSA256,keyVersion=1,signature=abc%2B",
                "Authorization": "Bearer never-kept",
            },
            request_body=outbox.kept_body(body.encode()),
        ),
        attempts=1,
        status="failed",
    )
    (a,) = (await console.notification(platform, m.merchant.id, n.notify_id)).attempts
    assert a.signature == "algorithm=RSA256,keyVersion=1,signature=abc%2B" and a.fields == ()
    assert a.request_headers is not None and "Authorization" not in a.request_headers
    assert a.request_body is not None and len(a.request_body) == outbox.REQUEST_BODY_CHARS
    assert a.request_body.endswith(outbox.CUT_MARK) and a.request_body.startswith("{xxx")


async def _outbox_id(p: Platform, notify_id: str) -> int:
    async with p.engine.connect() as conn:
        return int(
            (await conn.execute(select(t.outbox.c.id).where(t.outbox.c.notify_id == notify_id))).scalar_one()
        )


async def test_a_notification_that_cannot_be_built_ends_failed_with_its_reason(
    platform: Platform, clock: FakeClock
) -> None:
    # A stored payload the dialect cannot render (no payment in it). Before, the attempt raised, the row
    # stayed "sending" and came back every time its lease lapsed, with a traceback each time.
    m = await f.merchant(platform)
    notify_id = "cd" + "0" * 30
    async with platform.engine.begin() as conn:
        await outbox.enqueue(
            conn,
            notify_id=notify_id,
            merchant_id=m.merchant.id,
            url="http://127.0.0.1:9/notify",  # never reached: nothing is sent
            event="payment",
            dialect="mapi",
            payload={"n": 1},
            now=platform.now(),
        )
    async with OutboundClient.from_settings(platform.settings) as client:
        assert await deliver_due(platform, client) == 1
        clock.advance(3600)
        assert await deliver_due(platform, client) == 0  # not tried again
    n = await console.notification(platform, m.merchant.id, notify_id)
    assert n.status == "failed"
    (attempt,) = n.attempts
    assert attempt.error == f"{UNBUILDABLE}: KeyError"
    assert attempt.http_status is None and attempt.request_body is None
