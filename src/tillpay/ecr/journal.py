"""The till's own journal: every order, every state it passed through, refunds, receipts and shifts.

A SQLite file that belongs to the ECR (never the gateway's database). An order is written *before* its
pay request leaves, and every state change is committed before the next step, so after a crash or a
power loss the journal names every order whose outcome the till does not know; recovery resolves them
with the gateway before the next sale. ``synchronous=FULL`` because a lost commit here is a lost order.

The journal is used from the UI thread and from worker threads: one connection, one lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

FINAL = frozenset({"paid", "failed", "cancelled"})
#: States an order can be left in by a crash, a dead network or a gateway that never answered cancel.
UNFINISHED = frozenset({"sending", "unknown", "waiting", "cancelling", "unresolved"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS shifts (
    id INTEGER PRIMARY KEY,
    opened_at TEXT NOT NULL,
    closed_at TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    partner_trans_id TEXT NOT NULL UNIQUE,
    shift_id INTEGER NOT NULL REFERENCES shifts(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    state TEXT NOT NULL,
    currency TEXT NOT NULL,
    settle_currency TEXT NOT NULL,
    total INTEGER NOT NULL CHECK (total > 0),
    items TEXT NOT NULL,
    trade_no TEXT,
    buyer_currency TEXT,
    buyer_amount TEXT,
    exchange_rate TEXT,
    buyer_login TEXT,
    paid_at TEXT,
    reason TEXT,
    refunded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_state ON orders(state);
CREATE INDEX IF NOT EXISTS orders_trade_no ON orders(trade_no);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    at TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY,
    refund_id TEXT NOT NULL UNIQUE,
    order_id INTEGER REFERENCES orders(id),
    partner_trans_id TEXT NOT NULL,
    trade_no TEXT,
    shift_id INTEGER NOT NULL REFERENCES shifts(id),
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    items TEXT NOT NULL DEFAULT '[]',
    buyer_amount TEXT,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_ref ON receipts(ref);
"""

#: The journal as ``tillpay reconcile`` reads a merchant's records (docs/settlement.md): every finished
#: order is a PAYMENT (SUCCESS if money moved), a cancel that refunded a paid order adds a REVERSAL, and
#: every finished refund is a REFUND. Amounts are major-unit text in the order's currency.
RECONCILE_VIEW = """
DROP VIEW IF EXISTS tillpay_journal;
CREATE VIEW tillpay_journal AS
WITH money(ccy, digits) AS (VALUES ('JPY', 0), ('KRW', 0), ('VND', 0), ('KWD', 3), ('BHD', 3))
SELECT 'PAYMENT' AS record_type, o.partner_trans_id AS partner_transaction_id, NULL AS partner_refund_id,
       o.trade_no AS transaction_id,
       CASE COALESCE(m.digits, 2) WHEN 0 THEN CAST(o.total AS TEXT)
            WHEN 3 THEN printf('%d.%03d', o.total / 1000, o.total % 1000)
            ELSE printf('%d.%02d', o.total / 100, o.total % 100) END AS amount,
       o.currency AS currency,
       CASE WHEN o.state = 'paid' OR (o.state = 'cancelled' AND o.cancel_action = 'refund')
            THEN 'SUCCESS' ELSE 'FAILED' END AS status,
       o.created_at AS time
FROM orders o LEFT JOIN money m ON m.ccy = o.currency
WHERE o.state IN ('paid', 'failed', 'cancelled')
UNION ALL
SELECT 'REVERSAL', o.partner_trans_id, NULL, o.trade_no,
       CASE COALESCE(m.digits, 2) WHEN 0 THEN CAST(o.total AS TEXT)
            WHEN 3 THEN printf('%d.%03d', o.total / 1000, o.total % 1000)
            ELSE printf('%d.%02d', o.total / 100, o.total % 100) END,
       o.currency, 'SUCCESS', o.updated_at
FROM orders o LEFT JOIN money m ON m.ccy = o.currency
WHERE o.state = 'cancelled' AND o.cancel_action = 'refund'
UNION ALL
SELECT 'REFUND', r.partner_trans_id, r.refund_id, r.trade_no,
       CASE COALESCE(m.digits, 2) WHEN 0 THEN CAST(r.amount AS TEXT)
            WHEN 3 THEN printf('%d.%03d', r.amount / 1000, r.amount % 1000)
            ELSE printf('%d.%02d', r.amount / 100, r.amount % 100) END,
       r.currency, CASE WHEN r.state = 'done' THEN 'SUCCESS' ELSE 'FAILED' END, r.created_at
FROM refunds r LEFT JOIN money m ON m.ccy = r.currency
WHERE r.state IN ('done', 'failed');
"""


