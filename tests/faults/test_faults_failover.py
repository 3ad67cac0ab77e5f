"""Failover under a pay load: a primary and a synchronous standby under pg_auto_failover (``tillpay ha``),
``tillpay serve`` on the multi-host URL. The primary machine dies (``kill -9`` of its postmaster, keeper and
keeper services), and a planned switchover; each ends with the four checks and the recovery time."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from faultkit import TILLPAY, Load, Proc, assert_clean, check, free_port, prepare, record

from tillpay.ops import ha

pytestmark = [pytest.mark.slow, pytest.mark.faults_long]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ha.Layout]:
    """A monitor and two nodes on loopback, made with ``tillpay ha up`` as an operator would."""
    base = Path(tempfile.mkdtemp(prefix="tillpay-ha-"))
    ports = [free_port() for _ in range(3)]
    argv = [*TILLPAY, "--json", "ha", "up", "--dir", str(base), "--fast-failover"]
    argv += ["--monitor-port", str(ports[0]), "--node-port", str(ports[1]), "--node-port", str(ports[2])]
    up = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    layout = ha.Layout(base, "127.0.0.1", ports[0], (ports[1], ports[2]))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert json.loads(up.stdout)["database_url"] == layout.database_url()
        yield layout
    finally:
        down = subprocess.run(
            [*TILLPAY, "ha", "down", "--dir", str(base), "--purge"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert down.returncode == 0, down.stderr


def test_the_standby_is_synchronous(cluster: ha.Layout) -> None:
    # A commit on the primary waits for the standby: what makes an answered payment survive the primary.
    out = subprocess.run(
        [str(ha.PG_BIN / "psql"), "-qAt", cluster.database_url(), "-c", "SHOW synchronous_standby_names"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip().startswith("ANY 1 (pgautofailover_standby_"), out.stdout
    status = subprocess.run(
        [*TILLPAY, "--json", "ha", "status", "--dir", str(cluster.base)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    states = sorted(n["current_group_state"] for n in json.loads(status.stdout)["nodes"])
    assert states == ["primary", "secondary"]


def _database(cluster: ha.Layout, name: str) -> str:
    """A new database for one test on the cluster (a fresh one: the load's wallets start at id 1)."""
    with psycopg.connect(cluster.database_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.database_url().replace(f"/{ha.DBNAME}?", f"/{name}?")


def _under_load(cluster: ha.Layout, name: str, fault: str, act: object) -> None:
    url = _database(cluster, name)
    shop = prepare(url)
    server = Proc(url, "serve", "--workers", "2", port=free_port())
    load = Load(shop, server.url, prefix=name.upper()[:6]).start()
    try:
        load.wait_for_successes(20)
        fault_at = time.monotonic()
        act()  # type: ignore[operator]  # a callable: the fault
        # The same server processes, never restarted, reach the new primary on their own.
        load.wait_for_successes(20, after=time.monotonic())
        recovery = load.recovery_seconds(fault_at)
    finally:
        load.stop()
        server.stop()
    result = check(shop, load)
    result["primary_after"] = f"node{ha.primary(cluster)}"
    record(name, fault, recovery, result)
    assert_clean(result)


def test_primary_killed_under_load_fails_over_and_loses_no_acknowledged_payment(cluster: ha.Layout) -> None:
    before = ha.primary(cluster)

    def crash() -> None:
        ha.crash_node(cluster, before)

    try:
        _under_load(
            cluster,
            "failover_kill_primary",
            "kill -9 of the primary's postmaster, keeper and keeper services (pg_auto_failover promotes the synchronous standby)",
            crash,
        )
        assert ha.primary(cluster) != before
    finally:
        # The old primary comes back as the new standby (pg_rewind), ready for the next test.
        ha.start_node(cluster, before)
        ha.wait_healthy(cluster, timeout=300)


def test_planned_switchover_under_load_loses_nothing(cluster: ha.Layout) -> None:
    before = ha.primary(cluster)

    def switchover() -> None:
        env = {**os.environ}
        done = subprocess.run(
            [*TILLPAY, "ha", "switchover", "--dir", str(cluster.base)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    _under_load(cluster, "switchover", "planned switchover (`tillpay ha switchover`)", switchover)
    assert ha.primary(cluster) != before
