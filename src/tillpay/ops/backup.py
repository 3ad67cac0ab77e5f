"""``tillpay backup`` for SQLite: a consistent copy of a live database through SQLite's online backup API.

The copy is taken from one read snapshot (WAL mode lets writers go on meanwhile), checked with
``PRAGMA integrity_check``, and only then renamed into place, so a backup file is either whole or
absent. PostgreSQL is backed up with pgBackRest instead (docs/backup.md).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

#: Pages copied per step: the progress callback runs after each.
STEP_PAGES = 1024


class BackupError(RuntimeError):
    """The backup could not be made; nothing was left at the destination."""


def sqlite_path(database_url: str) -> Path:
    """The file a SQLite URL names; BackupError for other databases or an in-memory one."""
    u = make_url(database_url)
    if not u.drivername.startswith("sqlite"):
        raise BackupError(
            f"{u.drivername} is backed up with pgBackRest, not `tillpay backup` (docs/backup.md)"
        )
    if not u.database or u.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(u.database)


def backup_sqlite(source: Path, dest: Path, progress: Callable[[int, int], None] | None = None) -> int:
    """Copy the live database ``source`` to ``dest``; the number of pages copied."""
    if not source.exists():
        raise BackupError(f"no database at {source}")
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(source, isolation_level=None, timeout=30)
    try:
        # One read snapshot for the whole copy: in WAL mode writers carry on, and the backup never
        # restarts because of them (it would, step after step, under a steady write load otherwise).
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        dst = sqlite3.connect(tmp)
        try:
            total = [0]

            def step(status: int, remaining: int, pages: int) -> None:
                total[0] = pages
                if progress is not None:
                    progress(pages - remaining, pages)

            src.backup(dst, pages=STEP_PAGES, progress=step)
            check = dst.execute("PRAGMA integrity_check").fetchone()
            if check is None or check[0] != "ok":
                raise BackupError(f"the copy failed its integrity check: {check}")
            # The copy keeps the source's WAL mode; a backup file is best as one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup of {source} failed: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(dest)
    return total[0]