@dataclass(frozen=True)
class Line:
    """One basket line as sold: code, name, unit price (minor units) and quantity."""

    code: str
    name: str
    price: int
    qty: int

    @property
    def amount(self) -> int:
        """Unit price times quantity."""
        return self.price * self.qty


@dataclass(frozen=True)
class Order:
    """A row of ``orders``."""

    id: int
    partner_trans_id: str
    shift_id: int
    created_at: datetime
    updated_at: datetime
    state: str
    currency: str
    settle_currency: str
    total: int
    items: list[Line]
    trade_no: str | None
    buyer_currency: str | None
    buyer_amount: str | None
    exchange_rate: str | None
    buyer_login: str | None
    paid_at: str | None
    reason: str | None
    refunded: int
    #: What the gateway's cancel did: ``close`` (was unpaid), ``refund`` (was paid), ``none``.
    cancel_action: str | None = None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Order:
        """Decode a row."""
        d = dict(r)
        d["items"] = [Line(**x) for x in json.loads(d["items"])]
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        d["updated_at"] = datetime.fromisoformat(d["updated_at"])
        return cls(**d)


@dataclass(frozen=True)
class Refund:
    """A row of ``refunds``."""

    id: int
    refund_id: str
    order_id: int | None
    partner_trans_id: str
    trade_no: str | None
    shift_id: int
    created_at: datetime
    state: str
    amount: int
    currency: str
    items: list[Line]
    buyer_amount: str | None
    reason: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> Refund:
        """Decode a row."""
        d = dict(r)
        d["items"] = [Line(**x) for x in json.loads(d["items"])]
        d["created_at"] = datetime.fromisoformat(d["created_at"])
        return cls(**d)


@dataclass(frozen=True)
class Shift:
    """A row of ``shifts``."""

    id: int
    opened_at: datetime
    closed_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


def _lines(items: list[Line]) -> str:
    return json.dumps([{"code": i.code, "name": i.name, "price": i.price, "qty": i.qty} for i in items])


