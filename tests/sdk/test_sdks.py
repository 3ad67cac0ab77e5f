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
from pathlib import Path
from typing import Any

import pytest
from sdkenv import TILLPAY, Driver, Env, make_env, make_tls_cert

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


@pytest.mark.parametrize("sdk", OPEN_SDKS)
def test_magic_codes_through_the_open_platform_sdks(magic_sdks: Env, sdk: str) -> None:
    from tillpay.domain.magic import Magic, code_for

    d = open_sdk(magic_sdks, sdk)

    def pay(no: str, code: str) -> Any:
        return d.call("pay", out_trade_no=no, auth_code=code, subject="Magic", total_amount="12.50")

    def status(no: str) -> str:
        return str(d.call("query", out_trade_no=no)["trade_status"])

    assert pay(f"{sdk}-MG1", code_for(Magic.SUCCESS))["code"] == "10000"
    assert status(f"{sdk}-MG1") == "TRADE_SUCCESS"
    assert pay(f"{sdk}-MG2", code_for(Magic.CONFIRM_THEN_CONFIRMED, 1))["code"] == "10003"
    assert poll(lambda: status(f"{sdk}-MG2"), "WAIT_BUYER_PAY") == "TRADE_SUCCESS"
    low = pay(f"{sdk}-MG3", code_for(Magic.BALANCE_NOT_ENOUGH))
    assert (low["code"], low["sub_code"]) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    unknown = pay(f"{sdk}-MG4", code_for(Magic.UNKNOWN_THEN_SUCCESS))
    assert (unknown["code"], unknown["sub_code"]) == ("20000", "ACQ.SYSTEM_ERROR")
    assert status(f"{sdk}-MG4") == "TRADE_SUCCESS"


def test_magic_codes_through_the_antom_sdk(magic_sdks: Env) -> None:
    from tillpay.domain.magic import Magic, code_for

    d = magic_sdks.antom

    def pay(request_id: str, code: str) -> tuple[str, str]:
        r = d.call("pay", request_id=request_id, code=code, currency="CNY", value="1250", subject="Magic")
        return r["result"]["resultStatus"], r["result"]["resultCode"]

    def status(request_id: str) -> str:
        return str(d.call("inquiry", request_id=request_id)["paymentStatus"])

    assert pay("A-MG1", code_for(Magic.SUCCESS)) == ("S", "SUCCESS")
    assert status("A-MG1") == "SUCCESS"
    assert pay("A-MG2", code_for(Magic.CONFIRM_THEN_CONFIRMED, 1)) == ("U", "PAYMENT_IN_PROCESS")
    assert poll(lambda: status("A-MG2"), "PROCESSING") == "SUCCESS"
    assert pay("A-MG3", code_for(Magic.BALANCE_NOT_ENOUGH)) == ("F", "USER_BALANCE_NOT_ENOUGH")
    assert pay("A-MG4", code_for(Magic.UNKNOWN_THEN_SUCCESS)) == ("U", "UNKNOWN_EXCEPTION")
    assert status("A-MG4") == "SUCCESS"
