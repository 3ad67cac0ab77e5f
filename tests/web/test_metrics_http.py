"""``/metrics``, ``/ready`` and request ids on a running server (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import logging
import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import LiveServer, free_port, test_settings
from dialect_clients import make_shop
from metrics_scrape import delta, scrape, total, value
from tillpay import __version__, logs
from tillpay.services.platform import Platform
from tillpay.store.migrate import downgrade, upgrade
from tillpay.web.app import create_app
from tillpay.web.metrics import RiskTally

MAPI_PAY = "alipay.acquire.overseas.spot.pay"


def test_pays_queries_and_risk_verdicts_move_the_counters_by_what_was_sent(live: LiveServer) -> None:
    shop = make_shop(live)  # a USD merchant, a customer with 10,000.00 CNY
    before = scrape(live.url)
    with shop.mapi() as c:
        assert c.pay("M-1", shop.code(), "10.00", "USD", "Tea").ok
        assert c.pay("M-2", shop.code(), "12.00", "USD", "Cake").ok
        waiting = c.pay("M-3", shop.code(), "400.00", "USD", "Kettle")  # over the 2,000.00 CNY limit
        assert waiting.status == "WAIT_BUYER_PAY"
        poor = c.pay("M-4", shop.code(), "2000.00", "USD", "Bike")  # about 14,200 CNY: more than the balance
        assert poor.error == "BUYER_BALANCE_NOT_ENOUGH"
        assert c.query("M-1").status == "TRADE_SUCCESS"
    opened = shop.open().call(
        "alipay.trade.pay",
        {
            "out_trade_no": "O-1",
            "scene": "bar_code",
            "auth_code": shop.code(),
            "subject": "Tea",
            "total_amount": "3.00",
        },
    )
    assert opened.code == "10000"
    big = {"out_trade_no": "O-2", "scene": "bar_code", "auth_code": shop.code(), "subject": "Kettle"}
    assert shop.open().call("alipay.trade.pay", {**big, "total_amount": "400.00"}).code == "10003"
    assert shop.antom().pay("A-1", shop.code(), 500, "USD").result == ("S", "SUCCESS")
    assert shop.antom().pay("A-2", shop.code(), 40000, "USD").result == ("U", "PAYMENT_IN_PROCESS")
    after = scrape(live.url)

    def moved(name: str, **labels: str) -> float:
        return delta(after, before, name, **labels)

    assert moved("tillpay_pay_answers_total", dialect="mapi", outcome="success", code="SUCCESS") == 2
    assert moved("tillpay_pay_answers_total", dialect="mapi", outcome="waiting", code="WAIT_BUYER_PAY") == 1
    assert (
        moved("tillpay_pay_answers_total", dialect="mapi", outcome="failed", code="BUYER_BALANCE_NOT_ENOUGH")
        == 1
    )
    assert moved("tillpay_pay_answers_total", dialect="openapi", outcome="success", code="10000") == 1
    assert moved("tillpay_pay_answers_total", dialect="openapi", outcome="waiting", code="10003") == 1
    assert moved("tillpay_pay_answers_total", dialect="antom", outcome="success", code="SUCCESS") == 1
    assert (
        moved("tillpay_pay_answers_total", dialect="antom", outcome="waiting", code="PAYMENT_IN_PROCESS") == 1
    )
    assert moved("tillpay_http_requests_total", dialect="mapi", service=MAPI_PAY, status="200") == 4
    assert (
        moved(
            "tillpay_http_requests_total",
            dialect="mapi",
            service="alipay.acquire.overseas.query",
            status="200",
        )
        == 1
    )
    assert (
        moved("tillpay_http_requests_total", dialect="openapi", service="alipay.trade.pay", status="200") == 2
    )
    assert moved("tillpay_http_requests_total", dialect="antom", service="pay", status="200") == 2
    assert moved("tillpay_http_request_duration_seconds_count", dialect="mapi", service=MAPI_PAY) == 4
    assert (
        moved("tillpay_http_request_duration_seconds_bucket", dialect="mapi", service=MAPI_PAY, le="+Inf")
        == 4
    )
    # Read from the database: this test's database is fresh, so these are absolute.
    assert value(after, "tillpay_risk_decisions_total", verdict="ALLOW", rule="default") == 4
    assert (
        value(after, "tillpay_risk_decisions_total", verdict="CONFIRM", rule="amount_over_confirm_limit") == 3
    )
    assert value(after, "tillpay_risk_decisions_total", verdict="DECLINE", rule="balance") == 1
    assert value(after, "tillpay_confirmations_waiting") == 3
    assert value(after, "tillpay_confirmation_oldest_age_seconds") >= 0
    assert value(after, "tillpay_build_info", version=__version__, mode="production") == 1
    assert value(after, "tillpay_database_up") == 1
    assert value(after, "tillpay_db_pool_size") >= 1

    shop.confirm(waiting.trade_no)
    again = scrape(live.url)
    assert value(again, "tillpay_confirmations_waiting") == 2
    # Counted once: the rows read on the previous scrape are not read again.
    assert value(again, "tillpay_risk_decisions_total", verdict="ALLOW", rule="default") == 4


def test_names_a_client_makes_up_are_counted_as_other(live: LiveServer) -> None:
    made_up = "zz.custom." + secrets.token_hex(6)
    before = scrape(live.url)
    r = httpx.post(live.url + "/gateway.do", data={"service": made_up, "partner": "2088000000000000"})
    assert r.status_code == 200 and "ILLEGAL_SERVICE" in r.text
    r = httpx.post(live.url + "/ams/api/v1/payments/" + made_up, content=b"{}")
    assert r.status_code == 200
    r = httpx.get(live.url + "/wallet/payments/" + "2026112522" + "1" * 18)
    assert httpx.get(live.url + "/" + made_up).status_code == 404
    body = httpx.get(live.url + "/metrics").text
    after = scrape(live.url)
    assert made_up not in body and "1" * 18 not in body
    assert (
        delta(after, before, "tillpay_http_requests_total", dialect="mapi", service="other", status="200")
        == 1
    )
    assert (
        delta(after, before, "tillpay_http_requests_total", dialect="antom", service="other", status="200")
        == 1
    )
    assert (
        delta(after, before, "tillpay_http_requests_total", dialect="other", service="other", status="404")
        == 1
    )
    # A page is counted under its route's template, never under the id in its path.
    assert (
        total(after, "tillpay_http_requests_total", dialect="wallet", service="/wallet/payments/{trade_no}")
        >= 1
    )


@pytest.mark.loopback_receivers
def test_notification_queue_shows_an_undelivered_notification(live: LiveServer) -> None:
    shop = make_shop(live)
    closed = f"http://127.0.0.1:{free_port()}/notify"  # nobody listens: every attempt fails
    assert scrape(live.url).get(("tillpay_notifications_queued", (("state", "pending"),))) == 0
    with shop.mapi() as c:
        assert c.pay("N-1", shop.code(), "10.00", "USD", "Tea", notify_url=closed).ok
    after = scrape(live.url)
    # Pending, or being tried at this moment: either way queued, not delivered, not given up.
    assert total(after, "tillpay_notifications_queued") == 1
    assert value(after, "tillpay_notification_oldest_age_seconds") >= 0
    assert value(after, "tillpay_notifications_failed") == 0


def test_ready_answers_503_while_the_database_is_behind_or_ahead_of_the_code(live: LiveServer) -> None:
    url = live.settings.database_url
    r = httpx.get(live.url + "/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    head = _revision(live)
    downgrade(url, "-1")
    try:
        behind = _revision(live)
        assert behind != head
        r = httpx.get(live.url + "/ready")
        assert r.status_code == 503
        assert r.json()["status"] == "unready"
        assert f"at revision {behind}" in r.json()["reason"] and "run tillpay migrate" in r.json()["reason"]
        assert httpx.get(live.url + "/health").status_code == 200  # alive all the same
    finally:
        upgrade(url)
    assert httpx.get(live.url + "/ready").status_code == 200
    _set_revision(live, "9999_from_a_newer_tillpay")
    try:
        r = httpx.get(live.url + "/ready")
        assert r.status_code == 503 and "newer than this server" in r.json()["reason"]
    finally:
        _set_revision(live, head)
    assert httpx.get(live.url + "/ready").status_code == 200


def _revision(live: LiveServer) -> str:
    async def go(p: Platform) -> str:
        async with p.engine.connect() as conn:
            return str(await conn.scalar(text("SELECT version_num FROM alembic_version")))

    return str(live.run(go))


def _set_revision(live: LiveServer, revision: str) -> None:
    async def go(p: Platform) -> None:
        async with p.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})

    live.run(go)


def test_ready_answers_503_when_the_database_is_unreachable() -> None:
    nobody = f"postgresql://tillpay:tillpay@127.0.0.1:{free_port()}/tillpay"
    server = LiveServer(nobody, embedded_worker=False)
    try:
        r = httpx.get(server.url + "/ready")
        assert r.status_code == 503
        assert r.json()["reason"].startswith("database unreachable")
        assert "tillpay:tillpay" not in r.text  # no credentials in the answer
        assert httpx.get(server.url + "/health").status_code == 200
        samples = scrape(server.url)
        assert value(samples, "tillpay_database_up") == 0
        assert value(samples, "tillpay_build_info", version=__version__, mode="production") == 1
    finally:
        server.stop()


# ------------------------------------------------------------------------- access and request ids


@pytest.fixture
async def app_for(db_url: str) -> AsyncIterator[Any]:
    """Build an app (no lifespan, no worker) with settings overrides; its platforms are closed after."""
    platforms: list[Platform] = []

    def build(**settings: object) -> Any:
        p = Platform(test_settings(db_url, **settings))
        platforms.append(p)
        return create_app(p, worker=False)

    yield build
    for p in platforms:
        await p.close()


def _client(app: Any, host: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(host, 40000)), base_url="http://t"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_metrics_in_production_are_for_loopback_or_the_bearer_token(app_for: Any) -> None:
    prod = app_for()
    async with _client(prod, "203.0.113.7") as remote, _client(prod, "127.0.0.1") as local:
        assert (await remote.get("/metrics")).status_code == 403
        assert (await local.get("/metrics")).status_code == 200
    for host in ("::1", "::ffff:127.0.0.1", "127.0.0.2"):
        async with _client(prod, host) as other_loopback:
            assert (await other_loopback.get("/metrics")).status_code == 200, host
    async with _client(prod, "::ffff:203.0.113.7") as mapped_remote:
        assert (await mapped_remote.get("/metrics")).status_code == 403
    async with _client(prod, "127.0.0.1") as local:
        # A proxy on this machine forwarding for someone else is not a loopback client.
        assert (await local.get("/metrics", headers={"x-forwarded-for": "203.0.113.7"})).status_code == 403
        assert (await local.get("/metrics", headers={"forwarded": "for=203.0.113.7"})).status_code == 403
    token = secrets.token_urlsafe(24)
    guarded = app_for(metrics_token=token)
    async with _client(guarded, "203.0.113.7") as remote, _client(guarded, "127.0.0.1") as local:
        refused = await local.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert (await remote.get("/metrics", headers={"authorization": "Bearer wrong"})).status_code == 401
        ok = await remote.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "tillpay_build_info" in ok.text
    sandbox = app_for(mode="sandbox")
    async with _client(sandbox, "203.0.113.7") as remote:
        assert (await remote.get("/metrics")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_every_answer_carries_a_request_id_taken_from_the_caller_when_well_formed(app_for: Any) -> None:
    async with _client(app_for(), "127.0.0.1") as c:
        r = await c.get("/health", headers={"x-request-id": "till-7:order-42.a_b"})
        assert r.headers["x-request-id"] == "till-7:order-42.a_b"
        for bad in (b"has space", b"x" * 129, b"%s%s", b"-leading-dash", "ünicode".encode()):
            r = await c.get("/health", headers={"x-request-id": bad})
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), bad
        first, second = (await c.get("/nothing-here")), (await c.get("/health"))
        assert first.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
        assert len(r.headers.get_list("x-request-id")) == 1


def test_standard_library_log_lines_written_during_a_request_carry_its_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("tillpay.test.request_ids")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logs.tag_stdlib_handlers("tillpay.test.request_ids")
        logger.warning("before %s", "any request")
        token = logs.request_id.set("till-7:order-42")
        try:
            logger.warning("during %s", "the request")
        finally:
            logs.request_id.reset(token)
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().splitlines() == [
        "before any request",
        "during the request request_id=till-7:order-42",
        "after",
    ]


def test_risk_verdicts_are_counted_once_whether_rows_are_settled_or_still_young(live: LiveServer) -> None:
    shop = make_shop(live)
    with shop.mapi() as c:
        for n in range(3):
            assert c.pay(f"R-{n}", shop.code(), "10.00", "USD", "Tea").ok
    tally = RiskTally()
    later = datetime.now(UTC) + timedelta(seconds=2 * RiskTally.SETTLE_SECONDS)

    def refresh(now: datetime) -> dict[tuple[str, str], int]:
        return live.run(lambda p: tally.refresh(p.engine, now))  # type: ignore[no-any-return]

    assert refresh(datetime.now(UTC)) == {("ALLOW", "default"): 3}  # all young: read as the tail
    assert refresh(later) == {("ALLOW", "default"): 3}  # all old: settled below the watermark
    settled_at = tally.watermark
    assert refresh(later) == {("ALLOW", "default"): 3} and tally.watermark == settled_at
    with shop.mapi() as c:
        assert c.pay("R-3", shop.code(), "400.00", "USD", "Kettle").status == "WAIT_BUYER_PAY"
    assert refresh(datetime.now(UTC)) == {
        ("ALLOW", "default"): 3,
        ("CONFIRM", "amount_over_confirm_limit"): 1,
    }
    assert tally.watermark == settled_at  # the young row is not settled yet