class Journal:
    """The journal file; every method is one short transaction."""

    def __init__(self, path: Path, clock: Any = _now) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # executescript commits on its own, so it runs outside an explicit transaction.
        with self._lock:
            self._db.executescript(SCHEMA)
            columns = {r["name"] for r in self._db.execute("PRAGMA table_info(orders)")}
            if "cancel_action" not in columns:  # journals written before the column existed
                self._db.execute("ALTER TABLE orders ADD COLUMN cancel_action TEXT")
            self._db.executescript(RECONCILE_VIEW)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _now(self) -> str:
        now: datetime = self._clock()
        return now.isoformat()

    # ------------------------------------------------------------------------------------- shifts

    def current_shift(self) -> Shift:
        """The open shift, opening one if none is open."""
        with self._tx() as db:
            r = db.execute("SELECT * FROM shifts WHERE closed_at IS NULL ORDER BY id DESC LIMIT 1").fetchone()
            if r is None:
                cur = db.execute("INSERT INTO shifts (opened_at) VALUES (?)", (self._now(),))
                r = db.execute("SELECT * FROM shifts WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _shift(r)

    def close_shift(self) -> tuple[Shift, Shift]:
        """Close the open shift and open the next; returns (closed, new)."""
        old = self.current_shift()
        with self._tx() as db:
            now = self._now()
            db.execute("UPDATE shifts SET closed_at = ? WHERE id = ?", (now, old.id))
            cur = db.execute("INSERT INTO shifts (opened_at) VALUES (?)", (now,))
            closed = _shift(db.execute("SELECT * FROM shifts WHERE id = ?", (old.id,)).fetchone())
            new = _shift(db.execute("SELECT * FROM shifts WHERE id = ?", (cur.lastrowid,)).fetchone())
        return closed, new

    def shift(self, shift_id: int) -> Shift | None:
        """One shift by id."""
        with self._lock:
            r = self._db.execute("SELECT * FROM shifts WHERE id = ?", (shift_id,)).fetchone()
        return _shift(r) if r else None

    # ------------------------------------------------------------------------------------- orders

    def new_order(self, terminal_id: str, items: list[Line], currency: str, settle_currency: str) -> Order:
        """Write an order in state ``sending`` before its pay request leaves (write-ahead)."""
        if not items:
            raise ValueError("an order needs at least one item")
        total = sum(i.amount for i in items)
        shift = self.current_shift()
        with self._tx() as db:
            now = self._clock()
            # The id is unique per merchant: terminal, UTC time and the journal's own sequence number.
            seq = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM orders").fetchone()[0]
            ptid = f"{terminal_id}-{now:%Y%m%d%H%M%S}-{seq:06d}"
            cur = db.execute(
                "INSERT INTO orders (partner_trans_id, shift_id, created_at, updated_at, state, currency,"
                " settle_currency, total, items) VALUES (?, ?, ?, ?, 'sending', ?, ?, ?, ?)",
                (
                    ptid,
                    shift.id,
                    now.isoformat(),
                    now.isoformat(),
                    currency,
                    settle_currency,
                    total,
                    _lines(items),
                ),
            )
            db.execute(
                "INSERT INTO events (order_id, at, state) VALUES (?, ?, 'sending')",
                (cur.lastrowid, now.isoformat()),
            )
        order = self.order(ptid)
        assert order is not None
        return order

    def set_state(self, partner_trans_id: str, state: str, detail: str | None = None, **values: Any) -> Order:
        """Record a state (and what the gateway told) and its event, in one transaction."""
        allowed = {
            "trade_no",
            "buyer_currency",
            "buyer_amount",
            "exchange_rate",
            "buyer_login",
            "paid_at",
            "reason",
            "refunded",
            "cancel_action",
        }
        if set(values) - allowed:
            raise ValueError(f"unknown order fields {set(values) - allowed}")
        values = {k: v for k, v in values.items() if v is not None}
        with self._tx() as db:
            r = db.execute(
                "SELECT id, state FROM orders WHERE partner_trans_id = ?", (partner_trans_id,)
            ).fetchone()
            if r is None:
                raise KeyError(partner_trans_id)
            now = self._now()
            sets = ", ".join(f"{k} = ?" for k in values)
            db.execute(
                f"UPDATE orders SET state = ?, updated_at = ?{', ' + sets if sets else ''} WHERE id = ?",  # noqa: S608 - column names come from the allow-list above
                (state, now, *values.values(), r["id"]),
            )
            if state != r["state"]:
                db.execute(
                    "INSERT INTO events (order_id, at, state, detail) VALUES (?, ?, ?, ?)",
                    (r["id"], now, state, detail),
                )
            elif detail:  # more about the same state: kept with the event that entered it
                db.execute(
                    "UPDATE events SET detail = ? WHERE id = (SELECT MAX(id) FROM events WHERE order_id = ?)",
                    (detail, r["id"]),
                )
        order = self.order(partner_trans_id)
        assert order is not None
        return order

    def order(self, partner_trans_id: str) -> Order | None:
        """One order by the merchant transaction id."""
        with self._lock:
            r = self._db.execute(
                "SELECT * FROM orders WHERE partner_trans_id = ?", (partner_trans_id,)
            ).fetchone()
        return Order.from_row(r) if r else None

    def order_by_trade_no(self, trade_no: str) -> Order | None:
        """One order by the gateway's transaction id."""
        with self._lock:
            r = self._db.execute("SELECT * FROM orders WHERE trade_no = ?", (trade_no,)).fetchone()
        return Order.from_row(r) if r else None

    def unfinished(self) -> list[Order]:
        """Orders whose outcome the till does not know yet, oldest first."""
        marks = ",".join("?" * len(UNFINISHED))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM orders WHERE state IN ({marks}) ORDER BY id",  # noqa: S608 - placeholders only
                tuple(UNFINISHED),
            ).fetchall()
        return [Order.from_row(r) for r in rows]

    def orders(self, *, shift_id: int | None = None, day: date | None = None) -> list[Order]:
        """Orders of a shift, or of a local calendar day, oldest first."""
        with self._lock:
            if shift_id is not None:
                rows = self._db.execute(
                    "SELECT * FROM orders WHERE shift_id = ? ORDER BY id", (shift_id,)
                ).fetchall()
            else:
                rows = self._db.execute("SELECT * FROM orders ORDER BY id").fetchall()
        out = [Order.from_row(r) for r in rows]
        if day is not None:
            out = [o for o in out if o.created_at.astimezone().date() == day]
        return out

    def events(self, partner_trans_id: str) -> list[str]:
        """The states one order went through, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT e.state FROM events e JOIN orders o ON o.id = e.order_id"
                " WHERE o.partner_trans_id = ? ORDER BY e.id",
                (partner_trans_id,),
            ).fetchall()
        return [r[0] for r in rows]

    # ------------------------------------------------------------------------------------ refunds

    def new_refund(
        self,
        terminal_id: str,
        order: Order | None,
        partner_trans_id: str,
        trade_no: str | None,
        amount: int,
        currency: str,
        items: list[Line],
        reason: str | None,
    ) -> Refund:
        """Write a refund in state ``pending`` before it is sent; its id is reused for every retry."""
        shift = self.current_shift()
        with self._tx() as db:
            now = self._clock()
            seq = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM refunds").fetchone()[0]
            rid = f"R{terminal_id}-{now:%Y%m%d%H%M%S}-{seq:06d}"
            db.execute(
                "INSERT INTO refunds (refund_id, order_id, partner_trans_id, trade_no, shift_id, created_at, state,"
                " amount, currency, items, reason) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (
                    rid,
                    order.id if order else None,
                    partner_trans_id,
                    trade_no,
                    shift.id,
                    now.isoformat(),
                    amount,
                    currency,
                    _lines(items),
                    reason,
                ),
            )
        r = self.refund(rid)
        assert r is not None
        return r

    def set_refund_state(
        self, refund_id: str, state: str, buyer_amount: str | None = None, reason: str | None = None
    ) -> Refund:
        """Record a refund's outcome; a successful one adds to its order's refunded total."""
        with self._tx() as db:
            r = db.execute("SELECT * FROM refunds WHERE refund_id = ?", (refund_id,)).fetchone()
            if r is None:
                raise KeyError(refund_id)
            db.execute(
                "UPDATE refunds SET state = ?, buyer_amount = COALESCE(?, buyer_amount),"
                " reason = COALESCE(?, reason) WHERE id = ?",
                (state, buyer_amount, reason, r["id"]),
            )
            if state == "done" and r["state"] != "done" and r["order_id"] is not None:
                db.execute(
                    "UPDATE orders SET refunded = refunded + ? WHERE id = ?", (r["amount"], r["order_id"])
                )
        out = self.refund(refund_id)
        assert out is not None
        return out

    def refund(self, refund_id: str) -> Refund | None:
        """One refund by its id."""
        with self._lock:
            r = self._db.execute("SELECT * FROM refunds WHERE refund_id = ?", (refund_id,)).fetchone()
        return Refund.from_row(r) if r else None

    def refunds(
        self, *, shift_id: int | None = None, day: date | None = None, state: str | None = None
    ) -> list[Refund]:
        """Refunds of a shift or a local day (or all), optionally in one state."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM refunds ORDER BY id").fetchall()
        out = [Refund.from_row(r) for r in rows]
        if shift_id is not None:
            out = [r for r in out if r.shift_id == shift_id]
        if day is not None:
            out = [r for r in out if r.created_at.astimezone().date() == day]
        if state is not None:
            out = [r for r in out if r.state == state]
        return out

    def refunds_of(self, partner_trans_id: str) -> list[Refund]:
        """Every refund of one order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM refunds WHERE partner_trans_id = ? ORDER BY id", (partner_trans_id,)
            ).fetchall()
        return [Refund.from_row(r) for r in rows]

    # ----------------------------------------------------------------------------------- receipts

    def add_receipt(self, kind: str, ref: str, data: dict[str, Any]) -> int:
        """Keep a printed receipt's content so it can be reprinted exactly."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO receipts (kind, ref, created_at, data) VALUES (?, ?, ?, ?)",
                (kind, ref, self._now(), json.dumps(data, ensure_ascii=False)),
            )
        return int(cur.lastrowid or 0)

    def receipts(self, ref: str | None = None) -> list[tuple[int, str, str, dict[str, Any]]]:
        """Stored receipts (id, kind, ref, data), newest first; ``ref`` matches an order, refund or
        gateway transaction id."""
        with self._lock:
            if ref is None:
                rows = self._db.execute("SELECT * FROM receipts ORDER BY id DESC").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM receipts WHERE ref = ? OR json_extract(data, '$.trade_no') = ?"
                    " ORDER BY id DESC",
                    (ref, ref),
                ).fetchall()
        return [(r["id"], r["kind"], r["ref"], json.loads(r["data"])) for r in rows]


def _shift(r: sqlite3.Row) -> Shift:
    return Shift(
        r["id"],
        datetime.fromisoformat(r["opened_at"]),
        datetime.fromisoformat(r["closed_at"]) if r["closed_at"] else None,
    )
