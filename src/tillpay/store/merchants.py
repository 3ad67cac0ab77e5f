"""The merchants repository: merchants, their RSA key versions, their test merchants and the per-minute
allowances counted for them (``notify_requests``).

A test merchant is a merchant row whose ``test_of`` names its live merchant (unique: one per live
merchant). Statements about one merchant's keys or allowances are scoped by its id here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t
from tillpay.store import windows

_m = t.merchants
_k = t.merchant_keys
_r = t.notify_requests

#: The columns a merchant may be found by besides its partner id.
CREDENTIALS = ("app_id", "client_id")


class MerchantsRepository:
    """Merchants, their key versions and allowances."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # Merchants.

    async def by_partner(self, partner_id: str) -> Any:
        """The merchant's row, or None."""
        return (await self.conn.execute(select(_m).where(_m.c.partner_id == partner_id))).first()

    async def partner_by_credential(self, column: str, value: str) -> str | None:
        """The partner id of the merchant whose ``app_id`` or ``client_id`` is ``value``, or None."""
        if column not in CREDENTIALS:
            raise ValueError(f"not a merchant credential column: {column!r}")
        partner: str | None = (
            await self.conn.execute(select(_m.c.partner_id).where(_m.c[column] == value))
        ).scalar()
        return partner

    async def partner_of(self, merchant_id: int) -> str:
        """The partner id of the merchant with this id (it must exist)."""
        return str(
            (await self.conn.execute(select(_m.c.partner_id).where(_m.c.id == merchant_id))).scalar_one()
        )

    async def risk_facts(self, merchant_id: int) -> Any:
        """The merchant's ``partner_id``, ``mcc`` and ``status`` (what the risk rules look at)."""
        return (
            await self.conn.execute(
                select(_m.c.partner_id, _m.c.mcc, _m.c.status).where(_m.c.id == merchant_id)
            )
        ).one()

    async def partner_ids(self) -> list[str]:
        """Every merchant's partner id, oldest merchant first."""
        return list((await self.conn.execute(select(_m.c.partner_id).order_by(_m.c.id))).scalars().all())

    async def test_merchant_of(self, live_id: int) -> str | None:
        """The partner id of the live merchant's test merchant, or None if it has none yet."""
        partner: str | None = (
            await self.conn.execute(select(_m.c.partner_id).where(_m.c.test_of == live_id))
        ).scalar()
        return partner

    async def add(self, values: dict[str, Any]) -> int:
        """Insert a merchant; its id (IntegrityError if the partner id or ``test_of`` is taken)."""
        return int((await self.conn.execute(insert(_m).values(**values).returning(_m.c.id))).scalar_one())

    async def lock(self, merchant_id: int) -> None:
        """Lock the merchant's row until the transaction ends (PostgreSQL; SQLite has one writer)."""
        await self.conn.execute(select(_m.c.id).where(_m.c.id == merchant_id).with_for_update())

    async def set_status(self, partner_id: str, status: str) -> bool:
        """Set the merchant's status; False if there is no such merchant."""
        res = await self.conn.execute(update(_m).where(_m.c.partner_id == partner_id).values(status=status))
        return res.rowcount == 1

    async def set_sign_types(self, partner_id: str, sign_types: str | None) -> bool:
        """Set the merchant's allowed sign types (comma-separated; None: all); False if no such merchant."""
        res = await self.conn.execute(
            update(_m).where(_m.c.partner_id == partner_id).values(sign_types=sign_types)
        )
        return res.rowcount == 1

    async def set_md5_key(
        self, merchant_id: int, key: str, previous: str | None, previous_until: datetime | None
    ) -> None:
        """Set the merchant's MD5 key and the previous one still accepted until ``previous_until``."""
        await self.conn.execute(
            update(_m)
            .where(_m.c.id == merchant_id)
            .values(md5_key=key, md5_key_previous=previous, md5_key_previous_until=previous_until)
        )

    async def set_public_key(self, merchant_id: int, public_key: str) -> None:
        """Set the merchant's current RSA public key."""
        await self.conn.execute(update(_m).where(_m.c.id == merchant_id).values(public_key=public_key))

    async def set_notify_url(self, merchant_id: int, url: str | None) -> None:
        """Change (or clear, None) the merchant's default notify URL."""
        await self.conn.execute(update(_m).where(_m.c.id == merchant_id).values(notify_url=url))

    # Test merchants.

    async def test_mark(self, merchant_id: int) -> tuple[bool, int]:
        """(is a test merchant, its clock offset in seconds) of the merchant with this id."""
        row = (
            await self.conn.execute(
                select(_m.c.test_of, _m.c.clock_offset_seconds).where(_m.c.id == merchant_id)
            )
        ).one()
        return row.test_of is not None, int(row.clock_offset_seconds)

    async def clocks_ahead(self, merchant_id: int | None = None) -> list[tuple[int, int]]:
        """(merchant id, seconds ahead) of the merchants (or the one given) whose test clock is ahead."""
        q = select(_m.c.id, _m.c.clock_offset_seconds).where(_m.c.clock_offset_seconds > 0)
        if merchant_id is not None:
            q = q.where(_m.c.id == merchant_id)
        return [(int(i), int(s)) for i, s in (await self.conn.execute(q)).all()]

    async def advance_test_clock(self, merchant_id: int, seconds: int) -> None:
        """Move a test merchant's clock forward, added in the database (two moves at once both count);
        never a live merchant's."""
        await self.conn.execute(
            update(_m)
            .where(_m.c.id == merchant_id, _m.c.test_of.is_not(None))
            .values(clock_offset_seconds=_m.c.clock_offset_seconds + seconds)
        )

    # Key versions (Antom ``keyVersion``).

    async def add_key(self, merchant_id: int, version: int, public_key: str, now: datetime) -> None:
        """Insert a key version of the merchant."""
        await self.conn.execute(
            insert(_k).values(
                merchant_id=merchant_id, key_version=version, public_key=public_key, created_at=now
            )
        )

    async def latest_key_version(self, merchant_id: int) -> int | None:
        """The merchant's highest key version, or None if it has none."""
        latest: int | None = (
            await self.conn.execute(select(func.max(_k.c.key_version)).where(_k.c.merchant_id == merchant_id))
        ).scalar()
        return latest

    async def expire_keys_before(self, merchant_id: int, version: int, until: datetime) -> None:
        """Let the merchant's unrevoked keys older than ``version`` verify until ``until`` at the latest."""
        k = _k.c
        await self.conn.execute(
            update(_k)
            .where(
                k.merchant_id == merchant_id,
                k.key_version < version,
                k.revoked_at.is_(None),
                or_(k.expires_at.is_(None), k.expires_at > until),
            )
            .values(expires_at=until)
        )

    async def revoke_key(self, merchant_id: int, version: int, now: datetime) -> None:
        """Revoke one of the merchant's key versions (if not revoked already)."""
        k = _k.c
        await self.conn.execute(
            update(_k)
            .where(k.merchant_id == merchant_id, k.key_version == version, k.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def key_versions(self, merchant_id: int) -> list[Any]:
        """The merchant's key versions (version, created, expires, revoked), newest first."""
        k = _k.c
        return list(
            (
                await self.conn.execute(
                    select(k.key_version, k.created_at, k.expires_at, k.revoked_at)
                    .where(k.merchant_id == merchant_id)
                    .order_by(k.key_version.desc())
                )
            ).all()
        )

    async def usable_key(self, merchant_id: int, version: int | None, now: datetime) -> str | None:
        """The public key of the merchant's key ``version`` (None: the latest) that is neither revoked nor
        expired at ``now``, or None."""
        k = _k.c
        q = select(k.public_key).where(
            k.merchant_id == merchant_id,
            k.revoked_at.is_(None),
            or_(k.expires_at.is_(None), k.expires_at > now),
        )
        if version is None:
            q = q.order_by(k.key_version.desc()).limit(1)
        else:
            q = q.where(k.key_version == version)
        key: str | None = (await self.conn.execute(q)).scalar()
        return key

    # Allowances: requests counted per merchant and action in a one-minute window (store/windows.py).

    async def lock_allowances(self) -> None:
        """Make concurrent counts of allowances wait for each other (PostgreSQL; SQLite's BEGIN
        IMMEDIATE already did)."""
        await windows.lock_table(self.conn, _r)

    async def allowance_used(self, merchant_id: int, action: str, since: datetime) -> windows.Window:
        """The merchant's requests of ``action`` after ``since``."""
        mine = (_r.c.merchant_id == merchant_id) & (_r.c.action == action)
        return await windows.count(self.conn, _r.c.created_at, mine, since)

    async def use_allowance(self, merchant_id: int, action: str, now: datetime, since: datetime) -> None:
        """Record a request of ``action``, and forget the merchant's requests at or before ``since``."""
        await self.conn.execute(insert(_r).values(merchant_id=merchant_id, action=action, created_at=now))
        # What has left the window is never counted again: the table holds a window's requests at most.
        await self.conn.execute(delete(_r).where(_r.c.merchant_id == merchant_id, _r.c.created_at <= since))
