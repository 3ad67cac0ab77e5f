"""Sign-in attempts counted and checked atomically, with backoff instead of hard locks.

An attempt is *reserved* before the password is hashed: one transaction checks the recent failures
and inserts the attempt's own failure row (taken back when the password turns out right). On SQLite
the transaction holds the write lock from ``BEGIN IMMEDIATE``; on PostgreSQL it locks the failure
table in EXCLUSIVE mode (plain reads go on). So N concurrent attempts see each other and at most the
allowed number reach the hash, however they are timed.

Past a limit the next attempt waits (``Throttled.retry_after`` seconds) instead of being refused for
the rest of the window, so a stranger's wrong guesses delay a user, they do not shut the user out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tillpay.services.platform import Platform
from tillpay.store.attempts import Book


class Throttled(Exception):
    """Too many recent failures: try again after ``retry_after`` seconds (HTTP 429 + Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"try again in {retry_after} s")
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True, slots=True)
class Limit:
    """``free`` failures in ``window`` pass; then each attempt waits ``base`` after the newest failure,
    doubling per further failure up to ``cap``."""

    free: int
    window: timedelta
    base: timedelta
    cap: timedelta

    def wait(self, failures: int) -> timedelta:
        """How long after the newest failure the next attempt may run (zero while under the limit)."""
        if failures < self.free:
            return timedelta(0)
        wait: timedelta = min(self.base * (2 ** min(failures - self.free, 30)), self.cap)
        return wait


async def reserve(
    p: Platform, book: Book, row: dict[str, Any], checks: list[tuple[dict[str, Any], Limit]]
) -> int:
    """Check every ``(by, limit)`` against ``book``'s recent attempts, then record ``row`` as this
    attempt's failure; returns its id (pass it to :func:`release` when the password was right).

    Raises Throttled (and records nothing) when a limit asks the attempt to wait.
    """
    now = p.now()
    async with p.unit_of_work() as uow:
        await uow.attempts.lock(book)
        retry = 0.0
        for by, limit in checks:
            count, newest = await uow.attempts.recent(book, by, now - limit.window)
            if count >= limit.free and newest is not None:
                retry = max(retry, (newest + limit.wait(count) - now).total_seconds())
        if retry > 0:
            raise Throttled(math.ceil(retry))
        attempt_id = await uow.attempts.add(book, row, now)
        await uow.commit()
    return attempt_id


async def release(p: Platform, book: Book, attempt_id: int, *also: dict[str, Any]) -> None:
    """The attempt succeeded: delete its reserved failure row (and every attempt matching ``also``)."""
    async with p.unit_of_work() as uow:
        await uow.attempts.remove(book, attempt_id, *also)
        await uow.commit()
