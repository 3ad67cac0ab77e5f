"""The pay path's statements on the connection's own driver, inside SQLAlchemy's transaction.

Statements run through ``Driver`` are compiled by SQLAlchemy once per database and executed on the
driver's connection (asyncpg, or the inline sqlite3 connection), which saves SQLAlchemy's per-call
execution work (~0.1 ms a statement, a third of a pay's CPU when measured).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


class Refused(Exception):
    """PostgreSQL: a statement raised one of Tillpay's own SQLSTATEs (class ``TP``, a guard of a
    function such as ``tillpay_pay``); the statement's writes were rolled back with it."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(f"{sqlstate}: {message}")
        self.sqlstate = sqlstate


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
        sync = conn.sync_connection
        if sync is not None and not sync.closed and not sync.invalidated:
            # Checked out and valid: SQLAlchemy hands the pooled connection over without I/O, so the
            # greenlet round of ``get_raw_connection`` (twice a pay) is not needed.
            return cls(conn, sync.connection.driver_connection)
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

    async def pg_commit(self, sql: str, args: list[Any]) -> Any:
        """PostgreSQL: run one statement outside any transaction, so that it commits by itself (one round
        trip: no BEGIN, no COMMIT); its first value. A guard raising a ``TP`` SQLSTATE gives ``Refused``.
        """
        if self.in_transaction:
            raise RuntimeError("a statement that commits by itself is run inside a transaction")
        try:
            return await self.raw.fetchval(sql, *[self._bind(a) for a in args])
        except Exception as e:
            state = getattr(e, "sqlstate", None)
            if isinstance(state, str) and state.startswith("TP"):
                raise Refused(state, str(e)) from e
            raise

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
