"""The SQLite connection that runs statements on the loop (store/sqlite_inline.py): it waits for another
process's write lock without blocking the loop, commits and rolls back like the driver it replaces, and
leaves its connection alone when the request waiting on it is cancelled. Tillpay's own writers to one
file take turns through a lock on the file beside it (``WriterTurn``), given back however a transaction
ends.

A request is cancelled when its client goes away in the middle of a streamed answer (Starlette cancels
the wallet's event stream) or a deadline runs out. SQLAlchemy then rolls back or closes the connection
on the loop's thread, so nothing may still be using it in another thread by then: Python's sqlite3 module
is not safe against that and can crash the whole server process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, insert, select, text

from conftest import test_settings
from sqlite_turn import turn_is_free
from tillpay.services.platform import Platform
from tillpay.store import sqlite_inline
from tillpay.store import tables as t
from tillpay.store.engine import create_engine
from tillpay.store.migrate import upgrade
from tillpay.store.sqlite_inline import InlineConnection


def _rate_row(base: str) -> dict[str, object]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return {"base": base, "quote": "CNY", "rate": "7", "effective_at": now, "created_at": now}


def test_a_write_waits_for_another_process_lock_while_the_loop_keeps_running(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    upgrade(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")  # as Tillpay leaves every database it has opened
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    released = threading.Event()

    def release() -> None:
        time.sleep(0.6)
        other.execute("COMMIT")
        released.set()

    async def scenario() -> tuple[int, float]:  # float-ok: seconds
        p = Platform(test_settings(f"sqlite:///{path}"))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not released.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        start = time.monotonic()
        try:
            async with p.engine.begin() as conn:
                await conn.execute(insert(t.fx_rates).values(**_rate_row("USD")))
            waited = time.monotonic() - start
            await tick_task
            return ticks, waited
        finally:
            await p.close()

    threading.Thread(target=release).start()
    ticks, waited = asyncio.run(scenario())
    assert waited >= 0.5  # it waited for the lock instead of failing with "database is locked"
    assert ticks >= 20  # and the event loop ran other work meanwhile
    assert sqlite3.connect(path).execute("SELECT count(*) FROM fx_rates").fetchone() == (1,)


def test_commit_persists_and_rollback_discards(tmp_path: Path) -> None:
    path = tmp_path / "y.db"
    upgrade(f"sqlite:///{path}")

    async def scenario() -> int:
        p = Platform(test_settings(f"sqlite:///{path}"))
        try:
            async with p.engine.begin() as conn:
                await conn.execute(insert(t.fx_rates).values(**_rate_row("USD")))
            async with p.engine.connect() as conn:
                async with conn.begin() as tx:
                    await conn.execute(insert(t.fx_rates).values(**_rate_row("EUR")))
                    await tx.rollback()
            async with p.engine.connect() as conn:
                return int((await conn.execute(select(func.count()).select_from(t.fx_rates))).scalar_one())
        finally:
            await p.close()

    assert asyncio.run(scenario()) == 1
    # Another connection (another process) sees exactly the committed row.
    assert sqlite3.connect(path).execute("SELECT base FROM fx_rates").fetchall() == [("USD",)]


class SlowCommit(sqlite3.Connection):
    """A connection whose COMMIT takes as long as a slow disk's fsync."""

    def commit(self) -> None:
        time.sleep(0.4)
        super().commit()


def connect(path: Path, factory: type[sqlite3.Connection] = sqlite3.Connection) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=factory)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def locked_by_another(path: Path) -> tuple[sqlite3.Connection, InlineConnection]:
    """Another process's connection holding the write lock, and a fresh inline connection."""
    holder = connect(path)
    holder.execute("BEGIN IMMEDIATE")
    return holder, InlineConnection(connect(path))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inline.db"
    with connect(path) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    return path


