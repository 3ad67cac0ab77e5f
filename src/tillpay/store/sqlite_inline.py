"""A SQLite connection for SQLAlchemy's aiosqlite dialect that runs statements on the event loop's thread.

aiosqlite hands every call (cursor, execute, fetch, close) to a thread of its own and back: about four
thread switches per statement, ~80 per pay. On a busy 2-core machine each switch waits for a CPU and the
GIL, and a pay took ~10 ms of which the SQL itself was a few hundred microseconds. SQLite statements run in
microseconds, so this connection runs them inline and leaves the thread only where SQLite can wait:

- ``COMMIT`` of a transaction that wrote something: ``synchronous=FULL`` fsyncs the WAL (~0.5 ms here),
  during which the loop keeps serving other requests. A request cancelled meanwhile (a browser that
  dropped its event stream, a deadline) waits for that thread before the cancellation goes on: SQLAlchemy
  rolls back or closes a cancelled request's connection, and the sqlite3 module crashes the process if
  that happens while another thread is still committing on it.
- ``BEGIN IMMEDIATE`` when another process holds the write lock (another server process, a worker, the
  CLI): SQLite's own busy handler is off (``busy_timeout`` 0) and the loop tries again after pauses that
  follow SQLite's (1 ms growing to 100 ms), for up to ``BUSY_TIMEOUT_MS``. No thread is involved, so a
  request cancelled while it waits leaves the connection as it was.

- Tillpay's own connections to one file (the server processes of ``serve --workers N``, the worker, the
  CLI) take turns at writing through an advisory lock (``flock``) on a file beside the database,
  ``<database>-tillpay-lock`` (``WriterTurn``). A connection waiting for its turn is woken by the kernel
  the moment the holder lets go, in a thread that touches only that lock file, never the sqlite3
  connection. With SQLite's pauses alone, a process waiting for another's lock found it free only if it
  happened to try in a gap between two of the other's transactions: with two server processes one of
  them mostly slept, half the machine was idle and p99 was ~220 ms (docs/benchmark.md). The turn is only
  an order among Tillpay's connections: each writer still takes SQLite's own lock with ``BEGIN
  IMMEDIATE`` afterwards (which other programs honour), so a fault in the turn could cost time but never
  let two writers in at once.

Everything else keeps aiosqlite's contract (the methods SQLAlchemy's adapter awaits), so the dialect, the
pool of one connection and the ``BEGIN IMMEDIATE`` listener in ``engine.py`` are unchanged. A long query
(a report over millions of rows) would hold the loop while it runs; the server's requests are short ones.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

#: How long ``BEGIN IMMEDIATE`` waits for another process's write lock, in milliseconds.
BUSY_TIMEOUT_MS = 30_000
#: The pauses between its tries, in milliseconds (those of SQLite's own busy handler); the last repeats.
BUSY_PAUSES_MS = (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100)

T = TypeVar("T")

#: What the file beside a database that Tillpay's writers take turns through is called after it.
TURN_SUFFIX = "-tillpay-lock"


async def _in_thread_to_the_end(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread; if the caller is cancelled meanwhile, the cancellation goes on only once the
    thread is done with the connection (the loop waits for it: one fsync at most)."""
    finished = threading.Event()

    def run() -> T:
        try:
            return fn()
        finally:
            finished.set()

    # Handed to the executor now, not in a task that would start on the loop's next round.
    future = asyncio.get_running_loop().run_in_executor(None, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        finished.wait()
        # Its outcome is the caller's no longer (the transaction may have committed: as for a client
        # that went away after sending); take it so that asyncio does not report it as unretrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        raise


#: What a connection's turn thread is asked for: the lock, handed to this future on this loop.
_TurnRequest = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class WriterTurn:
    """Tillpay's writers to one database file take turns through an exclusive ``flock`` on a file beside
    it, held from ``BEGIN IMMEDIATE`` to the transaction's end (see the module's docstring).

    A wait that is not answered at once goes to this connection's own thread (a daemon, made at the
    first such wait), which blocks in ``flock`` and hands the turn to the loop. A wait that gives up
    (cancelled, or past the busy timeout) leaves the thread waiting: when the turn comes, it is let go at
    once unless this connection waits for it again by then. A daemon thread never holds up the process's
    exit, and the file descriptor stays open while the thread may still use it, so that its number
    cannot be reused for another file meanwhile. Only the event loop's thread changes ``held``, and the
    thread of a COMMIT (which gives the turn back) while the loop waits for it.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closing = False
        self._wanted = False
        self._waiter: asyncio.Future[None] | None = None
        self._requests: queue.SimpleQueue[_TurnRequest | None] | None = None
        #: Whether this connection has its turn (from its ``BEGIN IMMEDIATE`` to its commit or rollback).
        self.held = False

    @classmethod
    def beside(cls, path: str) -> WriterTurn | None:
        """The turn of the database at ``path``; None where the file beside it cannot be opened (then
        SQLite's own lock and its pauses alone order the writers, as for any other program).

        The file is made with the database's own permissions (as SQLite makes its ``-wal`` and ``-shm``
        files), so that nobody who cannot open the database can hold the writers' turn."""
        try:
            mode = os.stat(path).st_mode & 0o666
        except OSError:
            mode = 0o600
        try:
            fd = os.open(path + TURN_SUFFIX, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        except OSError:
            return None
        return cls(fd)

    async def take(self, deadline: float) -> bool:  # float-ok: time.monotonic()
        """Wait until ``deadline`` (``time.monotonic()``) at most for this connection's turn; whether it
        came."""
        if self.held:
            return True
        if self._closing:
            return False
        if self._waiter is None:
            # Not while the thread still waits for an earlier, given-up wait: both would hold the one
            # lock of this file descriptor, and the thread's arrival would let it go.
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            except OSError:
                return False
            else:
                self.held = True
                return True
            self._waiter = self._wait_in_thread()
        self._wanted = True
        try:
            await asyncio.wait_for(asyncio.shield(self._waiter), max(deadline - time.monotonic(), 0.0))
        except (TimeoutError, OSError):
            pass
        except BaseException:
            self.give()  # cancelled just as the turn came: it goes to the next writer
            raise
        finally:
            self._wanted = False
        return self.held

    def _wait_in_thread(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        waiter.add_done_callback(self._arrived)  # runs before the ``await`` in ``take`` resumes
        if self._requests is None:
            self._requests = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(self._requests,), name="tillpay-writer-turn", daemon=True
            ).start()
        self._requests.put((loop, waiter))
        return waiter

    def _serve(self, requests: queue.SimpleQueue[_TurnRequest | None]) -> None:
        """The thread: take the lock for each waiter and hand it to the waiter's loop."""
        while (request := requests.get()) is not None:
            loop, waiter = request
            error: OSError | None = None
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as e:
                error = e
            if self._closing:
                fcntl.flock(self._fd, fcntl.LOCK_UN)  # the connection is gone: nobody takes it
                continue
            try:
                loop.call_soon_threadsafe(self._hand_over, waiter, error)
            except RuntimeError:  # the loop is closed
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _hand_over(self, waiter: asyncio.Future[None], error: OSError | None) -> None:
        if waiter.done():  # not expected (a waiter is only awaited through a shield): let the turn go
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        elif error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)

    def _arrived(self, waiter: asyncio.Future[None]) -> None:
        self._waiter = None
        if not waiter.cancelled() and waiter.exception() is None and self._wanted and not self._closing:
            self.held = True
        else:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # nobody waits for it any more (or it failed)

    def give(self) -> None:
        """Let the next writer have its turn (nothing if this connection does not have it)."""
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Give the turn back and close the file, unless the thread may still use it (then the file
        stays open until the process ends; the thread lets the turn go when it comes)."""
        if self._closing:
            return
        self.give()
        self._closing = True
        if self._requests is not None:
            self._requests.put(None)  # the thread ends after the wait it may be in
        if self._waiter is None:
            os.close(self._fd)


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

    def __init__(self, conn: sqlite3.Connection, turn: WriterTurn | None = None) -> None:
        self._connection: sqlite3.Connection | None = conn
        self._tx = _Tx(conn)
        self._changes_at_begin = 0
        self._busy_handler_off = False
        self._turn = turn

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @classmethod
    async def open(cls, path: str) -> InlineConnection:
        """Open ``path`` (sqlite3 in autocommit mode: transactions are begun explicitly)."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        return cls(conn, None if path == ":memory:" else WriterTurn.beside(path))

    async def _begin(self, cursor: sqlite3.Cursor, sql: str) -> None:
        conn = self._conn
        if not self._busy_handler_off:
            conn.execute("PRAGMA busy_timeout=0")
            self._busy_handler_off = True
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        turn = self._turn if sql.startswith(("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")) else None
        if turn is not None:
            # Tillpay's other writers first (woken when the holder lets go), then SQLite's own lock,
            # which any other program on the file may hold: if the turn did not come in time, the
            # pauses below give up at the same deadline.
            await turn.take(deadline)
        tries = 0
        try:
            while True:
                try:
                    cursor.execute(sql)
                    break
                except sqlite3.OperationalError as e:
                    if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() >= deadline:
                        raise
                pause = BUSY_PAUSES_MS[min(tries, len(BUSY_PAUSES_MS) - 1)] / 1000
                tries += 1
                await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        except BaseException:
            if turn is not None:
                turn.give()
            raise
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
        try:
            if conn.in_transaction and conn.total_changes != self._changes_at_begin:
                # A write: the fsync of synchronous=FULL happens off the loop, and the thread lets the
                # turn go as soon as the COMMIT is over, not when this loop next comes round to it.
                turn = self._turn

                def commit_and_let_go() -> None:
                    conn.commit()
                    if turn is not None:
                        turn.give()

                await _in_thread_to_the_end(commit_and_let_go)
            else:
                conn.commit()
        finally:
            self._give_turn()

    async def rollback(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._give_turn()

    def _give_turn(self) -> None:
        if self._turn is not None:
            self._turn.give()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate)."""
        try:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        finally:
            if self._turn is not None:
                self._turn.close()
