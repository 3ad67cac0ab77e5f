"""The customer-presented payment code: an 18-digit, time-based one-time code.

Layout: ``"28"`` + device number (8 digits) + slot (1 digit) + OTP (7 digits). The OTP is
RFC 4226 HOTP (HMAC-SHA1, dynamic truncation) over the 8-byte big-endian counter
``step * 10 + slot`` modulo 10**7, where ``step = unix_seconds // 60``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEVICE_DIGITS",
    "LENGTH",
    "MAX_DEVICE_NO",
    "OTP_DIGITS",
    "PREFIX",
    "SLOTS",
    "TIME_STEP",
    "MalformedCode",
    "ParsedCode",
    "generate",
    "looks_like_alipay_code",
    "match_step",
    "parse",
    "step_at",
]

# Alipay payment codes start 25..30; we use 28 so scanners and acquirers route them as Alipay codes.
PREFIX: Final = "28"
LENGTH: Final = 18
TIME_STEP: Final = 60
DEVICE_DIGITS: Final = 8
MAX_DEVICE_NO: Final = 10**DEVICE_DIGITS - 1
SLOTS: Final = 10
OTP_DIGITS: Final = 7

_DEVICE_START: Final = len(PREFIX)
_SLOT_INDEX: Final = _DEVICE_START + DEVICE_DIGITS
_OTP_START: Final = _SLOT_INDEX + 1
# The HOTP counter is a big-endian unsigned 64-bit integer (RFC 4226 section 5.1).
_MAX_COUNTER: Final = 2**64 - 1


class MalformedCode(ValueError):
    """The text is not a well-formed tillpay payment code."""


@dataclass(frozen=True, slots=True)
class ParsedCode:
    """The fields of a syntactically valid payment code."""

    device_no: int
    slot: int
    otp: str


def step_at(unix_seconds: int) -> int:
    """Return the time step (minute number since the Unix epoch) containing `unix_seconds`."""
    return unix_seconds // TIME_STEP


def _otp(secret: bytes, step: int, slot: int) -> str:
    counter = step * SLOTS + slot
    if not 0 <= counter <= _MAX_COUNTER:
        raise ValueError(f"time outside the HOTP counter range: step {step}")
    digest = hmac.new(secret, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    # RFC 4226 section 5.3 dynamic truncation: low nibble of the last byte picks a 31-bit window.
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 10**OTP_DIGITS:0{OTP_DIGITS}d}"


def generate(secret: bytes, device_no: int, unix_seconds: int, slot: int = 0) -> str:
    """Return the 18-digit payment code for a device at a moment and slot."""
    if not secret:
        raise ValueError("secret must not be empty")
    if not 0 <= device_no <= MAX_DEVICE_NO:
        raise ValueError(f"device_no out of range 0..{MAX_DEVICE_NO}: {device_no}")
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot out of range 0..{SLOTS - 1}: {slot}")
    otp = _otp(secret, step_at(unix_seconds), slot)
    return f"{PREFIX}{device_no:0{DEVICE_DIGITS}d}{slot}{otp}"


def parse(code: str) -> ParsedCode:
    """Split a payment code into its fields, raising MalformedCode unless it is 18 digits starting "28"."""
    if not isinstance(code, str) or len(code) != LENGTH:
        raise MalformedCode(f"payment code must be {LENGTH} characters")
    # isascii() first: str.isdigit() alone accepts full-width and other non-ASCII digits.
    if not (code.isascii() and code.isdigit()):
        raise MalformedCode("payment code must be ASCII digits")
    if not code.startswith(PREFIX):
        raise MalformedCode(f"payment code must start with {PREFIX}")
    return ParsedCode(
        device_no=int(code[_DEVICE_START:_SLOT_INDEX]),
        slot=int(code[_SLOT_INDEX]),
        otp=code[_OTP_START:],
    )


def looks_like_alipay_code(code: str) -> bool:
    """Return whether text matches Alipay's general payment-code shape: 16-24 digits starting 25..30."""
    return (
        isinstance(code, str)
        and 16 <= len(code) <= 24
        and code.isascii()
        and code.isdigit()
        and 25 <= int(code[:2]) <= 30
    )


def match_step(
    secret: bytes, parsed: ParsedCode, now_unix: int, back: int = 2, forward: int = 1
) -> int | None:
    """Return the step within [now-back, now+forward] whose OTP matches the code, else None."""
    if back < 0 or forward < 0:
        raise ValueError("back and forward must be non-negative")
    if not 0 <= parsed.slot < SLOTS:
        return None
    now_step = step_at(now_unix)
    # Nearest-to-now first so that, in the rare event two steps collide, the likelier one wins.
    candidates: list[int] = [
        now_step,
        *range(now_step - 1, now_step - back - 1, -1),
        *range(now_step + 1, now_step + forward + 1),
    ]
    for step in candidates:
        if not 0 <= step * SLOTS + parsed.slot <= _MAX_COUNTER:
            continue
        # Bytes, because compare_digest raises on non-ASCII str and ParsedCode can be built by hand.
        if hmac.compare_digest(_otp(secret, step, parsed.slot).encode(), parsed.otp.encode()):
            return step
    return None
