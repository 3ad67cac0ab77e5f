"""The three Alipay SDKs from PyPI, unchanged, against a running ``tillpay serve`` over real sockets.

python-alipay-sdk goes over HTTPS to 127.0.0.2:443, alipay-sdk-python over HTTP to 127.0.0.2:80 (it
ignores the URL's port), global-open-sdk-python over verified HTTPS to 127.0.0.2:443 (it always uses
that port). Each SDK runs in its own virtualenv through a small driver (``drivers/``).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sdkenv import TILLPAY, Driver, Env, SdkError, make_env, make_tls_cert

import factories as f
from tillpay.config import Settings
from tillpay.services import payments, wallets
from tillpay.services.platform import Platform

OPEN_SDKS = ["fzlee", "official"]


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.2 and its key."""
    return make_tls_cert(tmp_path_factory)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sdk_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_cert: tuple[Path, Path]
) -> Iterator[Env]:
    """Tillpay served for the three SDKs, on SQLite and on PostgreSQL; the ledger audit is clean after."""
    yield from make_env(request, tmp_path_factory, tls_cert)


def customer(env: Env, balance: int = 1_000_000) -> f.Customer:
    return env.run(lambda p: f.customer(p, "CNY", balance))  # type: ignore[no-any-return]


def code(env: Env, c: f.Customer) -> str:
    return str(env.run(lambda p: wallets.current_code(p, c.device)))


def balance(env: Env, c: f.Customer) -> int:
    async def go(p: Platform) -> int:
        return (await wallets.user_by_login(p, c.user.login_id)).balance

    return int(env.run(go))


def confirm_when_asked(env: Env, c: f.Customer) -> threading.Thread:
    """The customer, in another thread: waits for the confirmation request and confirms it with the PIN."""

    def run() -> None:
        async def go() -> None:
            p = Platform(Settings(database_url=env.db_url))
            try:
                for _ in range(200):
                    if await payments.pending_for_user(p, c.user.id):
                        await payments.confirm(p, c.user.id, c.pin)
                        return
                    await asyncio.sleep(0.05)
            finally:
                await p.close()

        asyncio.run(go())

    th = threading.Thread(target=run)
    th.start()
    return th


