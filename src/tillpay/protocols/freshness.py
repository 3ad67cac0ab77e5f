"""Request freshness: the time a signed request carries must be near the server's clock.

A signed request that leaks (a log, a proxy, a till's disk) could otherwise be replayed for ever. Each
dialect signs a time: Antom's ``request-time`` header, Open Platform's ``timestamp``, MAPI's
``timestamp`` (where the service has one). Tillpay refuses a request whose time is more than
``request_time_tolerance_seconds`` (default 900, ±15 minutes) away from its clock, in either direction.

Forms accepted, as the clients really send them:

- epoch milliseconds (Antom's documented example ``1685599933871``; MAPI cancel and precreate);
- ISO 8601 with an offset (global-open-sdk-python sends ``2024-05-01T08:00:00+00:00``);
- ``yyyy-MM-dd HH:mm:ss`` read as GMT+8 (Open Platform; MAPI precreate on the global pages).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tillpay.protocols import common
from tillpay.services.platform import Platform

_EPOCH_MS = re.compile(r"\d{12,14}")
_BEIJING_TEXT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


def epoch_ms(text: str) -> datetime | None:
    """Epoch milliseconds (12 to 14 digits: 1973 to 5138), or None."""
    if not _EPOCH_MS.fullmatch(text):
        return None
    return datetime.fromtimestamp(int(text) / 1000, UTC)  # float-ok: a time, not money


def beijing_text(text: str) -> datetime | None:
    """``yyyy-MM-dd HH:mm:ss`` in GMT+8, or None."""
    if not _BEIJING_TEXT.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=common.BEIJING)
    except ValueError:
        return None


def iso_with_offset(text: str) -> datetime | None:
    """ISO 8601 with a ``Z`` or ``±hh:mm`` offset, or None (a time without its zone is ambiguous)."""
    if not _ISO.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def is_fresh(p: Platform, sent: datetime) -> bool:
    """Whether ``sent`` is within the tolerance of the server's clock."""
    tolerance = timedelta(seconds=p.settings.request_time_tolerance_seconds)
    return abs(p.now() - sent) <= tolerance


def window_text(p: Platform) -> str:
    """The window in words, for error details."""
    return f"±{p.settings.request_time_tolerance_seconds} seconds"
