"""Terminal heartbeats: record each terminal's latest beat, and tell the console who has gone quiet.

One row per (merchant, terminal id), updated in place: a beat from a known terminal is one indexed
UPDATE of that terminal's own row (no shared row, no growing table). A beat from a terminal id the
merchant has not reported before inserts its row, up to ``heartbeat_max_terminals`` per merchant, so
a merchant's till (or a leaked key) cannot fill the database with made-up terminal ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.heartbeat import Beat, Liveness, liveness
from tillpay.services import stores
from tillpay.services.platform import Platform
from tillpay.store.stores import StoresRepository


@dataclass(frozen=True, slots=True)
class TerminalHealth:
    """A terminal as the console shows it: registered, heard from, or both."""

    terminal_id: str
    store_id: str | None
    #: The registered name, or None for a terminal known only from its heartbeats.
    name: str | None
    #: ``active`` / ``disabled`` for a registered terminal, None otherwise.
    status: str | None
    last_seen_at: datetime | None
    reported_at: datetime | None
    action: str | None
    network_type: str | None
    equipment_type: str | None
    beats: int
    liveness: Liveness

    @property
    def registered(self) -> bool:
        """Whether the merchant registered this terminal on the Stores page."""
        return self.name is not None


async def record(
    p: Platform,
    merchant_id: int,
    beats: Sequence[Beat],
    reported_at: datetime | None,
    signed_at: datetime | None = None,
) -> None:
    """Record one heartbeat request: all of its terminals, or (on any refusal) none of them.

    ``signed_at`` is the request's time when the digest covers it (the body's ``reqTime``): a terminal's
    beat is recorded only when it is newer than the last one recorded, so a replayed request changes
    nothing; and a terminal that has sent signed times takes no unsigned beat any more.
    """
    now = p.now()
    async with p.unit_of_work() as uow:
        # In terminal-id order, so two requests naming the same terminals lock their rows in the same
        # order on PostgreSQL (no deadlock); the sort is stable, so a repeated id keeps its last entry.
        for beat in sorted(beats, key=lambda b: b.terminal_id):
            await _record_one(p, uow.stores, merchant_id, beat, reported_at, signed_at, now)
        await uow.commit()


async def _record_one(
    p: Platform,
    repo: StoresRepository,
    merchant_id: int,
    beat: Beat,
    reported_at: datetime | None,
    signed_at: datetime | None,
    now: datetime,
) -> None:
    latest: dict[str, Any] = dict(
        store_id=beat.store_id,
        secondary_merchant_id=beat.secondary_merchant_id,
        equipment_type=beat.equipment_type,
        network_type=beat.network_type,
        action=beat.action,
        scene_code=beat.scene_code,
        reported_at=reported_at,
        last_seen_at=now,
    )
    if signed_at is not None:
        latest["signed_at"] = signed_at
    for attempt in range(2):
        if await repo.touch_heartbeat(merchant_id, beat.terminal_id, latest, signed_at):
            return
        if await repo.has_heartbeat(merchant_id, beat.terminal_id):
            if attempt:
                return  # not newer than the beat recorded last: a replay (or late), nothing to record
            continue  # inserted by another server process since our UPDATE: try it once more
        if await repo.heard_from(merchant_id) >= p.settings.heartbeat_max_terminals:
            raise TillpayError(
                Code.ILLEGAL_ARGUMENT,
                f"heartbeats are kept for at most {p.settings.heartbeat_max_terminals} terminals "
                "per merchant; this would be one more",
            )
        if await repo.first_heartbeat(merchant_id, beat.terminal_id, latest, now):
            return
        # Another server process inserted this terminal's row between our UPDATE and INSERT
        # (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers): update the row it made.
    raise TillpayError(Code.SYSTEM_ERROR, "the heartbeat could not be recorded; send it again")


async def terminal_health(p: Platform, merchant_id: int) -> list[TerminalHealth]:
    """Every terminal the merchant registered or heard from, by terminal id, with its liveness."""
    async with p.reader() as reader:
        rows = {r.terminal_id: r for r in await reader.stores.heartbeats(merchant_id)}
    registered = {x.terminal_id: x for x in await stores.list_terminals(p, merchant_id)}
    now = p.now()
    quiet_after = timedelta(seconds=p.settings.heartbeat_quiet_seconds)
    out: list[TerminalHealth] = []
    for tid in sorted(set(rows) | set(registered)):
        r, x = rows.get(tid), registered.get(tid)
        last = r.last_seen_at if r is not None else None
        action = r.action if r is not None else None
        out.append(
            TerminalHealth(
                terminal_id=tid,
                store_id=(x.store_id if x is not None else None) or (r.store_id if r is not None else None),
                name=x.name if x is not None else None,
                status=x.status if x is not None else None,
                last_seen_at=last,
                reported_at=r.reported_at if r is not None else None,
                action=action,
                network_type=r.network_type if r is not None else None,
                equipment_type=r.equipment_type if r is not None else None,
                beats=int(r.beats) if r is not None else 0,
                liveness=liveness(last, action, now, quiet_after),
            )
        )
    return out