def pay_qr_cli(env: Env, qr: str, c: f.Customer) -> dict[str, Any]:
    """``tillpay wallet pay-qr``: the customer opens the merchant's QR in the wallet and pays."""
    out = subprocess.run(
        [*TILLPAY, "--json", "wallet", "pay-qr", qr, "--login", c.user.login_id, "--pin", c.pin],
        capture_output=True,
        text=True,
        env={**os.environ, "TILLPAY_DATABASE_URL": env.db_url},
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


class Receiver:
    """A merchant's notification endpoint: records path, headers and body; answers ``answer``."""

    def __init__(self, answer: bytes) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/notify/tillpay"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= n, f"got {len(self.received)} notifications, wanted {n}"


@pytest.fixture
def form_receiver() -> Iterator[Receiver]:
    r = Receiver(b"success")
    yield r
    r.httpd.shutdown()


@pytest.fixture
def json_receiver() -> Iterator[Receiver]:
    r = Receiver(b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}')
    yield r
    r.httpd.shutdown()


# ------------------------------------------------------------------------------------ Open Platform


def open_sdk(env: Env, name: str) -> Driver:
    return env.fzlee if name == "fzlee" else env.official


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_pay_and_query(sdk_env: Env, sdk: str) -> None:
    c, d = customer(sdk_env), open_sdk(sdk_env, sdk)
    pay = d.call(
        "pay", out_trade_no=f"{sdk}-P1", auth_code=code(sdk_env, c), subject="咖啡", total_amount="12.50"
    )
    assert pay["code"] == "10000" and pay["total_amount"] == "12.50" and pay["buyer_pay_amount"] == "12.50"
    q = d.call("query", out_trade_no=f"{sdk}-P1")
    assert q["trade_status"] == "TRADE_SUCCESS" and q["trade_no"] == pay["trade_no"]
    assert balance(sdk_env, c) == 1_000_000 - 1250


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_confirmation_while_the_sdk_polls(sdk_env: Env, sdk: str) -> None:
    c, d = customer(sdk_env), open_sdk(sdk_env, sdk)
    pay = d.call(
        "pay", out_trade_no=f"{sdk}-W1", auth_code=code(sdk_env, c), subject="TV", total_amount="2500.00"
    )
    assert pay["code"] == "10003" and pay["msg"] == " order success pay inprocess"
    customer_thread = confirm_when_asked(sdk_env, c)
    seen = []
    for _ in range(60):
        status = d.call("query", out_trade_no=f"{sdk}-W1")["trade_status"]
        seen.append(status)
        if status != "WAIT_BUYER_PAY":
            break
        time.sleep(0.2)
    customer_thread.join()
    assert seen[-1] == "TRADE_SUCCESS"
    assert balance(sdk_env, c) == 1_000_000 - 250_000


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_insufficient_balance(sdk_env: Env, sdk: str) -> None:
    c, d = customer(sdk_env, balance=500), open_sdk(sdk_env, sdk)
    pay = d.call(
        "pay", out_trade_no=f"{sdk}-D1", auth_code=code(sdk_env, c), subject="Tea", total_amount="10.00"
    )
    assert (pay["code"], pay["sub_code"]) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    assert d.call("query", out_trade_no=f"{sdk}-D1")["trade_status"] == "TRADE_CLOSED"
    # Above the confirm limit too: refused at once, never 10003.
    big = d.call(
        "pay", out_trade_no=f"{sdk}-D2", auth_code=code(sdk_env, c), subject="TV", total_amount="2500.00"
    )
    assert (big["code"], big["sub_code"]) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    assert balance(sdk_env, c) == 500


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_cancel_before_and_after_payment(sdk_env: Env, sdk: str) -> None:
    c, d = customer(sdk_env), open_sdk(sdk_env, sdk)
    assert d.call("cancel", out_trade_no=f"{sdk}-C1")["code"] == "10000"
    late = d.call(
        "pay", out_trade_no=f"{sdk}-C1", auth_code=code(sdk_env, c), subject="x", total_amount="1.00"
    )
    assert late["sub_code"] == "ACQ.TRADE_HAS_CLOSE"
    assert (
        d.call("pay", out_trade_no=f"{sdk}-C2", auth_code=code(sdk_env, c), subject="x", total_amount="8.00")[
            "code"
        ]
        == "10000"
    )
    cancel = d.call("cancel", out_trade_no=f"{sdk}-C2")
    assert cancel["code"] == "10000" and cancel["action"] == "refund" and cancel["retry_flag"] == "N"
    assert d.call("query", out_trade_no=f"{sdk}-C2")["trade_status"] == "TRADE_CLOSED"
    assert balance(sdk_env, c) == 1_000_000


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_partial_refunds_and_refund_query(sdk_env: Env, sdk: str) -> None:
    c, d = customer(sdk_env), open_sdk(sdk_env, sdk)
    no = f"{sdk}-R"
    assert (
        d.call("pay", out_trade_no=no, auth_code=code(sdk_env, c), subject="Shoes", total_amount="100.00")[
            "code"
        ]
        == "10000"
    )
    assert (
        d.call("refund", out_trade_no=no, refund_amount="30.00", out_request_no=f"{no}-1")["refund_fee"]
        == "30.00"
    )
    assert (
        d.call("refund", out_trade_no=no, refund_amount="30.00", out_request_no=f"{no}-2")["refund_fee"]
        == "60.00"
    )
    over = d.call("refund", out_trade_no=no, refund_amount="40.01", out_request_no=f"{no}-3")
    assert (over["code"], over["sub_code"]) == ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    assert (
        d.call("refund", out_trade_no=no, refund_amount="40.00", out_request_no=f"{no}-3")["refund_fee"]
        == "100.00"
    )
    rq = d.call("refund_query", out_trade_no=no, out_request_no=f"{no}-2")
    assert (
        rq["code"] == "10000" and rq["refund_amount"] == "30.00" and rq["refund_status"] == "REFUND_SUCCESS"
    )
    assert d.call("query", out_trade_no=no)["trade_status"] == "TRADE_CLOSED"
    assert balance(sdk_env, c) == 1_000_000


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_precreate_paid_from_the_wallet(sdk_env: Env, sdk: str) -> None:
    c, d = customer(sdk_env), open_sdk(sdk_env, sdk)
    pre = d.call("precreate", out_trade_no=f"{sdk}-Q1", total_amount="23.00", subject="Lunch set")
    assert pre["code"] == "10000" and pre["qr_code"].startswith("https://127.0.0.2/wallet/qr/")
    assert d.call("query", out_trade_no=f"{sdk}-Q1")["trade_status"] == "WAIT_BUYER_PAY"
    assert pay_qr_cli(sdk_env, pre["qr_code"], c)["status"] == "TRADE_SUCCESS"
    assert d.call("query", out_trade_no=f"{sdk}-Q1")["trade_status"] == "TRADE_SUCCESS"
    assert balance(sdk_env, c) == 1_000_000 - 2300


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_open_platform_notification_verifies_with_the_sdk(
    sdk_env: Env, sdk: str, form_receiver: Receiver
) -> None:
    c, d = customer(sdk_env), open_sdk(sdk_env, sdk)
    pay = d.call(
        "pay",
        out_trade_no=f"{sdk}-N1",
        auth_code=code(sdk_env, c),
        subject="Cake",
        total_amount="3.00",
        notify_url=form_receiver.url,
    )
    assert pay["code"] == "10000"
    form_receiver.wait()
    _, _, body = form_receiver.received[0]
    data = dict(urllib.parse.parse_qsl(body.decode()))
    assert data["trade_status"] == "TRADE_SUCCESS" and data["out_trade_no"] == f"{sdk}-N1"
    assert d.call("verify", data=data) is True
    assert d.call("verify", data={**data, "total_amount": "300.00"}) is False


# -------------------------------------------------------------------------------------------- Antom


def test_antom_pay_and_inquiry(sdk_env: Env) -> None:
    c, d = customer(sdk_env), sdk_env.antom
    pay = d.call(
        "pay", request_id="A-P1", code=code(sdk_env, c), currency="CNY", value="1250", subject="Latte"
    )
    assert pay["result"]["resultStatus"] == "S" and pay["paymentAmount"] == {
        "currency": "CNY",
        "value": "1250",
    }
    q = d.call("inquiry", request_id="A-P1")
    assert q["paymentStatus"] == "SUCCESS" and q["paymentId"] == pay["paymentId"]
    assert balance(sdk_env, c) == 1_000_000 - 1250


def test_antom_confirmation_while_the_sdk_polls(sdk_env: Env) -> None:
    c, d = customer(sdk_env), sdk_env.antom
    pay = d.call(
        "pay", request_id="A-W1", code=code(sdk_env, c), currency="CNY", value="250000", subject="TV"
    )
    assert (pay["result"]["resultStatus"], pay["result"]["resultCode"]) == ("U", "PAYMENT_IN_PROCESS")
    customer_thread = confirm_when_asked(sdk_env, c)
    seen = []
    for _ in range(60):
        status = d.call("inquiry", request_id="A-W1")["paymentStatus"]
        seen.append(status)
        if status != "PROCESSING":
            break
        time.sleep(0.2)
    customer_thread.join()
    assert seen[-1] == "SUCCESS"
    assert balance(sdk_env, c) == 1_000_000 - 250_000


def test_antom_insufficient_balance(sdk_env: Env) -> None:
    c, d = customer(sdk_env, balance=500), sdk_env.antom
    pay = d.call("pay", request_id="A-D1", code=code(sdk_env, c), currency="CNY", value="1000", subject="Tea")
    assert (pay["result"]["resultStatus"], pay["result"]["resultCode"]) == ("F", "USER_BALANCE_NOT_ENOUGH")
    assert d.call("inquiry", request_id="A-D1")["paymentStatus"] == "FAIL"
    # Above the confirm limit too: refused at once, never PAYMENT_IN_PROCESS.
    big = d.call(
        "pay", request_id="A-D2", code=code(sdk_env, c), currency="CNY", value="250000", subject="TV"
    )
    assert (big["result"]["resultStatus"], big["result"]["resultCode"]) == ("F", "USER_BALANCE_NOT_ENOUGH")
    assert balance(sdk_env, c) == 500


def test_antom_cancel_before_and_after_payment(sdk_env: Env) -> None:
    c, d = customer(sdk_env), sdk_env.antom
    # An id Antom never saw: ORDER_NOT_EXIST, and the id is closed for a late pay all the same.
    early = d.call("cancel", request_id="A-C1")
    assert (early["result"]["resultStatus"], early["result"]["resultCode"]) == ("F", "ORDER_NOT_EXIST")
    late = d.call("pay", request_id="A-C1", code=code(sdk_env, c), currency="CNY", value="100", subject="x")
    assert late["result"]["resultCode"] == "ORDER_IS_CLOSED"
    assert (
        d.call("pay", request_id="A-C2", code=code(sdk_env, c), currency="CNY", value="800", subject="x")[
            "result"
        ]["resultStatus"]
        == "S"
    )
    cancel = d.call("cancel", request_id="A-C2")
    assert cancel["result"]["resultStatus"] == "S" and cancel["cancelTime"]
    assert d.call("inquiry", request_id="A-C2")["paymentStatus"] == "CANCELLED"
    assert balance(sdk_env, c) == 1_000_000


def test_antom_partial_refunds_and_inquiry_refund(sdk_env: Env) -> None:
    c, d = customer(sdk_env), sdk_env.antom
    pay = d.call(
        "pay", request_id="A-R", code=code(sdk_env, c), currency="CNY", value="10000", subject="Shoes"
    )
    pid = pay["paymentId"]
    r1 = d.call("refund", refund_request_id="A-R-1", payment_id=pid, currency="CNY", value="3000")
    assert r1["result"]["resultStatus"] == "S" and r1["refundAmount"]["value"] == "3000"
    assert (
        d.call("refund", refund_request_id="A-R-2", payment_id=pid, currency="CNY", value="3000")["result"][
            "resultStatus"
        ]
        == "S"
    )
    over = d.call("refund", refund_request_id="A-R-3", payment_id=pid, currency="CNY", value="4001")
    assert (over["result"]["resultStatus"], over["result"]["resultCode"]) == ("F", "REFUND_AMOUNT_EXCEED")
    assert (
        d.call("refund", refund_request_id="A-R-3", payment_id=pid, currency="CNY", value="4000")["result"][
            "resultStatus"
        ]
        == "S"
    )
    iq = d.call("inquiry_refund", refund_request_id="A-R-1")
    assert (
        iq["refundStatus"] == "SUCCESS"
        and iq["refundId"] == r1["refundId"]
        and iq["refundAmount"]["value"] == "3000"
    )
    assert balance(sdk_env, c) == 1_000_000


def test_antom_order_code_paid_from_the_wallet(sdk_env: Env) -> None:
    c, d = customer(sdk_env), sdk_env.antom
    pre = d.call("order_code", request_id="A-Q1", currency="CNY", value="2300", subject="Lunch set")
    assert pre["result"]["resultCode"] == "PAYMENT_IN_PROCESS"
    qr = pre["orderCodeForm"]["codeDetails"][0]["codeValue"]
    assert qr.startswith("https://127.0.0.2/wallet/qr/")
    assert pay_qr_cli(sdk_env, qr, c)["status"] == "TRADE_SUCCESS"
    assert d.call("inquiry", request_id="A-Q1")["paymentStatus"] == "SUCCESS"
    assert balance(sdk_env, c) == 1_000_000 - 2300


def test_antom_notify_payment_verifies_with_the_sdk(sdk_env: Env, json_receiver: Receiver) -> None:
    c, d = customer(sdk_env), sdk_env.antom
    pay = d.call(
        "pay",
        request_id="A-N1",
        code=code(sdk_env, c),
        currency="CNY",
        value="300",
        subject="Cake",
        notify_url=json_receiver.url,
    )
    assert pay["result"]["resultStatus"] == "S"
    json_receiver.wait()
    path, headers, body = json_receiver.received[0]
    data = json.loads(body)
    assert data["notifyType"] == "PAYMENT_RESULT" and data["paymentRequestId"] == "A-N1"
    assert headers["request-time"].isdigit() and len(headers["request-time"]) == 13  # epoch milliseconds
    args = {
        "path": path,
        "client_id": headers["client-id"],
        "request_time": headers["request-time"],
        "signature": headers["signature"],
    }
    assert d.call("verify", body=body.decode(), **args) is True
    assert d.call("verify", body=body.decode().replace('"300"', '"301"'), **args) is False


# ------------------------------------------------------------------------ test credentials


@pytest.fixture(scope="module")
def test_credentials(sdk_env: Env) -> Any:
    """The test credentials of the module's merchant (its private key is shown once: when they are made)."""
    from tillpay.services import merchants

    return sdk_env.run(lambda p: merchants.test_merchant_of(p, sdk_env.merchant["partner_id"]))


def test_antom_sdk_pays_a_test_merchant_through_the_sandbox_path(sdk_env: Env, test_credentials: Any) -> None:
    """global-open-sdk-python, unchanged, with test credentials: their ``SANDBOX_`` client id makes it
    call ``/ams/sandbox/api/...`` (its ``adjust_sandbox_url``), signed over that path, which Tillpay
    serves for test merchants; a real wallet is refused there (sandbox money only)."""
    # The CLI prints these (tests/e2e/test_test_mode_cli.py); the private key is shown once, when made,
    # so this module's tests share the credentials the first of them made.
    out = subprocess.run(
        [*TILLPAY, "--json", "merchant", "test-credentials", sdk_env.merchant["partner_id"]],
        capture_output=True,
        text=True,
        env={**os.environ, "TILLPAY_DATABASE_URL": sdk_env.db_url},
        check=True,
        timeout=120,
    )
    shown = json.loads(out.stdout)
    assert shown["client_id"] == test_credentials.merchant.client_id
    assert shown["client_id"].startswith("SANDBOX_") and shown["merchant_private_key"] is None
    test = {
        "client_id": test_credentials.merchant.client_id,
        "merchant_private_key": test_credentials.merchant_private_key,
        "tillpay_public_key": test_credentials.merchant.gateway_public_key,
    }

    async def sandbox_wallet(p: Platform) -> f.Customer:
        _, device = await wallets.add_user(
            p, login_id="sdk-dev@sandbox.test", currency="CNY", pin="123456", sandbox=True
        )
        await wallets.fund(p, "sdk-dev@sandbox.test", 1_000_000, "sdk-sandbox-1", sandbox=True)
        return f.Customer(await wallets.user_by_login(p, "sdk-dev@sandbox.test"), device)

    sbx = sdk_env.run(sandbox_wallet)
    real = customer(sdk_env)
    d = Driver("antom", "antom.py", sdk_env.cert)
    try:
        d.call(
            "init",
            url=sdk_env.https.url,
            client_id=test["client_id"],
            private_key=test["merchant_private_key"],
            public_key_pem=test["tillpay_public_key"],
        )
        pay = d.call(
            "pay", request_id="SBX-1", code=code(sdk_env, sbx), currency="CNY", value="880", subject="Tea"
        )
        assert pay["result"]["resultStatus"] == "S"
        assert d.call("inquiry", request_id="SBX-1")["paymentStatus"] == "SUCCESS"
        refused = d.call(
            "pay", request_id="SBX-2", code=code(sdk_env, real), currency="CNY", value="880", subject="Tea"
        )
        assert (refused["result"]["resultStatus"], refused["result"]["resultCode"]) == ("F", "RISK_REJECT")
    finally:
        d.close()
    assert balance(sdk_env, real) == 1_000_000


# ------------------------------------------------------------------------------------- magic codes


@pytest.fixture
def magic_sdks(sdk_env: Env, test_credentials: Any) -> Iterator[Env]:
    """The three SDKs signing with the test credentials of the module's merchant (magic codes are honoured
    for a test merchant on this production server); set back to the live credentials afterwards."""
    test = test_credentials
    m = test.merchant

    def init(app_id: str, client_id: str, private_key: str, public_key: str) -> None:
        sdk_env.fzlee.call(
            "init", url=sdk_env.https.url, app_id=app_id, private_key=private_key, public_key=public_key
        )
        sdk_env.official.call(
            "init", url=sdk_env.http.url, app_id=app_id, private_key=private_key, public_key_pem=public_key
        )
        sdk_env.antom.call(
            "init",
            url=sdk_env.https.url,
            client_id=client_id,
            private_key=private_key,
            public_key_pem=public_key,
        )

    init(m.app_id, m.client_id, test.merchant_private_key, m.gateway_public_key)
    try:
        yield sdk_env
    finally:
        live = sdk_env.merchant
        init(live["app_id"], live["client_id"], live["merchant_private_key"], live["tillpay_public_key"])


def poll(ask: Any, waiting: str) -> str:
    """Ask for the status until it is no longer ``waiting`` (the worker answers within seconds)."""
    status = waiting
    for _ in range(200):
        status = ask()
        if status != waiting:
            break
        time.sleep(0.1)
    return str(status)


def until(what: Any, seconds: float = 20) -> None:  # float-ok: seconds
    """Wait for a state the server's worker brings about (it polls every 0.1 s); fail if it never comes."""
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "the state never came"
        time.sleep(0.1)


def move_clock(env: Env, merchant_id: int, seconds: int) -> None:
    """Move the test merchant's clock forward (what ``tillpay merchant clock`` does), so an answer due on
    it comes without waiting.

    The servers keep a merchant for ``MERCHANT_CACHE_SECONDS``, while their worker reads its clock afresh:
    this waits that long, so a pay that follows (the next test's too) starts on the moved clock, not on a
    cached one that the worker would find its payment timeout already past on."""
    from sqlalchemy import update

    from tillpay.services.platform import MERCHANT_CACHE_SECONDS
    from tillpay.store import tables as t

    async def go(p: Platform) -> None:
        async with p.engine.begin() as conn:
            await conn.execute(
                update(t.merchants)
                .where(t.merchants.c.id == merchant_id)
                .values(clock_offset_seconds=t.merchants.c.clock_offset_seconds + seconds)
            )

    env.run(go)
    time.sleep(MERCHANT_CACHE_SECONDS)


def closed_with(env: Env, merchant_id: int, ptid: str) -> str | None:
    """Why the test merchant's payment ``ptid`` closed, as stored."""
    from sqlalchemy import select

    from tillpay.store import tables as t

    async def go(p: Platform) -> str | None:
        async with p.engine.connect() as conn:
            return (  # type: ignore[no-any-return]
                await conn.execute(
                    select(t.payments.c.result_code).where(
                        t.payments.c.merchant_id == merchant_id, t.payments.c.partner_trans_id == ptid
                    )
                )
            ).scalar_one()

    return env.run(go)  # type: ignore[no-any-return]


def notify_attempts(env: Env, merchant_id: int, ptid: str) -> list[tuple[int | None, str | None]]:
    """The delivery attempts of a payment's notification as recorded: (HTTP status, error) in order."""
    from sqlalchemy import select

    from tillpay.store import tables as t

    async def go(p: Platform) -> list[tuple[int | None, str | None]]:
        async with p.engine.connect() as conn:
            rows = await conn.execute(
                select(t.notify_attempts.c.http_status, t.notify_attempts.c.error)
                .join(t.outbox, t.outbox.c.id == t.notify_attempts.c.outbox_id)
                .join(t.payments, t.payments.c.id == t.outbox.c.payment_id)
                .where(
                    t.payments.c.merchant_id == merchant_id,
                    t.payments.c.partner_trans_id == ptid,
                    t.outbox.c.refund_id.is_(None),
                )
                .order_by(t.notify_attempts.c.id)
            )
            return [(r.http_status, r.error) for r in rows]

    return env.run(go)  # type: ignore[no-any-return]


def init_with(d: Driver, env: Env, sdk: str, test: Any, **init: Any) -> None:
    """Set the driver ``d`` of ``sdk`` to sign with the test credentials ``test`` (``init``: e.g. a
    ``timeout``)."""
    m = test.merchant
    if sdk == "antom":
        keys = {"client_id": m.client_id, "public_key_pem": m.gateway_public_key}
    else:
        keys = {
            "app_id": m.app_id,
            "public_key" if sdk == "fzlee" else "public_key_pem": m.gateway_public_key,
        }
    # alipay-sdk-python speaks plain HTTP to port 80, the other two HTTPS to 443 (sdkenv.py says why).
    url = env.http.url if sdk == "official" else env.https.url
    d.call("init", url=url, private_key=test.merchant_private_key, **keys, **init)


def spare_driver(env: Env, sdk: str, test: Any, **init: Any) -> Driver:
    """A second process of ``sdk`` with the test credentials: a till whose pay is still in flight while
    the first one queries and cancels, or one with a shorter timeout (``init``'s ``timeout``)."""
    d = Driver(sdk, f"{sdk}.py", env.cert)
    try:
        init_with(d, env, sdk, test, **init)
    except BaseException:
        d.close()
        raise
    return d


def payment_timeout(env: Env) -> int:
    """The servers' payment timeout (this process reads the same environment as they do)."""
    return Settings(database_url=env.db_url).payment_timeout_seconds


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_magic_codes_through_the_open_platform_sdks(
    magic_sdks: Env, sdk: str, test_credentials: Any, form_receiver: Receiver
) -> None:
    """Every row of the magic table through the SDK, each answer as the SDK parses it."""
    from tillpay.domain.errors import Code
    from tillpay.domain.magic import TABLE, Magic, code_for
    from tillpay.protocols.openapi.codes import open_code
    from tillpay.services.magic import FAILED_DELIVERY

    d = open_sdk(magic_sdks, sdk)
    test_id = test_credentials.merchant.id
    seen: set[Magic] = set()

    def pay(no: str, code: str, notify_url: str | None = None) -> Any:
        return d.call(
            "pay",
            out_trade_no=no,
            auth_code=code,
            subject="Magic",
            total_amount="12.50",
            notify_url=notify_url,
        )

    def status(no: str) -> str:
        # An order the gateway has not made yet (a slow answer's, before its pay starts): ACQ.TRADE_NOT_EXIST.
        q = d.call("query", out_trade_no=no)
        return str(q.get("trade_status", q.get("sub_code")))

    assert pay(f"{sdk}-MG1", code_for(Magic.SUCCESS))["code"] == "10000"
    assert status(f"{sdk}-MG1") == "TRADE_SUCCESS"
    seen.add(Magic.SUCCESS)
    assert pay(f"{sdk}-MG2", code_for(Magic.CONFIRM_THEN_CONFIRMED, 1))["code"] == "10003"
    assert poll(lambda: status(f"{sdk}-MG2"), "WAIT_BUYER_PAY") == "TRADE_SUCCESS"
    seen.add(Magic.CONFIRM_THEN_CONFIRMED)
    low = pay(f"{sdk}-MG3", code_for(Magic.BALANCE_NOT_ENOUGH))
    assert (low["code"], low["sub_code"]) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    seen.add(Magic.BALANCE_NOT_ENOUGH)
    unknown = pay(f"{sdk}-MG4", code_for(Magic.UNKNOWN_THEN_SUCCESS))
    assert (unknown["code"], unknown["sub_code"]) == ("20000", "ACQ.SYSTEM_ERROR")
    assert status(f"{sdk}-MG4") == "TRADE_SUCCESS"

    # UNKNOW, then processing for N = 1 second on the query, then paid
    unknown = pay(f"{sdk}-MG4b", code_for(Magic.UNKNOWN_THEN_SUCCESS, 1))
    assert (unknown["code"], unknown["sub_code"]) == ("20000", "ACQ.SYSTEM_ERROR")
    assert status(f"{sdk}-MG4b") in ("WAIT_BUYER_PAY", "TRADE_SUCCESS")
    assert poll(lambda: status(f"{sdk}-MG4b"), "WAIT_BUYER_PAY") == "TRADE_SUCCESS"
    seen.add(Magic.UNKNOWN_THEN_SUCCESS)

    # confirmation, then rejected after N = 1 second
    assert pay(f"{sdk}-MG5", code_for(Magic.CONFIRM_THEN_REJECTED, 1))["code"] == "10003"
    assert poll(lambda: status(f"{sdk}-MG5"), "WAIT_BUYER_PAY") == "TRADE_CLOSED"
    assert closed_with(magic_sdks, test_id, f"{sdk}-MG5") == Code.USER_REJECTED
    seen.add(Magic.CONFIRM_THEN_REJECTED)

    # confirmation never answered: closed when the payment timeout passes on the merchant's clock
    assert pay(f"{sdk}-MG6", code_for(Magic.CONFIRM_NEVER_ANSWERED))["code"] == "10003"
    assert status(f"{sdk}-MG6") == "WAIT_BUYER_PAY"
    move_clock(magic_sdks, test_id, payment_timeout(magic_sdks) + 10)
    assert poll(lambda: status(f"{sdk}-MG6"), "WAIT_BUYER_PAY") == "TRADE_CLOSED"
    assert closed_with(magic_sdks, test_id, f"{sdk}-MG6") == Code.PAYMENT_TIMEOUT
    seen.add(Magic.CONFIRM_NEVER_ANSWERED)

    # refusals and declines, each with the Open Platform code its codes table gives
    for no, outcome, code in (
        ("MG7", Magic.CODE_EXPIRED, Code.EXPIRED_CODE),
        ("MG8", Magic.CODE_USED, Code.CODE_USED),
        ("MG9", Magic.RISK_DECLINE, Code.RISK_REJECT),
        ("MG10", Magic.BUYER_FROZEN, Code.BUYER_FROZEN),
    ):
        refused = pay(f"{sdk}-{no}", code_for(outcome))
        want = open_code(code)
        assert (refused["code"], refused["sub_code"]) == (want.code, want.sub_code), outcome
        seen.add(outcome)

    spare = spare_driver(magic_sdks, sdk, test_credentials, timeout=1)
    try:
        # an answer slower (N = 2 s) than the till's timeout (1 s, the SDK's own setting): the SDK gives
        # up with its timeout error, and the query finds the payment paid once the gateway has paid it
        with pytest.raises(SdkError) as gave_up:
            spare.call(
                "pay",
                out_trade_no=f"{sdk}-MG11",
                auth_code=code_for(Magic.SLOW_ANSWER, 2),
                subject="Magic",
                total_amount="12.50",
            )
        assert "timed out" in gave_up.value.message.lower() or "timeout" in gave_up.value.kind.lower()
        until(lambda: status(f"{sdk}-MG11") == "TRADE_SUCCESS")
        seen.add(Magic.SLOW_ANSWER)

        # a success answered only after N = 2 s: a patient till's pay is still waiting for it while this
        # one finds the payment paid and cancels it; the cancel refunds, the late success is the SDK's
        init_with(spare, magic_sdks, sdk, test_credentials)  # the SDK's default timeout: 15 s
        with ThreadPoolExecutor(1) as pool:
            late = pool.submit(
                spare.call,
                "pay",
                out_trade_no=f"{sdk}-MG12",
                auth_code=code_for(Magic.SUCCESS_AFTER_CANCEL, 2),
                subject="Magic",
                total_amount="12.50",
            )
            until(lambda: status(f"{sdk}-MG12") == "TRADE_SUCCESS")
            cancel = d.call("cancel", out_trade_no=f"{sdk}-MG12")
            assert (cancel["code"], cancel["action"], cancel["retry_flag"]) == ("10000", "refund", "N")
            assert late.result()["code"] == "10000"  # the success the till no longer listens to
        assert status(f"{sdk}-MG12") == "TRADE_CLOSED"
        seen.add(Magic.SUCCESS_AFTER_CANCEL)
    finally:
        spare.close()

    # a notification recorded as failed twice, then delivered: the handler sees it three times, each
    # delivery verifying with the SDK's own code
    assert (
        pay(f"{sdk}-MG13", code_for(Magic.NOTIFY_FAILS, 2), notify_url=form_receiver.url)["code"] == "10000"
    )
    until(lambda: [a[1] for a in notify_attempts(magic_sdks, test_id, f"{sdk}-MG13")][-1:] == [None])
    attempts = notify_attempts(magic_sdks, test_id, f"{sdk}-MG13")
    assert attempts == [(200, FAILED_DELIVERY), (200, FAILED_DELIVERY), (200, None)]
    deliveries = [dict(urllib.parse.parse_qsl(body.decode())) for _, _, body in form_receiver.received]
    deliveries = [n for n in deliveries if n["out_trade_no"] == f"{sdk}-MG13"]
    assert len(deliveries) == 3
    assert {(n["notify_id"], n["trade_no"], n["trade_status"]) for n in deliveries} == {
        (deliveries[0]["notify_id"], deliveries[0]["trade_no"], "TRADE_SUCCESS")
    }
    for n in deliveries:
        assert d.call("verify", data=n) is True
    assert d.call("verify", data={**deliveries[-1], "total_amount": "1250.00"}) is False
    seen.add(Magic.NOTIFY_FAILS)

    assert seen == {row.outcome for row in TABLE}


def test_magic_codes_through_the_antom_sdk(
    magic_sdks: Env, test_credentials: Any, json_receiver: Receiver
) -> None:
    """Every row of the magic table through global-open-sdk-python, each answer as the SDK parses it."""
    from tillpay.domain.errors import Code
    from tillpay.domain.magic import TABLE, Magic, code_for
    from tillpay.protocols.antom.codes import antom_result
    from tillpay.services.magic import FAILED_DELIVERY

    d = magic_sdks.antom
    test_id = test_credentials.merchant.id
    seen: set[Magic] = set()

    def pay(request_id: str, code: str, notify_url: str | None = None) -> tuple[str, str]:
        r = d.call(
            "pay",
            request_id=request_id,
            code=code,
            currency="CNY",
            value="1250",
            subject="Magic",
            notify_url=notify_url,
        )
        return r["result"]["resultStatus"], r["result"]["resultCode"]

    def status(request_id: str) -> str:
        return str(d.call("inquiry", request_id=request_id)["paymentStatus"])

    def result_code(request_id: str) -> str:
        return str(d.call("inquiry", request_id=request_id)["paymentResultCode"])

    assert pay("A-MG1", code_for(Magic.SUCCESS)) == ("S", "SUCCESS")
    assert status("A-MG1") == "SUCCESS"
    seen.add(Magic.SUCCESS)
    assert pay("A-MG2", code_for(Magic.CONFIRM_THEN_CONFIRMED, 1)) == ("U", "PAYMENT_IN_PROCESS")
    assert poll(lambda: status("A-MG2"), "PROCESSING") == "SUCCESS"
    seen.add(Magic.CONFIRM_THEN_CONFIRMED)
    assert pay("A-MG3", code_for(Magic.BALANCE_NOT_ENOUGH)) == ("F", "USER_BALANCE_NOT_ENOUGH")
    seen.add(Magic.BALANCE_NOT_ENOUGH)
    assert pay("A-MG4", code_for(Magic.UNKNOWN_THEN_SUCCESS)) == ("U", "UNKNOWN_EXCEPTION")
    assert status("A-MG4") == "SUCCESS"

    # UNKNOWN_EXCEPTION, then processing for N = 1 second on the inquiry, then paid
    assert pay("A-MG4b", code_for(Magic.UNKNOWN_THEN_SUCCESS, 1)) == ("U", "UNKNOWN_EXCEPTION")
    assert status("A-MG4b") in ("PROCESSING", "SUCCESS")
    assert poll(lambda: status("A-MG4b"), "PROCESSING") == "SUCCESS"
    seen.add(Magic.UNKNOWN_THEN_SUCCESS)

    # confirmation, then rejected after N = 1 second
    assert pay("A-MG5", code_for(Magic.CONFIRM_THEN_REJECTED, 1)) == ("U", "PAYMENT_IN_PROCESS")
    assert poll(lambda: status("A-MG5"), "PROCESSING") == "FAIL"
    assert result_code("A-MG5") == antom_result(Code.USER_REJECTED).code
    assert closed_with(magic_sdks, test_id, "A-MG5") == Code.USER_REJECTED
    seen.add(Magic.CONFIRM_THEN_REJECTED)

    # confirmation never answered: closed when the payment timeout passes on the merchant's clock
    assert pay("A-MG6", code_for(Magic.CONFIRM_NEVER_ANSWERED)) == ("U", "PAYMENT_IN_PROCESS")
    assert status("A-MG6") == "PROCESSING"
    move_clock(magic_sdks, test_id, payment_timeout(magic_sdks) + 10)
    assert poll(lambda: status("A-MG6"), "PROCESSING") == "FAIL"
    assert result_code("A-MG6") == antom_result(Code.PAYMENT_TIMEOUT).code
    assert closed_with(magic_sdks, test_id, "A-MG6") == Code.PAYMENT_TIMEOUT
    seen.add(Magic.CONFIRM_NEVER_ANSWERED)

    # refusals and declines, each with the Antom result its codes table gives
    for request_id, outcome, code in (
        ("A-MG7", Magic.CODE_EXPIRED, Code.EXPIRED_CODE),
        ("A-MG8", Magic.CODE_USED, Code.CODE_USED),
        ("A-MG9", Magic.RISK_DECLINE, Code.RISK_REJECT),
        ("A-MG10", Magic.BUYER_FROZEN, Code.BUYER_FROZEN),
    ):
        want = antom_result(code)
        assert pay(request_id, code_for(outcome)) == ("F", want.code), outcome
        assert want.status == "F"
        seen.add(outcome)

    # an answer that comes N = 2 s late: the SDK has no timeout setting (its DefaultAlipayClient takes
    # none), so it waits, and parses the success when it comes
    started = time.monotonic()
    assert pay("A-MG11", code_for(Magic.SLOW_ANSWER, 2)) == ("S", "SUCCESS")
    assert time.monotonic() - started >= 2  # the gateway held the answer for N seconds
    assert status("A-MG11") == "SUCCESS"
    seen.add(Magic.SLOW_ANSWER)

    # a success answered only after N = 2 s: a second till's pay is still waiting for it while this one
    # finds the payment paid and cancels it; the cancel refunds it, the late success is the SDK's
    spare = spare_driver(magic_sdks, "antom", test_credentials)
    try:
        with ThreadPoolExecutor(1) as pool:
            late = pool.submit(
                spare.call,
                "pay",
                request_id="A-MG12",
                code=code_for(Magic.SUCCESS_AFTER_CANCEL, 2),
                currency="CNY",
                value="1250",
                subject="Magic",
            )
            until(lambda: d.call("inquiry", request_id="A-MG12").get("paymentStatus") == "SUCCESS")
            cancel = d.call("cancel", request_id="A-MG12")
            assert cancel["result"]["resultStatus"] == "S" and cancel["cancelTime"]
            assert late.result()["result"]["resultStatus"] == "S"  # the success the till no longer hears
        assert status("A-MG12") == "CANCELLED"
        seen.add(Magic.SUCCESS_AFTER_CANCEL)
    finally:
        spare.close()

    # a notification recorded as failed twice, then delivered: the handler sees it three times, each
    # delivery verifying with the SDK's own check_signature
    assert pay("A-MG13", code_for(Magic.NOTIFY_FAILS, 2), notify_url=json_receiver.url) == ("S", "SUCCESS")
    until(lambda: [a[1] for a in notify_attempts(magic_sdks, test_id, "A-MG13")][-1:] == [None])
    attempts = notify_attempts(magic_sdks, test_id, "A-MG13")
    assert attempts == [(200, FAILED_DELIVERY), (200, FAILED_DELIVERY), (200, None)]
    deliveries = [r for r in json_receiver.received if json.loads(r[2])["paymentRequestId"] == "A-MG13"]
    assert len(deliveries) == 3
    assert {json.loads(body)["paymentId"] for _, _, body in deliveries} == {
        json.loads(deliveries[0][2])["paymentId"]
    }
    for path, headers, body in deliveries:
        args = {
            "path": path,
            "client_id": headers["client-id"],
            "request_time": headers["request-time"],
            "signature": headers["signature"],
        }
        assert json.loads(body)["notifyType"] == "PAYMENT_RESULT"
        assert d.call("verify", body=body.decode(), **args) is True
        assert d.call("verify", body=body.decode().replace('"1250"', '"1251"'), **args) is False
    seen.add(Magic.NOTIFY_FAILS)

    assert seen == {row.outcome for row in TABLE}
