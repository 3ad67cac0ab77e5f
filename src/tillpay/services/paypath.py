"""The statements of the pay hot path, built once and executed with parameters.

Building a SQLAlchemy statement per call (``select(...).where(...)``) cost more CPU than running it: the
coercions and the cache key of each new statement object. These are built at import; SQLAlchemy keeps
their compiled form and cache key, and the database driver its prepared statement.

They also fold what a pay reads into few round trips, without changing what it reads:

- ``READ``: before the write transaction, in one statement: an existing payment under the merchant's id,
  the wrong-code count for the (merchant, device) pair, whether the store or terminal is disabled, the
  terminal's latest wrong code, what is registered about the pay's secondary merchant and store, the device and its wallet, the scheme's, merchant's and customer's risk
  rules, and the FX margin between the price and the wallet currency.
- ``LOCK``: the wallet row, locked, with the three rule layers (on PostgreSQL, ``LOCK_AND_USE_CODE`` also
  records the code's single use in the same statement). The customer's totals (``TOTALS``) are a
  separate statement on purpose: on PostgreSQL a statement's snapshot is taken before it waits for the
  lock, so totals read in the locking statement could miss a payment committed while it waited.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Insert,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table

from tillpay.services.secmerchants import registered_columns
from tillpay.services.stores import disabled_clause
from tillpay.store import tables as t

_dev, _usr, _pay, _bad, _rs, _fxm = (
    t.devices,
    t.wallet_users,
    t.payments,
    t.bad_codes,
    t.risk_settings,
    t.fx_margins,
)


def _layer(scope: str, subject: ColumnElement[Any] | str) -> Any:
    return select(_rs.c.config).where(_rs.c.scope == scope, _rs.c.subject == subject).scalar_subquery()


def _layers(login: ColumnElement[Any]) -> list[Any]:
    return [
        _layer("scheme", "").label("scheme_rules"),
        _layer("merchant", bindparam("partner_id")).label("merchant_rules"),
        _layer("user", login).label("user_rules"),
    ]


_margin = (
    select(_fxm.c.bps)
    .where(
        or_(
            and_(_fxm.c.base == bindparam("price_currency"), _fxm.c.quote == _usr.c.currency),
            and_(_fxm.c.base == _usr.c.currency, _fxm.c.quote == bindparam("price_currency")),
        ),
        _fxm.c.effective_at <= bindparam("now"),
    )
    .order_by(_fxm.c.effective_at.desc(), _fxm.c.id.desc())
    .limit(1)
    .scalar_subquery()
)

READ: Select[Any] = (
    select(
        select(_pay.c.id)
        .where(_pay.c.merchant_id == bindparam("merchant_id"), _pay.c.partner_trans_id == bindparam("ptid"))
        .scalar_subquery()
        .label("existing"),
        select(func.count())
        .select_from(_bad)
        .where(
            _bad.c.device_no == bindparam("device_no"),
            _bad.c.merchant_id == bindparam("merchant_id"),
            _bad.c.created_at > bindparam("since"),
        )
        .scalar_subquery()
        .label("bad_pair"),
        *_layers(_usr.c.login_id),
        _margin.label("margin_bps"),
        disabled_clause(bindparam("merchant_id"), bindparam("store_id"), bindparam("terminal_id")).label(
            "disabled"
        ),
        select(func.max(_bad.c.created_at))
        .where(_bad.c.merchant_id == bindparam("merchant_id"), _bad.c.terminal_id == bindparam("terminal_id"))
        .scalar_subquery()
        .label("terminal_bad_at"),
        *registered_columns(),
        _dev.c.id.label("device_id"),
        _dev.c.user_id,
        _dev.c.secret,
        _dev.c.status.label("device_status"),
        _dev.c.created_at.label("device_created_at"),
        _usr.c.currency,
        _usr.c.login_id,
    )
    .select_from(_dev.join(_usr, _usr.c.id == _dev.c.user_id))
    .where(_dev.c.device_no == bindparam("device_no"))
)

LOCK: Select[Any] = (
    select(_usr.c.balance, _usr.c.status, _usr.c.currency, _usr.c.login_id, *_layers(_usr.c.login_id))
    .where(_usr.c.id == bindparam("user_id"))
    .with_for_update()
)

_counted = or_(_pay.c.paid_at.is_not(None), _pay.c.status == "WAIT_BUYER_PAY")
_amount = _pay.c.wallet_amount
TOTALS: Select[Any] = select(
    func.coalesce(func.sum(_amount).filter(and_(_pay.c.created_at >= bindparam("day"), _counted)), 0),
    func.coalesce(func.sum(_amount).filter(and_(_pay.c.created_at >= bindparam("month"), _counted)), 0),
    func.count().filter(_pay.c.created_at >= bindparam("velocity_since")),
).where(
    _pay.c.user_id == bindparam("user_id"),
    _pay.c.created_at >= bindparam("lower"),
    _pay.c.kind != "tombstone",
)

ENTRY = t.journal_entries.insert().returning(t.journal_entries.c.id)
POSTINGS = t.postings.insert()
#: The wallet side of a posting; the guard makes an overdraft impossible whatever the caller checked.
WALLET_DELTA = (
    update(_usr)
    .where(
        _usr.c.id == bindparam("wallet_id"),
        _usr.c.currency == bindparam("wallet_currency"),
        _usr.c.balance + bindparam("delta") >= 0,
    )
    .values(balance=_usr.c.balance + bindparam("delta"))
)
RISK_DECISION = t.risk_decisions.insert()
#: Takes back a code's single use, in the pay's transaction, when only the balance refused the payment.
CODE_RELEASE = delete(t.code_uses).where(
    t.code_uses.c.device_id == bindparam("device_id"),
    t.code_uses.c.step == bindparam("step"),
    t.code_uses.c.slot == bindparam("slot"),
)


def _ignoring(table: Table, *conflict: str) -> dict[str, Insert]:
    return {
        "postgresql": postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict)),
        "sqlite": sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict)),
    }


_CODE_USE = _ignoring(t.code_uses, "device_id", "step", "slot")
_PAYMENT = {
    name: stmt.returning(t.payments.c.id)
    for name, stmt in _ignoring(t.payments, "merchant_id", "partner_trans_id").items()
}


_used = (
    postgresql.insert(t.code_uses)
    .values(
        device_id=bindparam("device_id", type_=Integer),
        step=bindparam("step", type_=BigInteger),
        slot=bindparam("slot", type_=Integer),
        created_at=bindparam("created_at", type_=t.UTCDateTime),
    )
    .on_conflict_do_nothing(index_elements=["device_id", "step", "slot"])
    .returning(t.code_uses.c.id)
    .cte("used")
)
#: PostgreSQL: the code's single use and the locked wallet row in one round trip. ``used`` is 0 when the
#: code was taken (by another payment, or by this request arriving twice): the caller rolls back.
LOCK_AND_USE_CODE: Select[Any] = (
    select(select(func.count()).select_from(_used).scalar_subquery().label("used"), *LOCK.selected_columns)
    .where(_usr.c.id == bindparam("user_id"))
    .with_for_update(of=_usr)
)


def pg_writes(pay_keys: tuple[str, ...], ledger: bool, *, release: bool = False) -> str:
    """PostgreSQL: a pay's writes after its risk decision in one statement (one round trip instead of
    five): the payment (``ON CONFLICT DO NOTHING``), its risk decision and, with ``ledger``, the journal
    entry, its postings and the wallet's new balance, each a data-modifying CTE fed by the payment's
    ``RETURNING id``. No row back means the transaction id was taken; ``wallet_rows`` 0 means the
    overdraft guard refused (the caller raises, which rolls everything back). With ``release`` (a
    payment declined for its balance; never with ``ledger``) the code's single use, recorded by
    ``LOCK_AND_USE_CODE``, is deleted again (``CODE_RELEASE``).

    Parameters, in order: the payment's ``pay_keys``; the decision's verdict, rule, code, fired, inputs,
    config and time; with ``ledger``, the postings' accounts, currencies and amounts (arrays), the
    wallet id, its currency and the wallet delta; with ``release``, the code's device id, step and slot.
    """
    if ledger and release:
        raise ValueError("a paid payment spends its code")
    key = (pay_keys, ledger, release)
    hit = _PG_WRITES.get(key)
    if hit is not None:
        return hit
    # Only names of the payments table's columns go into the text; every value is a parameter.
    unknown = set(pay_keys) - set(_pay.c.keys())
    if unknown:
        raise ValueError(f"not columns of payments: {sorted(unknown)}")
    n = len(pay_keys)
    d = n + 1  # the decision's first parameter
    sql = (
        f"WITH pay AS (INSERT INTO payments ({', '.join(pay_keys)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, n + 1))}) "
        "ON CONFLICT (merchant_id, partner_trans_id) DO NOTHING RETURNING id), "
        "rd AS (INSERT INTO risk_decisions (payment_id, verdict, rule, code, fired, inputs, config, "
        f"created_at) SELECT id, ${d}::text, ${d + 1}::text, ${d + 2}::text, ${d + 3}::text, "
        f"${d + 4}::text, ${d + 5}::text, ${d + 6}::timestamp FROM pay)"
    )
    if ledger:
        g = d + 7  # the ledger's first parameter
        sql += (
            ", je AS (INSERT INTO journal_entries (kind, ref, payment_id, created_at) "
            f"SELECT 'payment', 'payment:' || id, id, ${d + 6}::timestamp FROM pay RETURNING id), "
            "po AS (INSERT INTO postings (entry_id, account, currency, amount) "
            "SELECT je.id, x.account, x.currency, x.amount FROM je, "
            f"unnest(${g}::text[], ${g + 1}::text[], ${g + 2}::bigint[]) AS x(account, currency, amount)), "
            f"wd AS (UPDATE wallet_users SET balance = balance + ${g + 5}::bigint "
            f"WHERE id = ${g + 3}::int AND currency = ${g + 4}::text AND balance + ${g + 5}::bigint >= 0 "
            "AND EXISTS (SELECT 1 FROM pay) RETURNING id) "
            "SELECT pay.id, (SELECT count(*) FROM wd) AS wallet_rows FROM pay"
        )
    elif release:
        r = d + 7  # the code's first parameter
        sql += (
            ", rc AS (DELETE FROM code_uses "
            f"WHERE device_id = ${r}::int AND step = ${r + 1}::bigint AND slot = ${r + 2}::int) "
            "SELECT pay.id, 1 AS wallet_rows FROM pay"
        )
    else:
        sql += " SELECT pay.id, 1 AS wallet_rows FROM pay"
    _PG_WRITES[key] = sql
    return sql


_PG_WRITES: dict[tuple[tuple[str, ...], bool, bool], str] = {}


def payment_insert(conn: AsyncConnection) -> Insert:
    """``INSERT INTO payments ... ON CONFLICT DO NOTHING RETURNING id`` for the connection's database."""
    return _PAYMENT[conn.dialect.name]


