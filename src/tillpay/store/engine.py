"""Database engines for SQLite and PostgreSQL, tuned the way the measurements on this machine say.

SQLite does best with one writer connection per process (a pool of one connection is the lock) and
``BEGIN IMMEDIATE`` so that a transaction takes the write lock up front instead of failing to upgrade.
PostgreSQL goes through asyncpg, the fastest driver measured; balance changes take row locks.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from sqlalchemy import Insert, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.schema import Table

from tillpay.store.sqlite_inline import InlineConnection

_LIBPQ_HOSTS = re.compile(r"^(?P<head>[a-z0-9+]+://(?:[^@/]*@)?)(?P<hosts>[^/?]*,[^/?]*)(?P<tail>.*)$", re.I)


def _hosts_to_query(url: str) -> str:
    """libpq's multi-host form ``postgresql://u@h1:p1,h2:p2/db`` → ``postgresql://u@/db?host=h1:p1&host=h2:p2``.

    SQLAlchemy cannot parse the comma form (the port would be ``p1,h2:p2``) but passes ``host=`` query
    parameters to both asyncpg and psycopg as the list of hosts to try in order, which together with
    ``target_session_attrs=read-write`` is how a pool finds the primary after a failover
    (docs/reliability.md).
    """
    m = _LIBPQ_HOSTS.match(url)
    if not m:
        return url
    hosts = "&".join("host=" + quote(h.strip(), safe=":[]") for h in m["hosts"].split(",") if h.strip())
    path, _, query = m["tail"].partition("?")
    return f"{m['head']}{path or '/'}?{hosts}" + (f"&{query}" if query else "")


def is_multi_host(url: str) -> bool:
    """Whether a PostgreSQL URL lists several hosts or asks for a session kind (a failover setup)."""
    q = make_url(_hosts_to_query(url)).query
    hosts = q.get("host", ())
    return (not isinstance(hosts, str) and len(hosts) > 1) or "target_session_attrs" in q


def async_url(url: str) -> str:
    """The async-driver form of a database URL (``sqlite://`` → aiosqlite, ``postgresql://`` → asyncpg)."""
    u = make_url(_hosts_to_query(url))
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The sync-driver form of a database URL, for Alembic and the test harness."""
    u = make_url(_hosts_to_query(url))
    if u.drivername.startswith("sqlite"):
        u = u.set(drivername="sqlite")
    elif u.drivername.startswith("postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return make_url(_hosts_to_query(url)).drivername.startswith("sqlite")


#: The execution option of a connection that only reads (``store.uow.Reader``): on SQLite its
#: transaction begins deferred, so it takes no write lock (in WAL mode a reader reads its snapshot while
#: a writer writes) and no writer's turn (store/sqlite_inline.py).
READ_ONLY = "tillpay_read_only"


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` with the per-database settings Tillpay relies on."""
    url = async_url(url)
    if is_sqlite(url):
        path = make_url(url).database or ":memory:"
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            # Statements run on the loop's thread instead of aiosqlite's (see sqlite_inline).
            async_creator=lambda: InlineConnection.open(path),
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin (BEGIN IMMEDIATE below).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed payment survives power loss; measured at only ~8% cost with one writer.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Several processes (CLI, workers, a second server) may share the file.
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            # On the driver's cursor, not through ``exec_driver_sql``: SQLAlchemy's execution machinery
            # (context, events, result) cost a third of a millisecond of every write transaction.
            # Its errors are wrapped as SQLAlchemy's own, as ``exec_driver_sql`` would (a lock still held
            # by another process after BUSY_TIMEOUT_MS: ``sqlalchemy.exc.OperationalError``).
            # A reader's transaction (READ_ONLY) begins deferred: it never writes, so it needs no lock.
            begin = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
            cur = conn.connection.dbapi_connection.cursor()
            try:
                cur.execute(begin)
            except conn.dialect.loaded_dbapi.Error as e:
                raise sa_exc.DBAPIError.instance(
                    begin, (), e, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
                ) from e
            finally:
                cur.close()

        return engine
    # A pool of a fixed size: a request that finds every connection in use waits for one (up to 30 s)
    # instead of opening another. Extra connections that were closed again as soon as they were returned
    # cost a new PostgreSQL backend each (a process fork, authentication, and the session's statements
    # and functions planned again): with 16 requests at once on one process, ~30 new backends a second
    # and 2-3x the database's CPU per pay (docs/benchmark.md, "PostgreSQL: a pool of a fixed size").
    # A failover setup (several hosts, target_session_attrs) pings a connection before using it: after
    # the primary goes, every pooled connection is dead, and a ping that fails throws away the whole
    # pool (SQLAlchemy invalidates all connections older than a disconnect), so one request per process
    # at most sees the old primary's death. A single server keeps the measured ping-free path: a dead
    # connection fails its request, is discarded on return and replaced by a fresh one.
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=is_multi_host(url))


def insert_ignore(conn: AsyncConnection, table: Table, *conflict: str) -> Insert:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING`` for the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
