"""Terminal heartbeats: what one beat says, and whether a terminal is alive. No I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Beat:
    """One terminal's entry of a heartbeat (Alipay's ``HeartBeatInfo``), as validated text."""

    terminal_id: str
    store_id: str | None = None
    secondary_merchant_id: str | None = None
    equipment_type: str | None = None
    network_type: str | None = None
    action: str | None = None
    scene_code: str | None = None


class Liveness(StrEnum):
    """What the console says about a terminal."""

    ONLINE = "online"
    QUIET = "quiet"  # beat before, but nothing for longer than the quiet threshold
    SIGNED_OFF = "signed off"  # its latest beat said it was turned off (action SIGNOFF)
    NEVER = "never"  # registered, but no heartbeat has arrived yet


def liveness(
    last_seen: datetime | None, action: str | None, now: datetime, quiet_after: timedelta
) -> Liveness:
    """A terminal's state from its latest beat: signed off, gone quiet, online, or never seen."""
    if last_seen is None:
        return Liveness.NEVER
    if (action or "").upper() == "SIGNOFF":
        # A till that said goodbye is not missing: silence after SIGNOFF is expected.
        return Liveness.SIGNED_OFF
    if now - last_seen > quiet_after:
        return Liveness.QUIET
    return Liveness.ONLINE
