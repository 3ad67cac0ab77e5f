"""Terminal heartbeats as the console sees them, on SQLite and PostgreSQL, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import factories as f
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.heartbeat import Beat, Liveness
from tillpay.services import heartbeats, stores
from tillpay.services.platform import FakeClock, Platform

pytestmark = pytest.mark.anyio
SENT = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


async def states(p: Platform, merchant_id: int) -> dict[str, Liveness]:
    return {h.terminal_id: h.liveness for h in await heartbeats.terminal_health(p, merchant_id)}


async def test_a_terminal_is_flagged_quiet_once_its_last_beat_is_older_than_the_threshold(
    platform: Platform, clock: FakeClock
) -> None:
    m = await f.merchant(platform)
    mid = m.merchant.id
    await stores.add_store(platform, mid, "S-1", "Main Street")
    await stores.add_terminal(platform, mid, "T1", "Front till", "S-1")
    await stores.add_terminal(platform, mid, "T2", "Back till", "S-1")
    await heartbeats.record(platform, mid, [Beat("T1", network_type="LAN"), Beat("T9")], SENT)
    assert await states(platform, mid) == {"T1": "online", "T2": "never", "T9": "online"}
    health = {h.terminal_id: h for h in await heartbeats.terminal_health(platform, mid)}
    assert health["T1"].registered and health["T1"].name == "Front till" and health["T1"].store_id == "S-1"
    assert not health["T9"].registered and health["T9"].name is None  # heard from, never registered
    assert health["T1"].last_seen_at == clock.now() and health["T1"].network_type == "LAN"

    quiet = platform.settings.heartbeat_quiet_seconds
    clock.advance(quiet)  # exactly at the threshold: still online
    assert (await states(platform, mid))["T1"] == "online"
    clock.advance(1)
    assert await states(platform, mid) == {"T1": "quiet", "T2": "never", "T9": "quiet"}

    await heartbeats.record(platform, mid, [Beat("T1")], SENT)  # it comes back
    assert (await states(platform, mid))["T1"] == "online"
    await heartbeats.record(platform, mid, [Beat("T9", action="SIGNOFF")], SENT)
    clock.advance(10 * quiet)
    # Turned off on purpose is not missing; T1 said nothing and is.
    assert await states(platform, mid) == {"T1": "quiet", "T2": "never", "T9": "signed off"}


async def test_a_merchant_sees_only_its_own_terminals_heartbeats(platform: Platform) -> None:
    a, b = await f.merchant(platform), await f.merchant(platform)
    await heartbeats.record(platform, a.merchant.id, [Beat("T1")], SENT)
    await heartbeats.record(platform, b.merchant.id, [Beat("T1"), Beat("T7")], SENT)
    assert set(await states(platform, a.merchant.id)) == {"T1"}
    assert set(await states(platform, b.merchant.id)) == {"T1", "T7"}
    counts = {h.terminal_id: h.beats for h in await heartbeats.terminal_health(platform, a.merchant.id)}
    assert counts == {"T1": 1}


async def test_one_refused_terminal_records_none_of_its_request(platform: Platform) -> None:
    platform.settings.heartbeat_max_terminals = 2
    m = await f.merchant(platform)
    await heartbeats.record(platform, m.merchant.id, [Beat("T1")], SENT)
    with pytest.raises(TillpayError) as e:
        await heartbeats.record(platform, m.merchant.id, [Beat("T1"), Beat("T2"), Beat("T3")], SENT)
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    rows = await heartbeats.terminal_health(platform, m.merchant.id)
    assert [(h.terminal_id, h.beats) for h in rows] == [("T1", 1)]
