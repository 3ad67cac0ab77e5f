"""Hashing of PINs and passwords (scrypt from the standard library; salted, constant-time checked)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# scrypt parameters: N=2**14 takes ~20 ms here, slow enough to hurt guessing, fast enough for a PIN pad.
_N, _R, _P = 2**14, 8, 1


def hash_secret(secret: str) -> str:
    """A salted scrypt hash of a PIN or password, as ``scrypt$N$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(
        [
            "scrypt",
            str(_N),
            str(_R),
            str(_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a hash from :func:`hash_secret`."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode(), salt=base64.b64decode(salt_b64), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


# ----------------------------------------------------------------------------------- the hashing pool


class HashPoolBusy(Exception):
    """Every hashing slot is taken and the queue is full: the caller answers "try again" (HTTP 429)."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


class HashPool:
    """Runs password and PIN hashing on a few worker threads, never on the event loop.

    At most ``threads`` hashes run at once and at most ``queue`` more wait; one more is refused at once
    with :class:`HashPoolBusy`, so a flood of sign-ins costs the attacker a refusal, not the server a
    backlog (the event loop keeps answering payments meanwhile).
    """

    def __init__(self, threads: int = 2, queue: int = 16) -> None:
        self.threads = max(1, threads)
        self.capacity = self.threads + max(0, queue)
        self._executor: ThreadPoolExecutor | None = None
        self._taken = 0

    @property
    def full(self) -> bool:
        """Whether one more hash would be refused now (checked first, so a refusal costs nothing)."""
        return self._taken >= self.capacity

    @property
    def in_use(self) -> int:
        """Hashes running or waiting now."""
        return self._taken

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a hashing thread; HashPoolBusy when the pool is full."""
        if self._taken >= self.capacity:
            raise HashPoolBusy()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="tillpay-hash")
        self._taken += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._taken -= 1

    def close(self) -> None:
        """Stop the threads (after the running hashes finish)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
