"""The statements of the pay hot path, built once and executed with parameters.

Building a SQLAlchemy statement per call (``select(...).where(...)``) cost more CPU than running it: the
coercions and the cache key of each new statement object. These are built at import; SQLAlchemy keeps
their compiled form and cache key, and the database driver its prepared statement.

They also fold what a pay reads into few round trips, without changing what it reads:

- ``READ``: before the write transaction, in one statement: an existing payment under the merchant's id,
  the wrong-code count for the (merchant, device) pair, whether the store or terminal is disabled, the
  terminal's latest wrong code, what is registered about the pay's secondary merchant and store, the device and its wallet, the scheme's, merchant's and customer's risk
  rules, and the FX margin between the price and the wallet currency.
- ``PG_READ`` (PostgreSQL): ``READ`` and, in the same snapshot, what the payment's own decision needs:
  the wallet's balance, status and version (its ``xmin``), and the customer's day/month/velocity
  totals. The common pay then decides and writes in one call of ``tillpay_pay`` (``PAY_AT_ONCE``,
  migration 0118), which re-checks all of it with the wallet row locked.
- ``LOCK``: the wallet row, locked, with the three rule layers (on PostgreSQL, ``LOCK_AND_USE_CODE`` also
  records the code's single use in the same statement). The customer's totals (``TOTALS``) are a
  separate statement on purpose: on PostgreSQL a statement's snapshot is taken before it waits for the
  lock, so totals read in the locking statement could miss a payment committed while it waited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Insert,
    Integer,
    Select,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.schema import Table

from tillpay.store import tables as t
from tillpay.store.driver import Driver as Driver
from tillpay.store.driver import utc as utc
from tillpay.store.ledger import ENTRY as ENTRY
from tillpay.store.ledger import POSTINGS as POSTINGS
from tillpay.store.ledger import WALLET_DELTA as WALLET_DELTA
from tillpay.store.ledger import WALLET_DELTA_RETURNING as WALLET_DELTA_RETURNING
from tillpay.store.secmerchants import registered_columns
from tillpay.store.stores import disabled_clause

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
        _usr.c.sandbox,
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


def _layer_velocity(scope: str, subject: ColumnElement[Any] | str) -> Any:
    """A stored layer's ``velocity_minutes`` (NULL: the layer does not set it, or is not stored)."""
    config = (
        select(_rs.c.config)
        .where(_rs.c.scope == scope, _rs.c.subject == subject)
        .correlate_except(_rs)
        .scalar_subquery()
    )
    return cast(cast(config, postgresql.JSONB)["velocity_minutes"].astext, Integer)


#: The velocity window the layers set, later layers first as ``risk.build`` merges them; the caller
#: checks it against the rules it builds and takes the careful path if they differ.
_velocity = select(
    func.coalesce(
        _layer_velocity("user", _usr.c.login_id),
        _layer_velocity("merchant", bindparam("partner_id")),
        _layer_velocity("scheme", ""),
        bindparam("default_velocity_minutes", type_=Integer),
    ).label("minutes")
).lateral("velocity")
#: ``totals_now``: the time the totals' periods end at (the pay's ``now``), apart from the FX margin's.
_velocity_since = bindparam("totals_now", type_=t.UTCDateTime) - func.make_interval(
    0, 0, 0, 0, 0, _velocity.c.minutes
)
_totals = (
    select(
        func.coalesce(
            func.sum(_amount).filter(and_(_pay.c.created_at >= bindparam("day"), _counted)), 0
        ).label("day_total"),
        func.coalesce(
            func.sum(_amount).filter(and_(_pay.c.created_at >= bindparam("month"), _counted)), 0
        ).label("month_total"),
        func.count().filter(_pay.c.created_at >= _velocity_since).label("recent"),
    )
    .where(
        _pay.c.user_id == _usr.c.id,
        _pay.c.created_at >= func.least(bindparam("month"), _velocity_since),
        _pay.c.kind != "tombstone",
    )
    .correlate_except(_pay)
    .lateral("totals")
)

#: PostgreSQL: ``READ`` and the account's facts in the same snapshot (see the module's docstring).
PG_READ: Select[Any] = (
    select(
        *READ.selected_columns,
        _usr.c.balance,
        _usr.c.status.label("wallet_status"),
        literal_column("wallet_users.xmin::text").label("version"),
        _totals.c.day_total,
        _totals.c.month_total,
        _totals.c.recent,
        _velocity.c.minutes.label("velocity_minutes"),
    )
    .select_from(_dev.join(_usr, _usr.c.id == _dev.c.user_id).join(_velocity, true()).join(_totals, true()))
    .where(_dev.c.device_no == bindparam("device_no"))
)

#: PostgreSQL: a decided pay's writes in one call that commits by itself (the function of migration
#: 0118, as migration 0124 defines it: its ledger entry through ``tillpay_post_entry``).
PAY_AT_ONCE = (
    "SELECT tillpay_pay($1::jsonb, $2::text[], $3::int, $4::bigint, $5::int, $6::boolean, $7::int, "
    "$8::text, $9::timestamp, $10::timestamp, $11::timestamp, $12::bigint, $13::bigint, $14::bigint, "
    "$15::text[], $16::text[], $17::bigint[], $18::text[], $19::timestamp, $20::timestamp)"
)
#: The SQLSTATEs ``tillpay_pay`` raises when a guard fails (nothing it wrote remains).
CODE_TAKEN, ID_TAKEN, WALLET_CHANGED = "TP001", "TP002", "TP003"

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


def pg_writes(pay_keys: tuple[str, ...], *, release: bool = False) -> str:
    """PostgreSQL, the careful pay: its writes after its risk decision in one statement: the payment
    (``ON CONFLICT DO NOTHING``) and its risk decision, a data-modifying CTE fed by the payment's
    ``RETURNING id``. No row back means the transaction id was taken. With ``release`` (a payment
    declined for its balance) the code's single use, recorded by ``LOCK_AND_USE_CODE``, is deleted again
    (``CODE_RELEASE``). A paid payment's ledger entry follows through the ledger writer
    (``store.ledger.post_entry``).

    Parameters, in order: the payment's ``pay_keys``; the decision's verdict, rule, code, fired, inputs,
    config and time; with ``release``, the code's device id, step and slot.
    """
    key = (pay_keys, release)
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
    if release:
        r = d + 7  # the code's first parameter
        sql += (
            ", rc AS (DELETE FROM code_uses "
            f"WHERE device_id = ${r}::int AND step = ${r + 1}::bigint AND slot = ${r + 2}::int)"
        )
    sql += " SELECT pay.id FROM pay"
    _PG_WRITES[key] = sql
    return sql


_PG_WRITES: dict[tuple[tuple[str, ...], bool], str] = {}


def payment_insert(conn: AsyncConnection) -> Insert:
    """``INSERT INTO payments ... ON CONFLICT DO NOTHING RETURNING id`` for the connection's database."""
    return _PAYMENT[conn.dialect.name]


# ------------------------------------------------------------------------------- on the driver itself

#: Statements run through ``Driver`` (store/driver.py).
CODE_USE_RETURNING = {name: stmt.returning(t.code_uses.c.id) for name, stmt in _CODE_USE.items()}
