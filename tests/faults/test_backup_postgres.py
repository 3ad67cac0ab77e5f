"""pgBackRest on a PostgreSQL server of the test's own: a full backup and the WAL archive, then the
point-in-time restore of docs/backup.md to a moment between two rounds of writes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from faultkit import TILLPAY, Load, Proc, SoloPostgres, free_port, prepare

TABLES = ("payments", "journal_entries", "postings", "wallet_users", "code_uses")
STANZA = "tillpay"


class ArchivedPostgres(SoloPostgres):
    """A server whose WAL pgBackRest archives, with a repository of its own (docs/backup.md, step 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conf = self.dir / "pgbackrest.conf"
        self.conf.write_text(
            "[global]\n"
            f"repo1-path={self.dir / 'repo'}\n"
            "repo1-retention-full=2\n"
            f"log-path={self.dir / 'pgbr-log'}\n"
            f"lock-path={self.dir / 'pgbr-lock'}\n"
            "start-fast=y\n"
            "log-level-console=warn\n"
            f"[{STANZA}]\n"
            f"pg1-path={self.data}\n"
            f"pg1-port={self.port}\n"
            f"pg1-socket-path={self.dir}\n"
        )
        for d in ("repo", "pgbr-log", "pgbr-lock"):
            (self.dir / d).mkdir()
        subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                "wal_level = replica\narchive_mode = on\n"
                f"archive_command = 'pgbackrest --config={self.conf} --stanza={STANZA} archive-push %p'\n"
            )
        self.stop()
        self.start()
        self.pgbackrest("stanza-create")
        self.pgbackrest("check")

    def stop(self) -> None:
        self._pg(str(self.pg_ctl), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def pg_ctl(self) -> Path:
        from tillpay.ops.ha import PG_BIN

        return PG_BIN / "pg_ctl"

    def pgbackrest(self, *args: str) -> str:
        p = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "pgbackrest",
                f"--config={self.conf}",
                f"--stanza={STANZA}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert p.returncode == 0, f"pgbackrest {args[0]} failed: {p.stdout} {p.stderr}"
        return p.stdout


@pytest.fixture
def archived_pg() -> Iterator[ArchivedPostgres]:
    pg = ArchivedPostgres()
    try:
        yield pg
    finally:
        pg.destroy()


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.faults_long
def test_point_in_time_restore_brings_back_exactly_the_moment_chosen(archived_pg: ArchivedPostgres) -> None:
    pg = archived_pg
    shop = prepare(pg.url, users=100)
    pg.pgbackrest("backup", "--type=full")
    # Pays after the backup: only the WAL archive holds them.
    server = Proc(pg.url, "serve", port=free_port())
    load = Load(shop, server.url, prefix="PITR").start()
    try:
        load.wait_for_successes(20)
    finally:
        load.stop()
        server.stop()
    wanted = _counts(pg.url)
    with psycopg.connect(pg.url) as conn:
        # pgBackRest's time format: YYYY-MM-DD HH:MM:SS[.mmm][+HH].
        target = conn.execute(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') || '+00'"
        ).fetchone()[0]  # type: ignore[index]
    time.sleep(1.1)
    # Then writes after the chosen moment (a top-up), which the restore must leave out.
    env = {**os.environ, "TILLPAY_DATABASE_URL": pg.url}
    for i in range(2):
        subprocess.run(
            [
                *TILLPAY,
                "wallet",
                "topup",
                "--login",
                "bench0000001@bench.test",
                "--amount",
                "5.00",
                "--reference",
                f"after-{i}",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    later = _counts(pg.url)
    assert later["journal_entries"] == wanted["journal_entries"] + 2
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")
    pg.pgbackrest("check")  # waits until the switched WAL segment is in the archive

    # docs/backup.md, point-in-time restore: stop, restore to the moment, start.
    pg.stop()
    pg.pgbackrest("restore", "--delta", "--type=time", f"--target={target}", "--target-action=promote")
    pg.start()
    assert _counts(pg.url) == wanted
    audit = subprocess.run(
        [*TILLPAY, "audit"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
