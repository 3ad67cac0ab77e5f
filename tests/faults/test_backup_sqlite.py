"""``tillpay backup`` of a SQLite database while ``tillpay serve`` takes pays, and its restore."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from faultkit import TILLPAY, Load, Proc, free_port, prepare

TABLES = ("payments", "journal_entries", "postings", "wallet_users", "code_uses")


def _counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def _tillpay(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TILLPAY_DATABASE_URL": f"sqlite:///{db}"}
    return subprocess.run(
        [*TILLPAY, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _restore(backup: Path, target: Path) -> None:
    """docs/backup.md's restore: with Tillpay stopped, the backup file replaces the database."""
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, target)


@pytest.mark.slow
def test_a_backup_taken_under_pays_restores_to_a_consistent_database(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    shop = prepare(f"sqlite:///{live}", users=100)
    server = Proc(shop.db_url, "serve", port=free_port())
    load = Load(shop, server.url, prefix="BK").start()
    try:
        load.wait_for_successes(15)
        during = _tillpay(live, "backup", str(tmp_path / "during.db"))
        load.wait_for_successes(5, after=load.outcomes[-1].ended)  # writes went on after the copy
    finally:
        load.stop()
        server.stop()
    assert during.returncode == 0, during.stderr
    assert "pages (100%)" in during.stderr  # the progress indication
    after = _tillpay(live, "--json", "backup", str(tmp_path / "after.db"))
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["pages"] > 0

    # The copy taken under load is a consistent database of its own: every ledger check passes.
    restored = tmp_path / "restored-during.db"
    _restore(tmp_path / "during.db", restored)
    audit = _tillpay(restored, "audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    # ... and a moment of the live one: nothing in it that the live database lacks, and less than now.
    with sqlite3.connect(restored) as conn:
        snapshot = set(conn.execute("SELECT trade_no, status FROM payments WHERE status = 'TRADE_SUCCESS'"))
    with sqlite3.connect(live) as conn:
        now = set(conn.execute("SELECT trade_no, status FROM payments WHERE status = 'TRADE_SUCCESS'"))
    assert snapshot and snapshot < now

    # Taken once the writes stopped, the restored copy holds exactly what the live database holds.
    restored_after = tmp_path / "restored-after.db"
    _restore(tmp_path / "after.db", restored_after)
    assert _tillpay(restored_after, "audit").returncode == 0
    assert _counts(restored_after) == _counts(live)


def test_backup_refuses_postgresql_and_names_the_tool(tmp_path: Path) -> None:
    env = {**os.environ, "TILLPAY_DATABASE_URL": "postgresql://tillpay@127.0.0.1:1/tillpay"}
    p = subprocess.run(
        [*TILLPAY, "--json", "backup", str(tmp_path / "x.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 1
    assert json.loads(p.stdout) == {
        "error": "BACKUP_FAILED",
        "message": "postgresql is backed up with pgBackRest, not `tillpay backup` (docs/backup.md)",
    }
    assert not (tmp_path / "x.db").exists()