# ------------------------------------------------------------------------------- on the driver itself

#: Statements run through ``Driver``: compiled by SQLAlchemy once per database, executed on the
#: driver's connection (asyncpg, or the inline sqlite3 connection), which saves SQLAlchemy's per-call
#: execution work (~0.1 ms a statement, a third of a pay's CPU when measured).
CODE_USE_RETURNING = {name: stmt.returning(t.code_uses.c.id) for name, stmt in _CODE_USE.items()}
WALLET_DELTA_RETURNING = WALLET_DELTA.returning(_usr.c.id)


class Driver:
    """The pay path's statements on the connection's own driver, inside SQLAlchemy's transaction.

    Only used where SQLAlchemy already began the transaction on the driver (``usable``); the caller
    falls back to ``conn.execute`` otherwise. Times go in as naive UTC (as ``UTCDateTime`` stores them)
    and come back through :func:`utc`.
    """

    def __init__(self, conn: AsyncConnection, raw: Any) -> None:
        self.dialect = conn.dialect
        self.sqlite = conn.dialect.name == "sqlite"
        self.raw = raw

    @classmethod
    async def of(cls, conn: AsyncConnection) -> Driver:
        """The driver under ``conn``."""
        proxied = await conn.get_raw_connection()
        return cls(conn, proxied.driver_connection)

    @property
    def in_transaction(self) -> bool:
        """Whether the driver connection is inside a transaction (so writes are part of it)."""
        if self.sqlite:
            return bool(self.raw.in_transaction)
        return bool(self.raw.is_in_transaction())

    def _args(self, stmt: Any, keys: tuple[str, ...], params: dict[str, Any]) -> tuple[str, list[Any]]:
        key = (id(stmt), keys, self.dialect.name)
        hit = _COMPILED.get(key)
        if hit is None:
            c = stmt.compile(dialect=self.dialect, column_keys=list(keys) or None)
            # Literals in the statement ('scheme', LIMIT 1, ...) are binds with their value set.
            consts = {name: b.effective_value for name, b in c.binds.items() if not b.required}
            hit = _COMPILED[key] = (str(c), list(c.positiontup or []), consts)
        sql, names, consts = hit
        bind = self._bind
        return sql, [bind(params[n]) if n in params else consts[n] for n in names]

    def _bind(self, v: Any) -> Any:
        if isinstance(v, datetime):
            v = v.astimezone(UTC).replace(tzinfo=None)
            if self.sqlite:
                # As SQLAlchemy's SQLite DATETIME stores it: always six fraction digits.
                return v.isoformat(" ", "microseconds")
        return v

    async def rows(self, stmt: Any, params: dict[str, Any], keys: tuple[str, ...] = ()) -> list[Any]:
        """Run one statement; its rows (indexable by column name)."""
        sql, args = self._args(stmt, keys, params)
        if self.sqlite:
            cur = self.raw._conn.cursor()
            cur.row_factory = sqlite3.Row
            try:
                return list(cur.execute(sql, args).fetchall())
            finally:
                cur.close()
        return list(await self.raw.fetch(sql, *args))

    async def pg_rows(self, sql: str, args: list[Any]) -> list[Any]:
        """PostgreSQL: run hand-written SQL with positional parameters (times as everywhere here)."""
        return list(await self.raw.fetch(sql, *[self._bind(a) for a in args]))

    async def many(self, stmt: Any, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
        """Run one statement for each parameter set (no rows back)."""
        sql, _ = self._args(stmt, keys, rows[0])
        batches = [self._args(stmt, keys, r)[1] for r in rows]
        if self.sqlite:
            self.raw._conn.executemany(sql, batches)
        else:
            await self.raw.executemany(sql, batches)


_COMPILED: dict[tuple[int, tuple[str, ...], str], tuple[str, list[str], dict[str, Any]]] = {}


def utc(v: Any) -> datetime:
    """A time read through ``Driver``: SQLite gives text, PostgreSQL a naive datetime; both are UTC."""
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    assert isinstance(v, datetime)
    return v.replace(tzinfo=UTC)
