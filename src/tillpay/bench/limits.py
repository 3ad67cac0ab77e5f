"""This machine's limits, measured in the same run as the pays: RSA-2048 signatures per second with the
library Tillpay signs with (``cryptography``), on one core and on all of them at once."""

from __future__ import annotations

import multiprocessing
import os
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: A MAPI pay response's string-to-sign is about this long.
_MESSAGE = b"alipay_buyer_login_id=ben***@bench.test&alipay_trans_id=" + b"2" * 28 + b"&" * 400


def _signs(seconds: float) -> int:  # float-ok: seconds
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = 0
    pad, sha = padding.PKCS1v15(), hashes.SHA256()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        key.sign(_MESSAGE, pad, sha)
        n += 1
    return n


def rsa_signs_per_second(seconds: float = 2.0) -> tuple[float, float]:  # float-ok: seconds, rates
    """(signs/s on one core, signs/s on every core at once)."""
    one = _signs(seconds) / seconds
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        total = sum(pool.map(_signs, [seconds] * cores)) / seconds
    return one, total
