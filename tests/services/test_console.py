"""The merchant console's use cases on SQLite and PostgreSQL: accounts, isolation, refunds, stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

import factories as f
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.payment import Status
from tillpay.services import console, console_auth, payments, settlement, simulate, stores
from tillpay.services.merchants import NewMerchant
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import tables as t

pytestmark = pytest.mark.anyio
PASSWORD = "correct horse battery"


async def _pay(
    p: Platform,
    m: NewMerchant,
    amount: int = 1000,
    *,
    ptid: str | None = None,
    store_id: str | None = None,
    terminal_id: str | None = None,
    subject: str = "Noodles",
    currency: str = "USD",
) -> payments.PayOutcome:
    c = await f.customer(p)
    return await payments.pay(
        p,
        payments.PayCommand(
            merchant=m.merchant,
            partner_trans_id=ptid or f"order-{c.user.id}",
            code=await f.code(p, c),
            price_amount=amount,
            price_currency=currency,
            settle_currency="USD",
            subject=subject,
            dialect="mapi",
            store_id=store_id,
            terminal_id=terminal_id,
            notify_url=m.merchant.notify_url,
        ),
    )


# ------------------------------------------------------------------------------------------ accounts


async def test_password_is_stored_as_argon2id_and_signs_in(platform: Platform) -> None:
    m = await f.merchant(platform)
    await console_auth.add_user(
        platform, partner_id=m.merchant.partner_id, login="Owner@Shop.test", password=PASSWORD, role="owner"
    )
    async with platform.engine.connect() as conn:
        stored = (await conn.execute(t.console_users.select())).one().password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    token, session = await console_auth.sign_in(platform, "owner@shop.test", PASSWORD, client="1.2.3.4")
    assert session.user.merchant_id == m.merchant.id and session.user.role == "owner"
    assert (await console_auth.session_for(platform, token)) == session


async def test_bad_input_creates_no_user(platform: Platform) -> None:
    m = await f.merchant(platform)
    pid = m.merchant.partner_id
    for kwargs in (
        dict(login="ok@x.test", password="short", role="owner"),
        dict(login="ok@x.test", password=PASSWORD, role="admin"),
        dict(login="<script>", password=PASSWORD, role="owner"),
    ):
        with pytest.raises(TillpayError) as e:
            await console_auth.add_user(platform, partner_id=pid, **kwargs)
        assert e.value.code is Code.ILLEGAL_ARGUMENT
    assert await console_auth.users_of(platform, m.merchant.id) == []
    await console_auth.add_user(platform, partner_id=pid, login="ok@x.test", password=PASSWORD, role="owner")
    with pytest.raises(TillpayError) as e:
        await console_auth.add_user(
            platform, partner_id=pid, login="OK@x.test", password=PASSWORD, role="owner"
        )
    assert e.value.code is Code.ALREADY_EXISTS


async def test_sign_in_locks_after_five_failures_even_with_the_right_password(
    platform: Platform, clock: FakeClock
) -> None:
    m = await f.merchant(platform)
    await console_auth.add_user(
        platform, partner_id=m.merchant.partner_id, login="o@x.test", password=PASSWORD, role="owner"
    )
    for _ in range(console_auth.MAX_FAILURES_PER_LOGIN):
        with pytest.raises(console_auth.SignInRefused) as e:
            await console_auth.sign_in(platform, "o@x.test", "wrong password!", client="9.9.9.9")
        assert e.value.reason == "invalid"
    with pytest.raises(console_auth.SignInRefused) as e:
        await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="8.8.8.8")
    assert e.value.reason == "locked"
    clock.advance(console_auth.FAILURE_WINDOW.total_seconds() + 1)
    await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="8.8.8.8")


async def test_one_client_guessing_many_logins_is_locked(platform: Platform) -> None:
    for i in range(console_auth.MAX_FAILURES_PER_CLIENT):
        with pytest.raises(console_auth.SignInRefused):
            await console_auth.sign_in(platform, f"guess{i}@x.test", "nope-nope-nope", client="6.6.6.6")
    with pytest.raises(console_auth.SignInRefused) as e:
        await console_auth.sign_in(platform, "another@x.test", "nope-nope-nope", client="6.6.6.6")
    assert e.value.reason == "locked"


async def test_sessions_expire_when_idle_and_after_their_lifetime(
    platform: Platform, clock: FakeClock
) -> None:
    m = await f.merchant(platform)
    await console_auth.add_user(
        platform, partner_id=m.merchant.partner_id, login="o@x.test", password=PASSWORD, role="owner"
    )
    token, _ = await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="1.1.1.1")
    clock.advance(console_auth.SESSION_IDLE.total_seconds() + 1)
    assert await console_auth.session_for(platform, token) is None

    token, _ = await console_auth.sign_in(platform, "o@x.test", PASSWORD, client="1.1.1.1")
    # Used every 20 minutes it stays alive, but never past its lifetime.
    step = timedelta(minutes=20)
    used = timedelta(0)
    while used + step < console_auth.SESSION_LIFETIME:
        clock.advance(step.total_seconds())
        used += step
        assert await console_auth.session_for(platform, token) is not None
    clock.advance(step.total_seconds())
    assert await console_auth.session_for(platform, token) is None


async def test_disabling_a_user_ends_its_sessions(platform: Platform) -> None:
    m = await f.merchant(platform)
    pid = m.merchant.partner_id
    u = await console_auth.add_user(
        platform, partner_id=pid, login="c@x.test", password=PASSWORD, role="read-only"
    )
    token, _ = await console_auth.sign_in(platform, "c@x.test", PASSWORD, client="1.1.1.1")
    other = await f.merchant(platform)
    with pytest.raises(TillpayError):  # another merchant cannot touch this user
        await console_auth.set_user_status(platform, other.merchant.id, u.id, "disabled")
    await console_auth.set_user_status(platform, m.merchant.id, u.id, "disabled")
    assert await console_auth.session_for(platform, token) is None
    with pytest.raises(console_auth.SignInRefused) as e:
        await console_auth.sign_in(platform, "c@x.test", PASSWORD, client="1.1.1.1")
    assert e.value.reason == "disabled"


def test_roles_allow_what_the_documentation_says() -> None:
    def user(role: str) -> console_auth.ConsoleUser:
        return console_auth.ConsoleUser(1, 1, "2088", "Shop", "x", "x", role, "active")

    assert user("cashier-supervisor").can("refund") and not user("cashier-supervisor").can("settlements")
    assert not user("read-only").can("refund") and user("read-only").can("settlements")
    assert user("manager").can("integration") and not user("manager").can("keys")
    assert all(user("owner").can(a) for a in console_auth.PERMISSIONS)


# ----------------------------------------------------------------------------------------- isolation


async def test_a_merchant_never_reaches_another_merchants_payment_refund_or_notification(
    platform: Platform,
) -> None:
    await f.rates(platform)
    a = await f.merchant(platform)
    b = await f.merchant(platform, notify_url="http://127.0.0.1:9/notify")
    paid_b = (await _pay(platform, b, ptid="shared-order")).payment
    rb = await console.refund(platform, b.merchant, paid_b.trade_no, 100, console.new_refund_id(), None)
    notify_b = (await console.notifications(platform, b.merchant.id))[0].notify_id

    for q in (paid_b.trade_no, "shared-order", rb.refund_no, rb.partner_refund_id, notify_b):
        assert (await console.list_payments(platform, a.merchant.id, console.TxFilter(q=q))).items == []
        assert len((await console.list_payments(platform, b.merchant.id, console.TxFilter(q=q))).items) == 1
    with pytest.raises(TillpayError) as e:
        await console.payment_detail(platform, a.merchant.id, paid_b.trade_no)
    assert e.value.code is Code.NOT_FOUND
    with pytest.raises(TillpayError) as e:
        await console.refund(platform, a.merchant, paid_b.trade_no, 100, console.new_refund_id(), None)
    assert e.value.code is Code.NOT_FOUND
    with pytest.raises(TillpayError) as e:
        await console.redeliver(platform, a.merchant.id, notify_b)
    assert e.value.code is Code.NOT_FOUND
    assert await console.notifications(platform, a.merchant.id) == []
    after = await console.payment_detail(platform, b.merchant.id, paid_b.trade_no)
    assert after.payment.refunded_price == 100 and len(after.refunds) == 1


async def test_a_merchant_never_downloads_another_merchants_file(platform: Platform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    platform.settings = platform.settings.model_copy(update={"settlement_dir": str(tmp_path)})
    await f.rates(platform)
    a = await f.merchant(platform)
    b = await f.merchant(platform)
    day = settlement.last_closed_day(platform)
    sim = await simulate.simulate(
        platform, day, 6, n_merchants=0, partners=[b.merchant.partner_id], seed=3, journal_dir=tmp_path / "j"
    )
    await settlement.run_day(platform, day)
    files_b = await console.files(platform, b.merchant)
    # The reconciliation report of the merchant's own journal against its files of the day closes.
    journal = next(x for x in sim.journals if day.strftime("%Y%m%d") in x.name).read_bytes()
    report = await console.reconcile_report(platform, b.merchant, files_b, journal)
    assert "No differences; every total closes." in report
    with pytest.raises(ValueError):
        await console.reconcile_report(platform, b.merchant, files_b, b"not,a\njournal\n")
    assert {x.kind for x in files_b} == {"settlement", "transaction"}
    assert await console.files(platform, a.merchant) == []
    for x in files_b:
        view, data = await console.file(platform, b.merchant, x.name)
        assert view.sha256 == x.sha256 and len(data) == x.size
        with pytest.raises(TillpayError) as e:
            await console.file(platform, a.merchant, x.name)
        assert e.value.code is Code.NOT_FOUND
    assert await console.batches(platform, a.merchant) == []
    assert [bt.partner_id for bt in await console.batches(platform, b.merchant)] == [b.merchant.partner_id]


# ------------------------------------------------------------------------------------------- refunds


async def test_the_same_page_refund_id_refunds_once(platform: Platform) -> None:
    await f.rates(platform)
    m = await f.merchant(platform)
    paid = (await _pay(platform, m, 1000, currency="CNY")).payment
    rid = console.new_refund_id()
    first = await console.refund(platform, m.merchant, paid.trade_no, 250, rid, "broken bowl")
    again = await console.refund(platform, m.merchant, paid.trade_no, 250, rid, "broken bowl")
    assert again.refund_no == first.refund_no
    d = await console.payment_detail(platform, m.merchant.id, paid.trade_no)
    assert d.payment.refunded_price == 250 and len(d.refunds) == 1 and d.refundable == 750
    assert [e.kind for e in d.timeline].count("refund") == 1
    with pytest.raises(TillpayError) as e:
        await console.refund(platform, m.merchant, paid.trade_no, 300, rid, None)
    assert e.value.code is Code.REPEAT_REQ_INCONSISTENT
    with pytest.raises(TillpayError) as e:
        await console.refund(platform, m.merchant, paid.trade_no, 100, "not-a-page-id", None)
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    with pytest.raises(TillpayError) as e:
        await console.refund(platform, m.merchant, paid.trade_no, 751, console.new_refund_id(), None)
    assert e.value.code is Code.REFUND_AMOUNT_EXCEED
    full = await console.refund(platform, m.merchant, paid.trade_no, 750, console.new_refund_id(), None)
    assert full.payment.status is Status.TRADE_CLOSED


# ------------------------------------------------------------------------------ list, filters, export


async def test_filters_search_and_pages(platform: Platform) -> None:
    await f.rates(platform)
    m = await f.merchant(platform)
    mid = m.merchant.id
    small = (await _pay(platform, m, 500, store_id="S1", terminal_id="T1")).payment
    big = (await _pay(platform, m, 90_000, store_id="S2", terminal_id="T2", currency="CNY")).payment
    for i in range(5):
        await _pay(platform, m, 700 + i, store_id="S1", terminal_id="T9")

    async def ids(**kw: object) -> set[str]:
        page = await console.list_payments(platform, mid, console.TxFilter(**kw))  # type: ignore[arg-type]
        return {v.trade_no for v in page.items}

    assert await ids(terminal_id="T1") == {small.trade_no}
    assert await ids(store_id="S2") == {big.trade_no}
    assert await ids(currency="CNY") == {big.trade_no}
    assert await ids(wallet_currency="CNY") >= {small.trade_no, big.trade_no}
    assert await ids(currency="USD", max_amount=500) == {small.trade_no}
    assert await ids(min_amount=10_000) == {big.trade_no}  # settlement amount: CNY 900 is about USD 126
    assert len(await ids(dialect="mapi")) == 7 and await ids(dialect="antom") == set()
    assert len(await ids(status="TRADE_SUCCESS")) == 7 and await ids(status="TRADE_CLOSED") == set()
    today = platform.now().date()
    assert len(await ids(date_from=today - timedelta(days=1), date_to=today + timedelta(days=1))) == 7
    assert await ids(date_to=today - timedelta(days=2)) == set()

    seen: list[str] = []
    before = None
    while True:
        page = await console.list_payments(platform, mid, console.TxFilter(), before=before, limit=3)
        seen += [v.trade_no for v in page.items]
        if page.next_before is None:
            break
        before = page.next_before
    assert len(seen) == 7 == len(set(seen))


def test_filter_parsing_rejects_bad_values_with_a_clear_message() -> None:
    good = console.parse_filter({"from": "2026-11-01", "min": "1.50", "currency": "USD", "q": "abc"}, "USD")
    assert good.min_amount == 150 and good.q == "abc"
    for params, word in (
        ({"from": "yesterday"}, "from"),
        ({"min": "1,5x"}, "min"),
        ({"status": "PAID"}, "status"),
        ({"dialect": "soap"}, "dialect"),
        ({"q": "<script>"}, "q"),
        ({"currency": "XXQ"}, "currency"),
    ):
        with pytest.raises(TillpayError) as e:
            console.parse_filter(params, "USD")
        assert word in (e.value.detail or "")


async def test_csv_export_lists_every_match_and_defuses_formulas(platform: Platform) -> None:
    await f.rates(platform)
    m = await f.merchant(platform)
    await _pay(platform, m, 100, subject='=HYPERLINK("http://evil")')
    await _pay(platform, m, 200, subject="plain")
    text = "".join([chunk async for chunk in console.export_csv(platform, m.merchant.id, console.TxFilter())])
    lines = text.strip().splitlines()
    assert lines[0].split(",")[:2] == ["trade_no", "partner_trans_id"] and len(lines) == 3
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


# ------------------------------------------------------------------------------- stores and terminals


async def test_a_disabled_terminal_or_store_cannot_take_payments(platform: Platform) -> None:
    await f.rates(platform)
    m = await f.merchant(platform)
    mid = m.merchant.id
    await stores.add_store(platform, mid, "S1", "Harbour Road")
    await stores.add_terminal(platform, mid, "T1", "Till 1", "S1")
    await stores.add_terminal(platform, mid, "T2", "Till 2", "S1")
    await stores.set_status(platform, mid, "terminal", "T1", "disabled")
    before = await console.list_payments(platform, mid, console.TxFilter())
    with pytest.raises(TillpayError) as e:
        await _pay(platform, m, terminal_id="T1")
    assert e.value.code is Code.ILLEGAL_ARGUMENT and "T1 is disabled" in (e.value.detail or "")
    assert (await console.list_payments(platform, mid, console.TxFilter())).items == before.items
    assert (await _pay(platform, m, terminal_id="T2")).code is None
    await stores.set_status(platform, mid, "store", "S1", "disabled")
    for kw in ({"terminal_id": "T2"}, {"store_id": "S1"}):
        with pytest.raises(TillpayError):
            await _pay(platform, m, **kw)  # type: ignore[arg-type]
    with pytest.raises(TillpayError) as e:  # a merchant-presented QR order from there too
        await payments.precreate(
            platform,
            payments.PrecreateCommand(
                merchant=m.merchant,
                partner_trans_id="qr-from-s1",
                price_amount=100,
                price_currency="USD",
                settle_currency="USD",
                subject="x",
                dialect="mapi",
                store_id="S1",
            ),
        )
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    await stores.set_status(platform, mid, "store", "S1", "active")
    await stores.set_status(platform, mid, "terminal", "T1", "active")
    assert (await _pay(platform, m, terminal_id="T1", store_id="S1")).code is None
    # Unregistered ids pay as before, and another merchant's switches do not apply.
    other = await f.merchant(platform)
    await stores.add_terminal(platform, other.merchant.id, "T9", "Elsewhere")
    await stores.set_status(platform, other.merchant.id, "terminal", "T9", "disabled")
    assert (await _pay(platform, m, terminal_id="T9")).code is None


async def test_store_input_is_checked_and_scoped(platform: Platform) -> None:
    m = await f.merchant(platform)
    other = await f.merchant(platform)
    with pytest.raises(TillpayError):
        await stores.add_store(platform, m.merchant.id, "bad id with spaces", "x")
    with pytest.raises(TillpayError):
        await stores.add_terminal(platform, m.merchant.id, "T1", "Till", store_id="NOPE")
    await stores.add_store(platform, m.merchant.id, "S1", "<b>Main</b>")
    with pytest.raises(TillpayError) as e:
        await stores.add_store(platform, m.merchant.id, "S1", "again")
    assert e.value.code is Code.ALREADY_EXISTS
    with pytest.raises(TillpayError) as e:
        await stores.set_status(platform, other.merchant.id, "store", "S1", "disabled")
    assert e.value.code is Code.NOT_FOUND
    assert [s.status for s in await stores.list_stores(platform, m.merchant.id)] == ["active"]
    assert await stores.list_stores(platform, other.merchant.id) == []


# ------------------------------------------------------------------------------ dashboard, integration


async def test_dashboard_counts_todays_sales_refunds_and_declines(platform: Platform) -> None:
    await f.rates(platform)
    m = await f.merchant(platform)
    a = (await _pay(platform, m, 1000)).payment
    await _pay(platform, m, 2500)
    await console.refund(platform, m.merchant, a.trade_no, 400, console.new_refund_id(), None)
    poor = await f.customer(platform, balance=1)
    declined = await payments.pay(
        platform,
        payments.PayCommand(
            merchant=m.merchant,
            partner_trans_id="too-dear",
            code=await f.code(platform, poor),
            price_amount=5000,
            price_currency="USD",
            settle_currency="USD",
            subject="x",
            dialect="mapi",
        ),
    )
    assert declined.code is Code.BUYER_BALANCE_NOT_ENOUGH
    d = await console.dashboard(platform, m.merchant.id)
    (usd,) = d.today
    assert (usd.currency, usd.sales, usd.sales_count, usd.refunds, usd.net) == ("USD", 3500, 2, 400, 3100)
    assert d.month == d.today
    assert sum(v.get("USD", 0) for _, v in d.per_day) == 3500
    assert sum(v.get("USD", 0) for _, v in d.per_hour) == 3500
    assert [v.partner_trans_id for v in d.declines] == ["too-dear"]
    assert d.confirm_share[1] >= 3


def commits_halfway(monkeypatch: pytest.MonkeyPatch, read: str, write: Callable[[], Awaitable[None]]) -> None:
    """Another request's ``write`` commits just before the page's read ``ConsoleReads.<read>`` runs
    for the first time: halfway through the page's other statements."""
    from tillpay.store.console import ConsoleReads

    original = getattr(ConsoleReads, read)
    done: list[bool] = []

    async def write_first(self: ConsoleReads, *args: object) -> object:
        if not done:
            done.append(True)
            await write()
        return await original(self, *args)

    monkeypatch.setattr(ConsoleReads, read, write_first)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_the_dashboard_reads_one_moment_even_when_a_sale_commits_halfway(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL's default isolation takes a snapshot per statement: a sale committed between the
    # totals and the per-day figures would show in one and not the other (SQLite's read is one
    # snapshot by itself).
    await f.rates(platform)
    m = await f.merchant(platform)
    await _pay(platform, m, 1000)
    sold: list[int] = []

    async def a_sale() -> None:
        sold.append((await _pay(platform, m, 700)).payment.price_amount)

    commits_halfway(monkeypatch, "paid_since", a_sale)
    d = await console.dashboard(platform, m.merchant.id)
    (usd,) = d.today
    assert sold == [700]
    assert usd.sales == sum(v.get("USD", 0) for _, v in d.per_day) == 1000
    monkeypatch.undo()
    assert (await console.dashboard(platform, m.merchant.id)).today[0].sales == 1700


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_payments_page_reads_one_moment_even_when_a_refund_commits_halfway(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    await f.rates(platform)
    m = await f.merchant(platform)
    paid = (await _pay(platform, m, 1000)).payment
    refunded: list[int] = []

    async def a_refund() -> None:
        await console.refund(platform, m.merchant, paid.trade_no, 300, console.new_refund_id(), None)
        refunded.append(300)

    commits_halfway(monkeypatch, "refunds", a_refund)
    d = await console.payment_detail(platform, m.merchant.id, paid.trade_no)
    assert refunded == [300]
    assert d.payment.refunded_price == sum(x.price_amount for x in d.refunds) == 0
    monkeypatch.undo()
    d = await console.payment_detail(platform, m.merchant.id, paid.trade_no)
    assert d.payment.refunded_price == sum(x.price_amount for x in d.refunds) == 300


async def test_test_payment_pays_from_a_topped_up_sandbox_wallet(sandbox_platform: Platform) -> None:
    platform = sandbox_platform
    m = await f.merchant(platform, "SGD", notify_url="http://127.0.0.1:9/n")
    first = await console.test_payment(platform, m.merchant, 150)
    second = await console.test_payment(platform, m.merchant, 250)
    assert first.status is second.status is Status.TRADE_SUCCESS
    assert first.settle_currency == "SGD" and first.wallet_currency == "SGD"
    page = await console.list_payments(platform, m.merchant.id, console.TxFilter())
    assert {v.trade_no for v in page.items} == {first.trade_no, second.trade_no}
    assert len(await console.notifications(platform, m.merchant.id)) == 2
    with pytest.raises(TillpayError):
        await console.test_payment(platform, m.merchant, 0)


async def test_key_rotation_and_notify_url(platform: Platform) -> None:
    from tillpay import signing

    m = await f.merchant(platform)
    key = signing.generate_private_key()
    pem = signing.public_key_pem(key.public_key())
    assert [k.version for k in await console.key_versions(platform, m.merchant)] == [1]
    with pytest.raises(TillpayError):
        await console.rotate_key(
            platform, m.merchant, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"
        )
    assert await console.rotate_key(platform, m.merchant, pem) == 2
    keys = await console.key_versions(platform, m.merchant)
    assert [(k.version, k.current) for k in keys] == [(2, True), (1, False)]
    fresh = await platform.merchant_by_partner(m.merchant.partner_id, fresh=True)
    assert fresh.public_key is not None and fresh.public_key.strip() == pem.strip()
    with pytest.raises(TillpayError):
        await console.set_notify_url(platform, fresh, "javascript:alert(1)")
    await console.set_notify_url(platform, fresh, "https://shop.example/notify")
    assert (await platform.merchant_by_partner(m.merchant.partner_id, fresh=True)).notify_url == (
        "https://shop.example/notify"
    )
