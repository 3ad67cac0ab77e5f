"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

PostgreSQL tests need ``TILLPAY_TEST_PG_URL`` (an admin URL to a running server, e.g.
``postgresql://tillpay:tillpay@127.0.0.1:54329/postgres``); ``scripts/test`` starts such a server.
Without it those tests fail with an explanation; they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tillpay.config import Settings
from tillpay.logs import configure_logging
from tillpay.services.audit import audit
from tillpay.services.platform import FakeClock, Platform
from tillpay.store.migrate import upgrade

PG_ENV = "TILLPAY_TEST_PG_URL"

# The servers and services the tests run in this process log as `tillpay serve` does (key=value lines,
# plain tracebacks; any in-process CLI test would set the same). structlog's own default renders an
# error's traceback with rich, every frame's locals included: over 15 s per database error on a slow
# machine (asyncpg's exceptions carry large locals), so a test server stopped answering within a
# client's timeout while it logged a database outage.
configure_logging("INFO")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------------- parallel runs (pytest-xdist)
#
# ``scripts/test`` runs the tests in parallel processes (``-n auto --dist loadscope``): each module goes to
# whichever process is free, whole, so that its module-scoped fixtures (a server, a browser, the SDK
# drivers on 127.0.0.2's fixed ports) are set up once and in one process only. Each process has its own
# temporary directory, its own template databases (named after its pid) and its own per-test databases.


#: How many RSA keys the tests' key pool holds before it hands the first one out again.
RSA_KEY_POOL_SIZE = 256


class _RsaKeyPool:
    """Real 2048-bit RSA keys, made on first use and then handed out again in turn.

    Generating a key costs tens of milliseconds of CPU, and every merchant a test makes needs two (its own
    and the gateway's). Keys handed out in a row are all different up to ``RSA_KEY_POOL_SIZE`` of them, so
    two merchants of one database never share a key (no test database sees anywhere near that many);
    ``tillpay`` processes the tests start (the CLI, ``serve``) still generate their own.
    """

    def __init__(self, real: Any) -> None:
        import threading

        self.real = real
        self.keys: list[Any] = []
        self.handed = 0
        self.lock = threading.Lock()  # in-process test servers make merchants in their own threads

    def __call__(self, bits: int = 2048) -> Any:
        if bits != 2048:
            return self.real(bits)
        with self.lock:
            i = self.handed % RSA_KEY_POOL_SIZE
            self.handed += 1
            if i == len(self.keys):
                self.keys.append(self.real(bits))
            return self.keys[i]


@pytest.fixture(autouse=True, scope="session")
def _rsa_keys_from_a_pool() -> Iterator[None]:
    """``tillpay.signing.generate_private_key`` draws from a pool for the whole test session (not for
    tests/unit/test_signing.py, which imported the real one by name)."""
    from tillpay import signing

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(signing, "generate_private_key", _RsaKeyPool(signing.generate_private_key))
        yield


@pytest.fixture(autouse=True)
def _mapi_answers_checked_by_the_public_rule(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``MapiClient`` a test builds in this process (the ECR's too) checks each MAPI answer again by
    the public clients' rule (tests/mapi_reference.py), besides Tillpay's own check.

    A test that points a client at the wrong gateway key on purpose is marked ``foreign_gateway_key``.
    """
    if request.node.get_closest_marker("foreign_gateway_key"):
        return
    from mapi_reference import CheckedTransport
    from tillpay.client import _client

    original = _client.MapiClient.__init__

    def init(self: _client.MapiClient, *args: Any, **kw: Any) -> None:
        if kw.get("transport") is None:
            kw["transport"] = CheckedTransport(
                md5_key=kw.get("md5_key", ""), public_key_pem=kw.get("gateway_public_key", "")
            )
        original(self, *args, **kw)

    monkeypatch.setattr(_client.MapiClient, "__init__", init)


def pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(
            f"{PG_ENV} is not set: run the tests with scripts/test, which starts PostgreSQL, "
            "or point it at a server you started (see README, Tests)."
        )
    return url


def _pg_conn(url: str) -> psycopg.Connection:
    u = make_url(url).set(drivername="postgresql")
    return psycopg.connect(u.render_as_string(hide_password=False), autocommit=True)


def _pg_db_url(admin: str, name: str) -> str:
    return make_url(admin).set(drivername="postgresql", database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


class _PgClones:
    """Copies of the template database, each made (``CREATE DATABASE ... TEMPLATE``) one test ahead by a
    thread of this process while the current test runs. Every test still gets a fresh copy of its own;
    the copy is only made earlier. Copying takes PostgreSQL a few hundred milliseconds."""

    def __init__(self, admin: str, template: str) -> None:
        import queue
        import threading

        self.admin = admin
        self.template = template
        self.ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._make, name="pg-clones", daemon=True)
        self.thread.start()

    def _make(self) -> None:
        import queue

        try:
            with _pg_conn(self.admin) as conn:
                while not self.stopping.is_set():
                    name = f"tillpay_t_{uuid.uuid4().hex[:12]}"
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                    while True:
                        try:
                            self.ready.put(name, timeout=0.5)
                            break
                        except queue.Full:
                            if self.stopping.is_set():
                                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                                return
        except BaseException as e:  # handed to the test that waits for a copy
            self.ready.put(e)

    def take(self) -> str:
        """The name of a fresh copy of the template, the caller's to use and drop."""
        got = self.ready.get(timeout=300)
        if isinstance(got, BaseException):
            raise RuntimeError("copying the template database failed") from got
        return got

    def close(self) -> None:
        """Stop making copies and drop the one made ahead, if any."""
        import queue

        self.stopping.set()
        self.thread.join(timeout=60)
        with _pg_conn(self.admin) as conn:
            while True:
                try:
                    left = self.ready.get_nowait()
                except queue.Empty:
                    break
                if isinstance(left, str):
                    conn.execute(f'DROP DATABASE IF EXISTS "{left}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test clones with CREATE DATABASE ... TEMPLATE (one per
    test process: the name carries the pid, so parallel processes never share one)."""
    admin = pg_admin_url()
    name = f"tillpay_tpl_{os.getpid()}"
    with _pg_conn(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(_pg_db_url(admin, name))
    yield name
    with _pg_conn(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_clones(pg_template: str) -> Iterator[_PgClones]:
    """Fresh copies of ``pg_template``, made one ahead (set up after the template, so closed before it)."""
    clones = _PgClones(pg_admin_url(), pg_template)
    yield clones
    clones.close()


def make_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database of ``kind`` for one test; yields its URL and drops it afterwards."""
    if kind == "sqlite":
        path = tmp_path / "tillpay.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    clones: _PgClones = request.getfixturevalue("pg_clones")
    admin = pg_admin_url()
    name = clones.take()
    yield _pg_db_url(admin, name)
    with _pg_conn(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL, once on SQLite and once on PostgreSQL."""
    yield from make_database(request.param, request, tmp_path)


#: What a test opts into when its notifications go to receivers of its own on loopback (any port): the
#: operator's allow-list (docs/security.md). Without it, Tillpay's defaults hold: public
#: addresses on ports 80, 443, 8080 and 8443 only. Mark a test ``loopback_receivers`` to get these in
#: the ``live`` server; processes take ``LOOPBACK_RECEIVERS_ENV``.
LOOPBACK_RECEIVERS = {"notify_allow_networks": "127.0.0.0/8", "notify_allow_ports": "1-65535"}
LOOPBACK_RECEIVERS_ENV = {f"TILLPAY_{k.upper()}": v for k, v in LOOPBACK_RECEIVERS.items()}


def test_settings(db_url: str, **overrides: object) -> Settings:
    """Settings for a test: fast worker polling, a known confirmation limit."""
    base: dict[str, object] = {
        "database_url": db_url,
        "public_url": "http://testserver",
        "confirm_above": "CNY:2000.00,USD:300.00,JPY:40000",
        "worker_poll_seconds": 0.05,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def platform(db_url: str, clock: FakeClock) -> AsyncIterator[Platform]:
    """A platform on a fresh database with a fake clock; the ledger audit must be clean afterwards."""
    p = Platform(test_settings(db_url), clock=clock)
    try:
        yield p
        findings = await audit(p)
        assert not findings, f"ledger audit failed after the test: {findings}"
    finally:
        await p.close()


@pytest.fixture
async def sandbox_platform(db_url: str, clock: FakeClock) -> AsyncIterator[Platform]:
    """Like ``platform``, in sandbox mode (console test payments); audited afterwards too."""
    p = Platform(test_settings(db_url, mode="sandbox"), clock=clock)
    try:
        yield p
        findings = await audit(p)
        assert not findings, f"ledger audit failed after the test: {findings}"
    finally:
        await p.close()


# ------------------------------------------------------------------------------------ live servers


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LiveServer:
    """``tillpay`` served by uvicorn in a thread over real loopback sockets, plus a way to reach its DB."""

    def __init__(self, db_url: str, **settings: object) -> None:
        import threading

        import uvicorn

        from tillpay.web.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = test_settings(db_url, public_url=self.url, **settings)
        app = create_app(Platform(self.settings))
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)

    def run(self, fn):  # type: ignore[no-untyped-def]
        """Run ``await fn(platform)`` on a separate platform over the same database (test set-up, checks)."""
        import asyncio

        async def go():  # type: ignore[no-untyped-def]
            p = Platform(self.settings)
            try:
                return await fn(p)
            finally:
                await p.close()

        return asyncio.run(go())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def live(db_url: str, request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A running gateway on a fresh database (SQLite and PostgreSQL); the audit must be clean afterwards.

    A test marked ``loopback_receivers`` gets a server whose notifications may go to loopback.
    """
    opt_in = request.node.get_closest_marker("loopback_receivers") is not None
    server = LiveServer(db_url, **(LOOPBACK_RECEIVERS if opt_in else {}))
    try:
        yield server
    finally:
        server.stop()
    findings = server.run(audit)
    assert not findings, f"ledger audit failed after the test: {findings}"


@pytest.fixture
def live_sandbox(db_url: str) -> Iterator[LiveServer]:
    """Like ``live``, in sandbox mode (self top-up, console test payments); audited afterwards too."""
    server = LiveServer(db_url, mode="sandbox")
    try:
        yield server
    finally:
        server.stop()
    findings = server.run(audit)
    assert not findings, f"ledger audit failed after the test: {findings}"
