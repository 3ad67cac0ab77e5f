"""Sample notifications: one of each kind, signed with the merchant's keys like real ones, delivered
through the outbox to the merchant's URL; only to test credentials (or on a sandbox server); samples
rate-limited per merchant (Redeliver's own limits: tests/security/test_sec_redeliver.py). Real deliveries on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import func, select

import factories as f
import mapi_reference as ref
from conftest import LOOPBACK_RECEIVERS
from notify_receivers import ReceiverServer
from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.outbound import OutboundClient
from tillpay.protocols.antom import signing as antom_signing
from tillpay.services import console, merchants, samples
from tillpay.services.platform import FakeClock, Merchant, Platform
from tillpay.store import tables as t
from tillpay.worker.notifier import deliver_due

pytestmark = [pytest.mark.anyio, pytest.mark.loopback_receivers]

ANTOM_ACK = b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'


class AckReceiver:
    """Records each POST's body and headers and acknowledges it as its dialect's merchant would: Antom's
    JSON result for a JSON body, ``success`` for a form."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(body)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                is_json = self.headers.get("content-type", "").startswith("application/json")
                self.send_response(200)
                self.end_headers()
                self.wfile.write(ANTOM_ACK if is_json else b"success")

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def _test_merchant(p: Platform, url: str) -> tuple[Merchant, Merchant]:
    live = (await f.merchant(p, notify_url=url)).merchant
    test = (await merchants.test_merchant_of(p, live.partner_id)).merchant
    return live, test


async def _payments(p: Platform) -> int:
    async with p.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.payments))).scalar_one())


async def test_a_test_merchant_gets_one_sample_of_each_kind_signed_with_its_keys(platform: Platform) -> None:
    receiver = AckReceiver()
    platform.settings = platform.settings.model_copy(update=LOOPBACK_RECEIVERS)
    try:
        _, m = await _test_merchant(platform, receiver.url)
        assert m.notify_url == receiver.url
        queued = await samples.send_samples(platform, m)
        kinds = [(q.dialect, q.kind) for q in queued]
        assert kinds == [
            ("mapi", "success"),
            ("mapi", "closed"),
            ("mapi", "cancel"),
            ("mapi", "refund"),
            ("openapi", "success"),
            ("openapi", "closed"),
            ("openapi", "refund"),
            ("antom", "success"),
            ("antom", "failure"),
            ("antom", "refund"),
        ]
        assert all(q.notify_id.startswith("SAMPLE") for q in queued)
        async with OutboundClient.from_settings(platform.settings) as client:
            # A merchant has at most notify_per_merchant in flight: a few passes.
            sent = 0
            while n := await deliver_due(platform, client):
                sent += n
        assert sent == len(queued)
        assert len(receiver.bodies) == len(queued)

        forms: dict[str, list[dict[str, str]]] = {"mapi": [], "openapi": []}
        antom: list[dict[str, object]] = []
        for body, headers in zip(receiver.bodies, receiver.headers, strict=True):
            if headers["content-type"].startswith("application/json"):
                # Antom: the signature over "POST <path>\n<client-id>.<request-time>.<body>".
                sig = antom_signing.parse_header(headers["signature"])[2]
                data = antom_signing.content(
                    "POST",
                    urlsplit(receiver.url).path,
                    headers["client-id"],
                    headers["request-time"],
                    body.decode(),
                )
                assert headers["client-id"] == m.client_id
                assert antom_signing.verify(data, sig, m.gateway_public_key)
                antom.append(json.loads(body))
                continue
            form = dict(parse_qsl(body.decode()))
            if "app_id" in form:
                assert form["app_id"] == m.app_id
                unsigned = {k: v for k, v in form.items() if k not in ("sign", "sign_type")}
                assert signing.rsa_verify(
                    signing.canonical_query(unsigned).encode(),
                    form["sign"],
                    signing.load_public_key(m.gateway_public_key),
                    "RSA2",
                )
                forms["openapi"].append(form)
            else:
                assert form["partner"] == m.partner_id
                assert ref.verify_notification(form, md5_key=m.md5_key, public_key_pem=m.gateway_public_key)
                assert not ref.verify_notification(
                    {**form, "trade_status": "X"}, md5_key=m.md5_key, public_key_pem=m.gateway_public_key
                )
                forms["mapi"].append(form)

        mapi = {(x["trade_status"], x["notify_action_type"]) for x in forms["mapi"]}
        assert mapi == {
            ("TRADE_SUCCESS", "payByAccountAction"),
            ("TRADE_CLOSED", "closeTradeAction"),
            ("TRADE_CLOSED", "reverseAction"),
            ("TRADE_SUCCESS", "refundFPAction"),
        }
        assert {x["trade_status"] for x in forms["openapi"]} == {"TRADE_SUCCESS", "TRADE_CLOSED"}
        assert sum("refund_fee" in x for x in forms["openapi"]) == 1
        got = sorted(
            (str(a["notifyType"]), str(a["result"]["resultStatus"]))  # type: ignore[index]
            for a in antom
        )
        assert got == [("PAYMENT_RESULT", "F"), ("PAYMENT_RESULT", "S"), ("REFUND_RESULT", "S")]

        # Every id a merchant would book by is marked; none names a real payment.
        for x in forms["mapi"] + forms["openapi"]:
            assert x["notify_id"].startswith("SAMPLE") and x["trade_no"].startswith("SAMPLE")
            assert x["out_trade_no"].startswith("SAMPLE")
        for a in antom:
            assert str(a["notifyId"]).startswith("SAMPLE") and str(a["paymentId"]).startswith("SAMPLE")
        assert await _payments(platform) == 0

        # In the log and the inspector like any notification, delivered, with no payment.
        listed = await console.notifications(platform, m.id)
        assert {n.notify_id for n in listed} == {q.notify_id for q in queued}
        assert all(n.status == "delivered" and n.trade_no is None for n in listed)
        one = await console.notification(platform, m.id, queued[0].notify_id)
        assert one.attempts[0].request_body and "SAMPLE" in one.attempts[0].request_body
    finally:
        receiver.close()


