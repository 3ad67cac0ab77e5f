"""The database's own rate for a pay's statements, without Tillpay: the limit the pay rate is held against.

The statements are the pay path's own (``store.paypath`` and ``post_entry``), compiled by SQLAlchemy
for the database, in the order a successful pay runs them. On SQLite:

    read transaction:  BEGIN; READ; ROLLBACK
    write transaction: BEGIN; INSERT code_uses; LOCK wallet; TOTALS; INSERT payments RETURNING id;
                       INSERT risk_decisions; INSERT journal_entries RETURNING id; INSERT postings (2 rows);
                       UPDATE wallet_users; COMMIT

On PostgreSQL, as the common pay sends them (two round trips):

    PG_READ (the device, wallet, rules, balance, version and totals; outside a transaction)
    SELECT tillpay_pay(...)  (code use, guards, payment, risk decision, ledger entry; commits by itself)

SQLite: a ``sqlite3`` loop on one connection with Tillpay's PRAGMAs (WAL, ``synchronous=FULL``,
``BEGIN IMMEDIATE``). PostgreSQL: ``pgbench -M prepared`` with a script of the same two statements; what
varies per pay (ids, the wallet, the code) is a pgbench variable, the read's version and totals go to
the call with ``\\gset``, constants are inlined. pgbench stops a client at the first error, so each
client pays from its own wallets (no guard of ``tillpay_pay`` can fail between its read and its call).
Both run against the benchmark's own database after the measured run, so the tables, indexes
and row counts are the ones the pays saw.
"""

# pgbench runs as a program on purpose; every argument is built here, none comes from a user.
# ruff: noqa: S603
from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from tillpay.store import paypath

