"""Faults on PostgreSQL under a pay load: the server restarted under Tillpay, and ``kill -9`` of
``tillpay serve`` and of ``tillpay worker``. Each ends with the four checks and a recovery time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import Load, Proc, SoloPostgres, assert_clean, check, free_port, prepare, record

from conftest import make_database


@pytest.fixture
def db_url_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on the shared test server (nothing here restarts that server)."""
    yield from make_database("postgres", request, tmp_path)


@pytest.fixture
def solo_pg() -> Iterator[SoloPostgres]:
    pg = SoloPostgres()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.mark.slow
def test_postgres_killed_and_restarted_under_load_loses_nothing_and_pools_recover(
    solo_pg: SoloPostgres,
) -> None:
    shop = prepare(solo_pg.url)
    server = Proc(solo_pg.url, "serve", port=free_port())
    load = Load(shop, server.url, prefix="PGR").start()
    try:
        load.wait_for_successes(10)
        fault_at = time.monotonic()
        solo_pg.kill9()
        time.sleep(2)  # the load meets a database that is gone: errors, never a hang
        solo_pg.restart()
        down_seconds = round(time.monotonic() - fault_at, 2)
        # Same server processes, no restart of Tillpay: their pools find the database again.
        load.wait_for_successes(10, after=time.monotonic())
        recovery = load.recovery_seconds(fault_at)
        load.stop()
        # The checks while the server's worker still runs: it closes the last pays that wait past their
        # timeout, which a stopped server would leave waiting.
        result = check(shop, load)
    finally:
        load.stop()
        server.stop()
    result["database_down_seconds"] = down_seconds  # until pg_ctl start returned
    record(
        "postgres_restart",
        "PostgreSQL postmaster kill -9, restarted after 2 s (no failover)",
        recovery,
        result,
    )
    assert_clean(result)
    # While the database was down, pays were answered (an error or UNKNOW), not left hanging.
    assert set(result["outcomes"]) - {"success", "waiting"}, result["outcomes"]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.faults_long
def test_kill_9_of_serve_and_of_worker_mid_load_loses_nothing(db_url_pg: str) -> None:
    shop = prepare(db_url_pg)
    port = free_port()
    server = Proc(db_url_pg, "serve", "--workers", "2", "--no-worker", port=port)
    worker = Proc(db_url_pg, "worker")
    load = Load(shop, server.url, prefix="KS").start()
    try:
        load.wait_for_successes(20)
        fault_at = time.monotonic()
        server.kill9()
        worker.kill9()
        time.sleep(1)
        restart_at = time.monotonic()
        server.restart()  # what systemd (Restart=always) would do
        restart_seconds = round(time.monotonic() - restart_at, 2)
        recovery = None
        load.wait_for_successes(20, after=time.monotonic())
        recovery = load.recovery_seconds(fault_at)
        worker.restart()  # the waiting pays that expired meanwhile are closed by the new worker
        load.wait_for_successes(10, after=time.monotonic())
    finally:
        load.stop()
        server.stop()
    try:
        result = check(shop, load)
    finally:
        worker.stop()
    result["serve_start_seconds"] = restart_seconds
    record(
        "kill_serve_worker",
        "kill -9 of `tillpay serve --workers 2` and of `tillpay worker`",
        recovery,
        result,
    )
    assert_clean(result)
