"""A SQLite connection for SQLAlchemy's aiosqlite dialect that runs statements on the event loop's thread.

aiosqlite hands every call (cursor, execute, fetch, close) to a thread of its own and back: about four
thread switches per statement, ~80 per pay. On a busy 2-core machine each switch waits for a CPU and the
GIL, and a pay took ~10 ms of which the SQL itself was a few hundred microseconds. SQLite statements run in
microseconds, so this connection runs them inline and leaves the thread only where SQLite can wait:

- ``COMMIT`` of a transaction that wrote something: ``synchronous=FULL`` fsyncs the WAL (~0.5 ms here),
  during which the loop keeps serving other requests;
- ``BEGIN IMMEDIATE`` when another process holds the write lock (another server process, a worker, the
  CLI): it is first tried without waiting (``busy_timeout`` 0), and only if the database is locked it
  waits in a thread with the usual ``busy_timeout``.

Everything else keeps aiosqlite's contract (the methods SQLAlchemy's adapter awaits), so the dialect, the
pool of one connection and the ``BEGIN IMMEDIATE`` listener in ``engine.py`` are unchanged. A long query
(a report over millions of rows) would hold the loop while it runs; the server's requests are short ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: How long ``BEGIN IMMEDIATE`` waits (in a thread) for another process's write lock, in milliseconds.
BUSY_TIMEOUT_MS = 30_000


class _Tx:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's adapter uses to set isolation_level."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as e:
            future.set_exception(e)


class InlineCursor:
    """A sqlite3 cursor behind aiosqlite's awaitable cursor interface."""

    def __init__(self, owner: InlineConnection) -> None:
        self._owner = owner
        self._cursor = owner._conn.cursor()

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        if sql.startswith("BEGIN"):
            await self._owner._begin(self._cursor, sql)
        else:
            self._cursor.execute(sql, parameters or ())
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """A sqlite3 connection behind the parts of aiosqlite's interface that SQLAlchemy uses."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = conn
        self._tx = _Tx(conn)
        self._changes_at_begin = 0

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @classmethod
    async def open(cls, path: str) -> InlineConnection:
        """Open ``path`` (sqlite3 in autocommit mode: transactions are begun explicitly)."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        return cls(conn)

    async def _begin(self, cursor: sqlite3.Cursor, sql: str) -> None:
        conn = self._conn
        conn.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute(sql)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise

            def wait() -> None:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                try:
                    cursor.execute(sql)
                finally:
                    conn.execute("PRAGMA busy_timeout=0")

            await asyncio.to_thread(wait)
        self._changes_at_begin = conn.total_changes

    # -- what SQLAlchemy's adapter calls

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        cur = self.cursor()
        return await cur.execute(sql, parameters)

    async def commit(self) -> None:
        conn = self._conn
        if conn.in_transaction and conn.total_changes != self._changes_at_begin:
            # A write: the fsync of synchronous=FULL happens off the loop.
            await asyncio.to_thread(conn.commit)
        else:
            conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
