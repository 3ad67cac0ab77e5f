"""SQLite on a full disk under a pay load: the database lives on a small tmpfs of the test's own; a file
fills it to the last byte while ``tillpay serve`` takes pays, then is deleted.

Clients must get an answer meanwhile (an error or ``UNKNOW``, never a hang and never a ``SUCCESS`` that is
not kept), the database must pass ``PRAGMA integrity_check``, pays must succeed again once there is room,
and the four checks hold. Needs root (``mount``); the file system is unmounted whatever happens.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import Load, Proc, assert_clean, check, free_port, prepare, record


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MB tmpfs mounted for the test alone."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode != 0:
            # Still held (a process of a failed run): detached now, freed when the last user goes.
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path: Path) -> int:
    """Write ``path`` until the file system has no byte left; how many bytes it took."""
    written = 0
    block = b"\0" * (1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                n = os.write(fd, block if len(block) > 1 else b"\0")
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(block) == 1:
                    return written
                block = block[: len(block) // 2]  # the last scraps, down to one byte
                continue
            written += n
    finally:
        os.close(fd)


@pytest.mark.slow
def test_sqlite_on_a_full_disk_answers_errors_stays_intact_and_resumes(small_disk: Path) -> None:
    db = small_disk / "tillpay.db"
    shop = prepare(f"sqlite:///{db}", users=300)
    server = Proc(shop.db_url, "serve", port=free_port())
    load = Load(shop, server.url, prefix="DF").start()
    filler = small_disk / "filler"
    try:
        load.wait_for_successes(20)
        filled_at = time.monotonic()
        filled = fill(filler)
        assert os.statvfs(small_disk).f_bavail == 0
        # The WAL reuses its own space for a while; once it must grow, writes fail.
        deadline = time.monotonic() + 90
        while not any(
            o.kind in ("unknown", "error", "failed") and o.started >= filled_at for o in load.outcomes
        ):
            assert time.monotonic() < deadline, f"no pay failed on a full disk: {load.summary()}"
            time.sleep(0.1)
        full_errors_at = time.monotonic()
        time.sleep(2)  # the load keeps meeting the full disk
        during = [o for o in list(load.outcomes) if o.started >= full_errors_at]
        filler.unlink()
        freed_at = time.monotonic()
        load.wait_for_successes(20, after=freed_at, timeout=60)
        load.stop()
        # The four checks while the worker still runs: it closes the last pays that wait past their timeout.
        result = check(shop, load)
        server_log = Path(server.log.name).read_text(errors="replace")
    finally:
        load.stop()
        server.stop()

    # While the disk was full nothing succeeded that was not written (check's "lost"), and answers came.
    assert during and {o.kind for o in during} <= {"unknown", "error", "failed", "waiting", "success"}
    assert any(o.kind != "success" for o in during)
    # The operator's log names the cause.
    assert "database or disk is full" in server_log
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    result["filler_bytes"] = filled
    result["answers_while_full"] = {k: sum(o.kind == k for o in during) for k in {o.kind for o in during}}
    assert_clean(result)
    record(
        "sqlite_disk_full", "SQLite on a full tmpfs, then room again", load.recovery_seconds(freed_at), result
    )