def count(path: Path) -> int:
    other = connect(path)
    try:
        return int(other.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        other.close()


@pytest.mark.anyio
async def test_a_write_commits_in_a_thread_and_the_loop_runs_meanwhile(db: Path) -> None:
    inline = InlineConnection(connect(db, SlowCommit))
    await inline.execute("BEGIN IMMEDIATE")
    await inline.execute("INSERT INTO t VALUES (1)")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    await inline.commit()
    ticker.cancel()
    assert ticks >= 10, "the loop stood still while the COMMIT ran"
    assert count(db) == 1
    await inline.close()


@pytest.mark.anyio
async def test_a_cancelled_commit_finishes_before_the_cancellation_goes_on(db: Path) -> None:
    inline = InlineConnection(connect(db, SlowCommit))
    await inline.execute("BEGIN IMMEDIATE")
    await inline.execute("INSERT INTO t VALUES (1)")
    committing = asyncio.ensure_future(inline.commit())
    await asyncio.sleep(0.1)  # the thread is inside COMMIT now
    committing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await committing
    # What SQLAlchemy does next with a cancelled request's connection: roll back, close. The COMMIT is
    # over by now, so neither runs beside it.
    assert not inline.in_transaction
    await inline.rollback()
    await inline.close()
    assert count(db) == 1  # the COMMIT went through: as for a client that left after sending


@pytest.mark.anyio
async def test_a_begin_waits_for_another_process_s_write_lock_without_a_thread(db: Path) -> None:
    holder, inline = locked_by_another(db)
    began = asyncio.ensure_future(inline.execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.2)
    assert not began.done(), "BEGIN IMMEDIATE did not wait for the lock"
    holder.commit()
    await asyncio.wait_for(began, 2)
    assert inline.in_transaction
    await inline.rollback()
    await inline.close()
    holder.close()


@pytest.mark.anyio
async def test_a_begin_cancelled_while_it_waits_leaves_the_connection_alone(db: Path) -> None:
    holder, inline = locked_by_another(db)
    began = asyncio.ensure_future(inline.execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.2)
    began.cancel()
    with pytest.raises(asyncio.CancelledError):
        await began
    holder.commit()  # the lock is free: nothing may take it for the cancelled request any more
    await asyncio.sleep(0.3)
    assert not inline.in_transaction
    await inline.execute("BEGIN IMMEDIATE")  # the connection is as good as new
    await inline.execute("INSERT INTO t VALUES (2)")
    await inline.commit()
    assert count(db) == 1
    await inline.close()
    holder.close()


@pytest.mark.anyio
async def test_a_begin_gives_up_after_the_busy_timeout(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 300)
    holder, inline = locked_by_another(db)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await inline.execute("BEGIN IMMEDIATE")
    assert 0.25 <= time.monotonic() - started < 5
    assert not inline.in_transaction
    holder.rollback()
    await inline.close()
    holder.close()


@pytest.mark.anyio
async def test_an_engine_transaction_takes_the_write_lock_when_it_begins(db: Path) -> None:
    # engine.py begins every transaction with BEGIN IMMEDIATE on the driver's cursor: the write lock is
    # taken before the first statement, so a read-then-write transaction cannot fail half-way.
    engine = create_engine(f"sqlite:///{db}")
    try:
        async with engine.begin() as conn:
            other = connect(db)
            other.execute("PRAGMA busy_timeout=0")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        assert count(db) == 1
    finally:
        await engine.dispose()


@pytest.mark.anyio
async def test_an_engine_transaction_that_cannot_get_the_lock_fails_with_sqlalchemys_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 300)
    holder = connect(db)
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{db}")
    try:
        with pytest.raises(sa_exc.OperationalError, match="locked"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
        holder.rollback()
        async with engine.begin() as conn:  # the connection is usable again once the lock is free
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        assert count(db) == 1
    finally:
        holder.close()
        await engine.dispose()


#: Many transactions on one engine, half of them cancelled at a random moment, while another process's
#: connection keeps taking the write lock: what a SQLite server sees when browsers drop their event
#: streams while the worker or the CLI writes. Before the fix this crashed the process (SIGSEGV) within
#: about three seconds on a 2-core machine. With two engines, the requests of each also wait for the
#: other's turn (as two server processes do) and are cancelled while they wait for it; afterwards nothing
#: may hold the turn.
STRESS = """
import asyncio, fcntl, os, random, sqlite3, sys, threading, time
from sqlalchemy import text
from tillpay.store.engine import create_engine

path = sys.argv[1]
seconds = float(sys.argv[2])
engines = int(sys.argv[3])
c0 = sqlite3.connect(path)
c0.execute("PRAGMA journal_mode=WAL")
c0.execute("CREATE TABLE t (v INTEGER)")
c0.commit()
c0.close()
stop = threading.Event()

def other_process():
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA busy_timeout=30000")
    while not stop.is_set():
        c.execute("BEGIN IMMEDIATE")
        time.sleep(random.random() * 0.004)
        c.execute("INSERT INTO t VALUES (0)")
        c.execute("COMMIT")
        time.sleep(random.random() * 0.003)

async def main():
    pool = [create_engine(f"sqlite:///{path}") for _ in range(engines)]
    done = cancelled = errors = 0

    async def transaction(engine):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            await conn.execute(text("SELECT count(*) FROM t"))

    end = time.monotonic() + seconds

    async def requests(engine):
        nonlocal done, cancelled, errors
        while time.monotonic() < end:
            task = asyncio.ensure_future(transaction(engine))
            await asyncio.sleep(random.random() * 0.004)
            if not task.done() and random.random() < 0.5:
                task.cancel()
            try:
                await task
                done += 1
            except asyncio.CancelledError:
                cancelled += 1
            except Exception as e:
                errors += 1
                print(repr(e), file=sys.stderr)

    await asyncio.gather(*(requests(pool[i % engines]) for i in range(8)))
    for engine in pool:
        await engine.dispose()
    fd = os.open(path + "-tillpay-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        turn_free = 1
    except BlockingIOError:
        turn_free = 0
    print(done, cancelled, errors, turn_free)

threading.Thread(target=other_process, daemon=True).start()
asyncio.run(main())
stop.set()
"""


@pytest.mark.parametrize("engines", [1, 2])
def test_transactions_cancelled_at_random_under_lock_contention_neither_crash_nor_fail(
    tmp_path: Path, engines: int
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            STRESS,
            str(tmp_path / "stress.db"),
            "6" if engines == 1 else "4",
            str(engines),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"exit status {proc.returncode} (-11: SIGSEGV): {proc.stderr[-2000:]}"
    done, cancelled, errors, turn_free = (int(n) for n in proc.stdout.split())
    assert errors == 0, proc.stderr[-2000:]
    assert done > 100 and cancelled > 100  # both kinds happened, many times
    assert turn_free == 1, "a connection kept its turn after all its transactions ended"
    with sqlite3.connect(tmp_path / "stress.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- Tillpay's writers take turns (WriterTurn)


async def turn_becomes_free(path: Path) -> bool:
    for _ in range(100):
        if turn_is_free(path):
            return True
        await asyncio.sleep(0.02)
    return False


def begins_tried(inline: InlineConnection) -> list[str]:
    """The BEGIN statements the connection's sqlite3 connection runs from now on (a try that finds the
    write lock taken is one too)."""
    tried: list[str] = []
    inline._conn.set_trace_callback(lambda sql: tried.append(sql) if sql.startswith("BEGIN") else None)
    return tried


@pytest.mark.anyio
async def test_a_writer_waiting_for_another_tillpay_writer_is_woken_instead_of_trying_again(db: Path) -> None:
    first = await InlineConnection.open(str(db))
    second = await InlineConnection.open(str(db))
    tried = begins_tried(second)
    await first.execute("BEGIN IMMEDIATE")
    assert not turn_is_free(db)
    began = asyncio.ensure_future(second.execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.5)  # SQLite's pauses alone would have tried about ten times by now
    assert not began.done()
    assert tried == [], "the waiting writer tried SQLite's lock instead of waiting for its turn"
    await first.execute("INSERT INTO t VALUES (1)")
    await first.commit()
    await asyncio.wait_for(began, 5)
    assert tried == ["BEGIN IMMEDIATE"]  # once, when its turn came
    await second.execute("INSERT INTO t VALUES (2)")
    await second.commit()
    assert count(db) == 2
    assert turn_is_free(db)
    await first.close()
    await second.close()


@pytest.mark.anyio
async def test_the_turn_is_given_back_however_the_transaction_ends(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inline = await InlineConnection.open(str(db))
    await inline.execute("BEGIN IMMEDIATE")
    assert not turn_is_free(db)
    await inline.rollback()
    assert turn_is_free(db), "a rollback kept the turn"
    await inline.execute("BEGIN IMMEDIATE")
    await inline.execute("INSERT INTO t VALUES (1)")
    await inline.commit()  # a write: committed in a thread
    assert turn_is_free(db), "a commit that wrote kept the turn"
    await inline.execute("BEGIN IMMEDIATE")
    await inline.commit()  # nothing written: committed on the loop
    assert turn_is_free(db), "a commit without writes kept the turn"
    # Another program (which knows nothing of the turn) holds SQLite's lock past the busy timeout.
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 300)
    holder = connect(db)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await inline.execute("BEGIN IMMEDIATE")
    assert turn_is_free(db), "a BEGIN that gave up kept the turn"
    holder.rollback()
    holder.close()
    await inline.execute("BEGIN IMMEDIATE")
    assert not turn_is_free(db)
    await inline.close()
    assert turn_is_free(db), "closing the connection kept the turn"
    assert count(db) == 1


@pytest.mark.anyio
async def test_a_wait_for_the_turn_that_is_cancelled_lets_it_go_when_it_comes(db: Path) -> None:
    first = await InlineConnection.open(str(db))
    second = await InlineConnection.open(str(db))
    await first.execute("BEGIN IMMEDIATE")
    began = asyncio.ensure_future(second.execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.2)
    began.cancel()
    with pytest.raises(asyncio.CancelledError):
        await began
    await first.rollback()
    # The thread that waited for the second connection's turn gets the lock now; nobody waits for it.
    assert await turn_becomes_free(db), "a cancelled wait kept the turn when it came"
    assert not second.in_transaction
    await first.execute("BEGIN IMMEDIATE")  # the first writer is not held up by it
    await first.execute("INSERT INTO t VALUES (1)")
    await first.commit()
    await second.execute("BEGIN IMMEDIATE")  # and the second connection is as good as new
    await second.execute("INSERT INTO t VALUES (2)")
    await second.commit()
    assert count(db) == 2
    await first.close()
    await second.close()
    assert turn_is_free(db)


@pytest.mark.anyio
async def test_the_commit_s_thread_lets_the_turn_go_without_waiting_for_the_loop(db: Path) -> None:
    # The next writer (another server process) need not wait until this process's loop, busy with
    # other requests, comes round to the finished COMMIT.
    inline = InlineConnection(connect(db, SlowCommit), sqlite_inline.WriterTurn.beside(str(db)))
    await inline.execute("BEGIN IMMEDIATE")
    await inline.execute("INSERT INTO t VALUES (1)")
    committing = asyncio.ensure_future(inline.commit())
    await asyncio.sleep(0.1)  # the thread is inside COMMIT now
    assert not turn_is_free(db)
    time.sleep(0.6)  # noqa: ASYNC251 -- the loop is busy (no await) while the COMMIT ends
    assert turn_is_free(db), "the turn waited for the loop after the COMMIT"
    assert count(db) == 1
    await committing
    await inline.close()


@pytest.mark.anyio
async def test_a_turn_wait_given_up_earlier_is_the_one_a_new_wait_takes_over(db: Path) -> None:
    # Another process holds the turn; a wait for it is cancelled, and the thread keeps waiting.
    inline = await InlineConnection.open(str(db))
    holder = os.open(f"{db}{sqlite_inline.TURN_SUFFIX}", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    began = asyncio.ensure_future(inline.execute("BEGIN IMMEDIATE"))
    await asyncio.sleep(0.1)
    began.cancel()
    with pytest.raises(asyncio.CancelledError):
        await began
    # The holder lets go and the connection begins again at once: it must get its turn from that
    # thread, not beside it, or the thread's arrival would let the turn go under a running transaction.
    fcntl.flock(holder, fcntl.LOCK_UN)
    await inline.execute("BEGIN IMMEDIATE")
    await asyncio.sleep(0.2)  # the thread has arrived by now
    assert not turn_is_free(db), "the turn went while the transaction ran"
    await inline.rollback()
    assert turn_is_free(db)
    await inline.close()
    os.close(holder)


@pytest.mark.anyio
async def test_a_wait_for_the_turn_gives_up_after_the_busy_timeout(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 300)
    first = await InlineConnection.open(str(db))
    second = await InlineConnection.open(str(db))
    await first.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await second.execute("BEGIN IMMEDIATE")
    assert 0.25 <= time.monotonic() - started < 5
    assert not second.in_transaction
    await first.commit()
    assert await turn_becomes_free(db)
    await second.execute("BEGIN IMMEDIATE")
    await second.execute("INSERT INTO t VALUES (1)")
    await second.commit()
    assert count(db) == 1
    await first.close()
    await second.close()


#: One process writing transactions one after another, counting its tries at SQLite's write lock.
WRITER = """
import asyncio, os, sys, time
from sqlalchemy import event, text
from tillpay.store.engine import create_engine

path, transactions, start = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tries = 0

def count_tries(sql):
    global tries
    if sql.startswith("BEGIN"):
        tries += 1

async def main():
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine.sync_engine, "connect")
    def traced(dbapi_conn, _record):
        dbapi_conn.driver_connection._conn.set_trace_callback(count_tries)

    while not os.path.exists(start):
        time.sleep(0.01)
    for i in range(transactions):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": i})
    await engine.dispose()
    print(tries)

asyncio.run(main())
"""


def test_two_processes_writing_one_file_each_try_sqlites_lock_once_per_transaction(
    db: Path, tmp_path: Path
) -> None:
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), "300", str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    start.touch()
    outs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    tries = [int(out) for out, _ in outs]
    assert count(db) == 600
    # Each waited for its turn while the other wrote, and then found SQLite's lock free.
    assert tries == [300, 300], f"tries at the write lock per process: {tries}"
    assert turn_is_free(db)


#: A command that gives up waiting for its turn (another process keeps it past the busy timeout) and ends.
GIVES_UP = """
import asyncio, sqlite3, sys
from tillpay.store import sqlite_inline

sqlite_inline.BUSY_TIMEOUT_MS = 300

async def main():
    inline = await sqlite_inline.InlineConnection.open(sys.argv[1])
    try:
        await inline.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        print(e)
    finally:
        await inline.close()

asyncio.run(main())
"""


def test_a_process_that_gave_up_waiting_for_its_turn_exits_while_the_other_still_has_it(db: Path) -> None:
    # Another Tillpay process has the turn and SQLite's lock, and keeps them.
    fd = os.open(f"{db}{sqlite_inline.TURN_SUFFIX}", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    holder = connect(db)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", GIVES_UP, str(db)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "locked" in proc.stdout  # the wait gave up with SQLite's own words
    finally:
        holder.rollback()
        holder.close()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", [0o600, 0o640])
async def test_the_turn_file_is_no_more_open_than_the_database(db: Path, mode: int) -> None:
    # Whoever may open the lock file may hold the writers' turn: only those who may open the database.
    os.chmod(db, mode)
    old_umask = os.umask(0)
    try:
        inline = await InlineConnection.open(str(db))
    finally:
        os.umask(old_umask)
    try:
        assert os.stat(f"{db}{sqlite_inline.TURN_SUFFIX}").st_mode & 0o777 == mode
    finally:
        await inline.close()
