"""DESIGN's hot-row rule, checked on PostgreSQL: a pay, refund, cancel or confirmation transaction writes
the rows of one customer at most, so the schema can be distributed by customer (docs/scaling.md).

Row triggers record, for every row written, the transaction id and the customer the row belongs to (the
wallet, its devices and code uses, its payments and everything hanging off a payment, its wallet
postings). Two customers pay, are refused, confirm, get refunds and cancellations, and pay QR orders at
the same time through MAPI; afterwards no transaction may name two customers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import factories as f
from conftest import LiveServer
from dialect_clients import Shop, make_shop
from tillpay.services.audit import audit

#: Tables holding a customer's rows, and how a row names its customer (``j`` is the row as jsonb).
OWNERS = {
    "wallet_users": "(j->>'id')::bigint",
    "devices": "(j->>'user_id')::bigint",
    "payments": "(j->>'user_id')::bigint",
    "wallet_sessions": "(j->>'user_id')::bigint",
    "code_uses": "(SELECT user_id FROM devices WHERE id = (j->>'device_id')::int)",
    "wallet_browsers": "(SELECT user_id FROM devices WHERE id = (j->>'device_id')::int)",
    "wallet_login_failures": "(SELECT user_id FROM devices WHERE id = (j->>'device_id')::int)",
    "bad_codes": "(SELECT user_id FROM devices WHERE device_no = (j->>'device_no')::int)",
    "refunds": "(SELECT user_id FROM payments WHERE id = (j->>'payment_id')::int)",
    "journal_entries": "(SELECT user_id FROM payments WHERE id = (j->>'payment_id')::int)",
    "risk_decisions": "(SELECT user_id FROM payments WHERE id = (j->>'payment_id')::int)",
    "outbox": "(SELECT user_id FROM payments WHERE id = (j->>'payment_id')::int)",
    "postings": "CASE WHEN j->>'account' LIKE 'wallet:%' THEN substr(j->>'account', 8)::bigint END",
}


def _install(conn: psycopg.Connection) -> None:
    branches = "\n".join(
        f"{'IF' if i == 0 else 'ELSIF'} TG_TABLE_NAME = '{table}' THEN c := {expr};"
        for i, (table, expr) in enumerate(OWNERS.items())
    )
    conn.execute("CREATE TABLE tx_touch (txid bigint NOT NULL, tbl text NOT NULL, customer bigint NOT NULL)")
    conn.execute(
        f"""
        CREATE FUNCTION tx_touch() RETURNS trigger LANGUAGE plpgsql AS $fn$
        DECLARE j jsonb; c bigint;
        BEGIN
          FOR j IN SELECT unnest(CASE TG_OP WHEN 'INSERT' THEN ARRAY[to_jsonb(NEW)]
                                            WHEN 'DELETE' THEN ARRAY[to_jsonb(OLD)]
                                            ELSE ARRAY[to_jsonb(NEW), to_jsonb(OLD)] END)
          LOOP
            {branches}
            END IF;
            IF c IS NOT NULL THEN
              INSERT INTO tx_touch VALUES (txid_current(), TG_TABLE_NAME, c);
            END IF;
          END LOOP;
          RETURN NULL;
        END $fn$
        """
    )
    for table in OWNERS:
        conn.execute(
            f"CREATE TRIGGER tx_touch_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tx_touch()"
        )


def _crossing(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """Transactions that wrote rows of more than one customer: (txid, customers, tables)."""
    return conn.execute(
        "SELECT txid, array_agg(DISTINCT customer), array_agg(DISTINCT tbl) FROM tx_touch "
        "GROUP BY txid HAVING count(DISTINCT customer) > 1"
    ).fetchall()


@pytest.fixture
def tracked(db_url: str) -> Iterator[tuple[LiveServer, psycopg.Connection]]:
    """A server without the embedded worker (expiry closes many customers' orders in one batch, which
    is not a money movement) over a database whose customer rows are tracked."""
    conn = psycopg.connect(db_url, autocommit=True)
    _install(conn)
    server = LiveServer(db_url, embedded_worker=False)
    try:
        yield server, conn
    finally:
        server.stop()
        conn.close()
    assert not server.run(audit)


def _everything(shop: Shop, prefix: str) -> None:
    """Every money movement a customer can be part of, through MAPI and the wallet's confirmation."""
    with shop.mapi() as c:
        paid = c.pay(f"{prefix}-1", shop.code(), "10.00", "USD", "Tea")
        assert paid.ok
        big = c.pay(f"{prefix}-2", shop.code(), "400.00", "USD", "Kettle")  # over the confirmation limit
        assert big.status == "WAIT_BUYER_PAY"
        assert shop.confirm(big.trade_no)
        assert c.pay(f"{prefix}-3", shop.code(), "2000.00", "USD", "Bike").error == "BUYER_BALANCE_NOT_ENOUGH"
        code = shop.code()
        assert c.pay(f"{prefix}-4", code, "1.00", "USD", "Gum").ok
        assert c.pay(f"{prefix}-5", code, "1.00", "USD", "Gum").error == "BUYER_IDENTITY_CODE_USED"
        assert c.pay(f"{prefix}-6", "28" + "0" * 16, "1.00", "USD", "Gum").error  # a wrong code
        assert c.refund(f"{prefix}-1", f"{prefix}-1-R1", "4.00", "USD").ok
        assert c.refund(f"{prefix}-1", f"{prefix}-1-R2", "6.00", "USD").ok  # the rest: fully refunded
        assert c.cancel(f"{prefix}-2").ok  # paid: cancelled by a refund of everything
        qr = c.precreate(f"{prefix}-7", "5.00", "USD", "Cake")
        assert qr.ok
        assert shop.pay_qr(qr.trade_no)
        waiting = c.pay(f"{prefix}-8", shop.code(), "400.00", "USD", "Kettle")
        assert waiting.status == "WAIT_BUYER_PAY"
        assert c.cancel(f"{prefix}-8").ok  # unpaid: closed