_CONFIG = json.dumps({"confirm_above": {"CNY": "2000.00"}, "per_payment_limit": {}})
_INPUTS = json.dumps({"wallet_amount": 1000, "wallet_currency": "CNY", "day_total": 0, "month_total": 0})


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of the pay path: its name, the SQLAlchemy construct and the columns it sets."""

    name: str
    stmt: ClauseElement
    keys: tuple[str, ...] = ()
    rows: int = 1  # executemany rows (postings)


PAYMENT_KEYS = (
    "trade_no",
    "merchant_id",
    "partner_trans_id",
    "kind",
    "dialect",
    "status",
    "result_code",
    "request_digest",
    "subject",
    "price_amount",
    "price_currency",
    "settle_amount",
    "settle_currency",
    "wallet_amount",
    "wallet_currency",
    "settle_rate",
    "wallet_rate",
    "wallet_mid_rate",
    "margin_bps",
    "margin_amount",
    "user_id",
    "device_id",
    "risk_rule",
    "notify_url",
    "sign_type",
    "store_id",
    "terminal_id",
    "secondary_merchant_id",
    "secondary_merchant_name",
    "secondary_merchant_industry",
    "store_name",
    "memo",
    "created_at",
    "expires_at",
    "paid_at",
    "closed_at",
)


def statements() -> tuple[list[Statement], list[Statement]]:
    """(read transaction, write transaction) of a successful pay on SQLite."""
    write = [
        Statement("code_use", paypath._CODE_USE["sqlite"], ("device_id", "step", "slot", "created_at")),
        Statement("lock", paypath.LOCK),
        Statement("totals", paypath.TOTALS),
        Statement("payment", paypath._PAYMENT["sqlite"], PAYMENT_KEYS),
        Statement(
            "risk_decision",
            paypath.RISK_DECISION,
            ("payment_id", "verdict", "rule", "code", "fired", "inputs", "config", "created_at"),
        ),
        Statement("entry", paypath.ENTRY, ("kind", "ref", "payment_id", "memo", "created_at")),
        Statement("postings", paypath.POSTINGS, ("entry_id", "account", "currency", "amount"), rows=2),
        Statement("wallet", paypath.WALLET_DELTA),
    ]
    return [Statement("read", paypath.READ)], write


def _values(i: int, device: int, merchant: int, partner: str, now: datetime) -> dict[str, Any]:
    """Parameters for pay number ``i`` of a loop (device ``device`` belongs to wallet ``device``)."""
    return {
        "merchant_id": merchant,
        "ptid": f"DB-{i}",
        "partner_trans_id": f"DB-{i}",
        "since": now - timedelta(seconds=600),
        "device_no": 20_000_000 + device,
        "partner_id": partner,
        "price_currency": "CNY",
        "now": now,
        "user_id": device,
        "device_id": device,
        "step": 10**9 + i,
        "slot": 0,
        "created_at": now,
        "day": now - timedelta(hours=10),
        "month": now - timedelta(days=20),
        "velocity_since": now - timedelta(minutes=10),
        "lower": now - timedelta(days=20),
        "trade_no": f"2026112622{i:018d}",
        "kind": "barcode",
        "dialect": "mapi",
        "status": "TRADE_SUCCESS",
        "result_code": None,
        "request_digest": "0" * 64,
        "subject": "Bench order",
        "price_amount": 1000,
        "settle_amount": 1000,
        "settle_currency": "CNY",
        "wallet_amount": 1000,
        "wallet_currency": "CNY",
        "settle_rate": "1",
        "wallet_rate": "1",
        "wallet_mid_rate": "1",
        "margin_bps": 0,
        "margin_amount": 0,
        "risk_rule": "default",
        "notify_url": None,
        "sign_type": "RSA2",
        "store_id": "S01",
        "terminal_id": "T01",
        "smid": None,  # the read's secondary merchant lookup: none named, as most tills send
        "sm_store_id": "S01",
        "secondary_merchant_id": None,
        "secondary_merchant_name": None,
        "secondary_merchant_industry": None,
        "store_name": None,
        "memo": None,
        "expires_at": None,
        "paid_at": now,
        "closed_at": None,
        "verdict": "ALLOW",
        "rule": "default",
        "code": None,
        "fired": "[]",
        "inputs": _INPUTS,
        "config": _CONFIG,
        "wallet_id": device,
        "delta": -1000,
        # Set from what the inserts return.
        "payment_id": 0,
        "ref": "",
        "entry_id": 0,
    }


# --------------------------------------------------------------------------------------------- SQLite


def _sqlite_time(v: Any) -> Any:
    # As SQLAlchemy stores DATETIME on SQLite (UTCDateTime: naive UTC).
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return v


def _sqlite_compiled(s: Statement) -> tuple[str, list[str], SQLCompiler]:
    c = cast(SQLCompiler, s.stmt.compile(dialect=sqlite_dialect.dialect(), column_keys=list(s.keys) or None))
    return str(c), list(c.positiontup or []), c


def sqlite_rate(path: str, devices: int, merchant: int, partner: str, seconds: float) -> float:  # float-ok
    """Pays per second of the pay statements in a sqlite3 loop on ``path`` (devices 1..``devices``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    read, write = statements()
    plan = [(s, *_sqlite_compiled(s)) for s in (*read, *write)]
    rng = random.Random(8)
    base = int(time.time() * 1000) % 10**9 * 1000
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        v = _values(base + n, rng.randint(1, devices), merchant, partner, datetime.now(UTC))
        for s, sql, names, c in plan:
            if s.name == "read":
                conn.execute("BEGIN IMMEDIATE")
            elif s.name == "code_use":
                conn.execute("BEGIN IMMEDIATE")
            if s.name == "postings":
                conn.executemany(
                    sql,
                    [
                        [v["entry_id"], f"wallet:{v['user_id']}", "CNY", -1000],
                        [v["entry_id"], f"merchant:{merchant}:payable", "CNY", 1000],
                    ],
                )
                continue
            params = c.construct_params({**v, "kind": "payment"} if s.name == "entry" else v) or {}
            args = [_sqlite_time(params[k]) for k in names]
            row = conn.execute(sql, args).fetchone()
            if s.name == "payment":
                v["payment_id"] = row[0]
                v["ref"] = f"payment:{row[0]}"
            elif s.name == "entry":
                v["entry_id"] = row[0]
            if s.name == "read":
                conn.execute("ROLLBACK")
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


# ----------------------------------------------------------------------------------------- PostgreSQL

#: Parameters that vary per pay, as pgbench expressions (the rest are inlined constants).
_PG_VARS = {
    "ptid": ":tx",
    "partner_trans_id": ":tx",
    "trade_no": ":tx",
    "device_no": "(20000000 + :dev)",
    "user_id": ":dev",
    "device_id": ":dev",
    "wallet_id": ":dev",
    "step": ":tx",
}
_PG_TIMES = {
    "since": "now() - interval '600 seconds'",
    "now": "now()",
    "created_at": "now()",
    "paid_at": "now()",
    "day": "now() - interval '10 hours'",
    "month": "now() - interval '20 days'",
    "velocity_since": "now() - interval '10 minutes'",
    "lower": "now() - interval '20 days'",
}


def _pg_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def _pg_time(t: datetime) -> str:
    """A constant UTC time as SQL without a ':' (pgbench reads ':name' as a variable, even in literals)."""
    micros = int(t.timestamp() * 1_000_000)
    return f"(to_timestamp({micros}::numeric / 1000000) AT TIME ZONE 'UTC')"


def pgbench_script(devices: int, merchant: int, partner: str, clients: int = 16) -> str:
    """The pgbench script of one common pay, the two statements as the server sends them."""
    now = datetime.now(UTC)
    v = _values(0, 1, merchant, partner, now)
    v.update(totals_now=now, default_velocity_minutes=10)
    times = {k: _pg_time(v[k]) for k in ("since", "day", "month", "totals_now")}
    velocity_since = _pg_time(now - timedelta(minutes=10))
    d = psycopg.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves this constructor untyped

    def expr(name: str, params: Mapping[str, Any]) -> str:
        if name in _PG_VARS:
            return _PG_VARS[name]
        if name in times:
            return times[name]
        if name in _PG_TIMES:
            return f"({_PG_TIMES[name]})::timestamp"
        return _pg_literal(params[name])

    c = paypath.PG_READ.compile(dialect=d)
    params = c.construct_params(v) or {}  # literals in the statement are binds with their value set
    read = re.sub(
        r"%\((\w+)\)s(::(?:TIMESTAMP WITHOUT TIME ZONE|[A-Z]+(?:\(\d+\))?))?",
        lambda m: expr(m.group(1), params) + (m.group(2) or ""),
        str(c),
    ).replace("\n", " ")
    # The payment's columns: constants, and what varies per pay merged in (pgbench variables cannot
    # stand inside the JSON text; json.dumps puts a space after every ':', which pgbench then leaves
    # alone). Its times are the call's own (now(), as UTC).
    const = {k: v[k] for k in PAYMENT_KEYS if not isinstance(v[k], datetime) and k not in _PG_VARS}
    const.update(settle_rate="1", wallet_rate="1", wallet_mid_rate="1", risk_rule="default")
    payment = (
        f"({_pg_literal(json.dumps(const))}::jsonb"
        " || jsonb_build_object('trade_no', :tx::text, 'partner_trans_id', :tx::text, 'user_id', :dev::int,"
        " 'device_id', :dev::int, 'created_at', now() AT TIME ZONE 'UTC', 'paid_at', now() AT TIME ZONE 'UTC'))"
    )
    decision = "ARRAY[" + ", ".join(_pg_literal(v[k]) for k in ("verdict", "rule")) + ", NULL, "
    decision += ", ".join(_pg_literal(v[k]) for k in ("fired", "inputs", "config")) + "]"
    # As services/payments._charge_at_once passes them; the accounts are built with chr(58), their ':'.
    args = [
        payment,
        decision,
        ":dev",
        ":tx",
        "0",
        "true",
        ":dev",
        ":r_version",
        times["day"],
        times["month"],
        velocity_since,
        ":r_day_total",
        ":r_month_total",
        ":r_recent",
        f"ARRAY['wallet' || chr(58) || :dev, 'merchant' || chr(58) || '{merchant}' || chr(58) || 'payable']",
        "ARRAY['CNY', 'CNY']",
        "ARRAY[-1000, 1000]",
        "NULL",
        "(now() AT TIME ZONE 'UTC')",
        "(now() AT TIME ZONE 'UTC')",
    ]
    call = re.sub(r"\$(\d+)", lambda m: args[int(m.group(1)) - 1], paypath.PAY_AT_ONCE)
    # Client n (0-based) pays from wallets n + 1, n + 1 + clients, ...: no two clients share a wallet.
    per_client = max(1, devices // clients)
    lines = [
        f"\\set dev 1 + :client_id + {clients} * random(0, {per_client - 1})",
        "\\set k :k + 1",
        "\\set tx :client_id * 10000000000 + :k + :base",
        read,
        "\\gset r_",
        call + ";",
    ]
    return "\n".join(lines) + "\n"


def pg_rate(
    url: str, devices: int, merchant: int, partner: str, seconds: int, clients: int, say: Callable[[str], Any]
) -> tuple[float, str]:  # float-ok: a rate
    """Pays per second of the pay statements under pgbench, and pgbench's summary line."""
    u = make_url(url)
    script = Path(tempfile.mkdtemp(prefix="tillpay-pgbench-")) / "pay.sql"
    script.write_text(pgbench_script(devices, merchant, partner, clients))
    base = int(time.time()) % 10**6 * 10**4
    cmd = [
        "pgbench",
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-D",
        "k=0",
        "-D",
        f"base={base}",
        "-f",
        str(script),
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        u.database or "postgres",
    ]
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120, check=False)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"pgbench failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
    summary = f"pgbench -M prepared -c {clients} -j 2 -T {seconds}: tps {m.group(1)}"
    if failed and failed.group(1) != "0":
        summary += f", {failed.group(1)} failed"
    say(summary)
    return float(m.group(1)), summary