async def test_a_live_merchant_of_a_production_server_gets_no_samples(platform: Platform) -> None:
    live, _ = await _test_merchant(platform, "http://127.0.0.1:9/notify")
    assert not platform.settings.sandbox
    with pytest.raises(TillpayError) as e:
        await samples.send_samples(platform, live)
    assert e.value.code is Code.ILLEGAL_ARGUMENT and "test credentials" in e.value.detail
    assert await console.notifications(platform, live.id) == []


async def test_on_a_sandbox_server_any_merchant_may_get_samples(sandbox_platform: Platform) -> None:
    p = sandbox_platform
    p.settings = p.settings.model_copy(update=LOOPBACK_RECEIVERS)
    live = (await f.merchant(p, notify_url="http://127.0.0.1:9/notify")).merchant
    queued = await samples.send_samples(p, live, ("antom",))
    assert [q.kind for q in queued] == ["success", "failure", "refund"]
    assert len(await console.notifications(p, live.id)) == 3


async def test_samples_need_a_notify_url(platform: Platform) -> None:
    live = (await f.merchant(platform)).merchant
    test = (await merchants.test_merchant_of(platform, live.partner_id)).merchant
    with pytest.raises(TillpayError) as e:
        await samples.send_samples(platform, test)
    assert "notify URL" in e.value.detail


async def test_samples_are_rate_limited_per_merchant(platform: Platform, clock: FakeClock) -> None:
    platform.settings = platform.settings.model_copy(
        update={**LOOPBACK_RECEIVERS, "notify_samples_per_minute": 1}
    )
    _, m = await _test_merchant(platform, "http://127.0.0.1:9/notify")
    _, other = await _test_merchant(platform, "http://127.0.0.1:9/notify")
    first = await samples.send_samples(platform, m, ("mapi",))
    with pytest.raises(TillpayError) as e:
        await samples.send_samples(platform, m, ("mapi",))
    assert e.value.code is Code.TRY_AGAIN
    assert e.value.detail == "at most 1 sample batches a minute for a merchant: try again in 60 s"
    assert len(await console.notifications(platform, m.id)) == len(first)  # nothing more queued
    # Another merchant's limit is its own.
    assert await samples.send_samples(platform, other, ("mapi",))

    clock.advance(61)  # the first batch has left the minute
    assert len(await samples.send_samples(platform, m, ("mapi",))) == len(first)


async def test_concurrent_sample_batches_pass_at_most_the_limit(platform: Platform) -> None:
    platform.settings = platform.settings.model_copy(update={"notify_samples_per_minute": 3})
    _, m = await _test_merchant(platform, "http://127.0.0.1:9/notify")

    async def batch() -> str:
        try:
            await samples.take_allowance(platform, m.id)
        except TillpayError as e:
            return e.code.name
        return "ok"

    outcomes = await asyncio.gather(*(batch() for _ in range(12)))
    assert sorted(outcomes) == ["TRY_AGAIN"] * 9 + ["ok"] * 3