def _in_threads(*jobs: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_pay_refund_cancel_and_confirm_transactions_write_one_customers_rows(
    tracked: tuple[LiveServer, psycopg.Connection],
) -> None:
    live, conn = tracked
    alice = make_shop(live)
    bob = Shop(live, alice.new, live.run(lambda p: f.customer(p, "CNY", 1_000_000)))
    conn.execute("DELETE FROM tx_touch")  # the set-up (two customers created and topped up) is not checked
    _in_threads(lambda: _everything(alice, "A"), lambda: _everything(bob, "B"))

    customers = {r[0] for r in conn.execute("SELECT DISTINCT customer FROM tx_touch")}
    assert customers == {alice.customer.user.id, bob.customer.user.id}
    tables = {r[0] for r in conn.execute("SELECT DISTINCT tbl FROM tx_touch")}
    assert {"wallet_users", "payments", "refunds", "postings", "code_uses", "risk_decisions"} <= tables
    assert conn.execute("SELECT count(DISTINCT txid) FROM tx_touch").fetchone()[0] >= 20
    assert _crossing(conn) == []


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_check_sees_a_transaction_that_writes_two_customers(
    tracked: tuple[LiveServer, psycopg.Connection],
) -> None:
    live, conn = tracked
    alice = make_shop(live)
    bob = live.run(lambda p: f.customer(p, "CNY", 0))
    a, b = alice.customer.user.id, bob.user.id
    conn.execute("DELETE FROM tx_touch")
    with conn.transaction():  # what a transfer between wallets in one transaction would do
        conn.execute("UPDATE wallet_users SET status = status WHERE id IN (%s, %s)", (a, b))
    [(_, found, tables)] = _crossing(conn)
    assert sorted(found) == sorted([a, b]) and tables == ["wallet_users"]
