"""What another process sees of a SQLite database's writers' turn (``WriterTurn``, store/sqlite_inline.py)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tillpay.store import sqlite_inline


def turn_is_free(path: Path) -> bool:
    """Whether no Tillpay connection has its turn at writing ``path`` (another file descriptor, as
    another process would have, can take the lock beside it at once)."""
    fd = os.open(f"{path}{sqlite_inline.TURN_SUFFIX}", os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)
