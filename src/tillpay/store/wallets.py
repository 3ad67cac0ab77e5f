"""The wallets repository: wallet users, their devices, the browsers those devices are, and sessions.

Reads of a user's devices and sessions are scoped by the user's id here, so another user's device or
session is never found (the wallet app answers it like one that does not exist).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t
from tillpay.store.engine import insert_ignore

_users, _devices, _browsers, _sessions = t.wallet_users, t.devices, t.wallet_browsers, t.wallet_sessions


class WalletsRepository:
    """Wallet users, devices, browsers and sessions over one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_user(self, values: dict[str, Any]) -> int:
        """Insert a wallet user; its id (IntegrityError if the login id is taken)."""
        return int(
            (await self.conn.execute(insert(_users).values(**values).returning(_users.c.id))).scalar_one()
        )

    async def set_user(self, login_id: str, **values: Any) -> bool:
        """Change a wallet user's columns (status, pin_failures); False if there is no such login."""
        res = await self.conn.execute(update(_users).where(_users.c.login_id == login_id).values(**values))
        return res.rowcount == 1

    async def is_sandbox(self, user_id: int) -> bool:
        """Whether the wallet is funded by a sandbox feature (False for no such wallet)."""
        return bool(
            (await self.conn.execute(select(_users.c.sandbox).where(_users.c.id == user_id))).scalar()
        )

    async def mark_sandbox(self, user_id: int) -> None:
        """Mark a wallet as funded by a sandbox feature (its payments are never settled)."""
        await self.conn.execute(update(_users).where(_users.c.id == user_id).values(sandbox=True))

    async def login_of(self, user_id: int) -> str | None:
        """The wallet user's login id, or None."""
        value = (await self.conn.execute(select(_users.c.login_id).where(_users.c.id == user_id))).scalar()
        return None if value is None else str(value)

    async def lock_wallet(self, user_id: int) -> Any:
        """The wallet's row (id, balance, status, currency, login id) locked for a change of its money, or
        None: taken before any payment row, so every use case locks in the same order."""
        return (
            await self.conn.execute(
                select(_users.c.id, _users.c.balance, _users.c.status, _users.c.currency, _users.c.login_id)
                .where(_users.c.id == user_id)
                .with_for_update()
            )
        ).first()

    async def device_by_no(self, device_no: int) -> Any:
        """The device a payment code names (``id``, ``user_id``, ``secret``, ``status``, ``created_at``),
        or None."""
        return (
            await self.conn.execute(
                select(
                    _devices.c.id,
                    _devices.c.user_id,
                    _devices.c.secret,
                    _devices.c.status,
                    _devices.c.created_at,
                ).where(_devices.c.device_no == device_no)
            )
        ).first()

    async def payer(self, user_id: int) -> Any:
        """What a pay needs of the wallet that pays (``currency``, ``login_id``, ``sandbox``), or None."""
        return (
            await self.conn.execute(
                select(_users.c.currency, _users.c.login_id, _users.c.sandbox).where(_users.c.id == user_id)
            )
        ).first()

    async def account(self, user_id: int) -> Any:
        """The wallet's ``balance``, ``currency`` and ``status``."""
        return (
            await self.conn.execute(
                select(_users.c.balance, _users.c.currency, _users.c.status).where(_users.c.id == user_id)
            )
        ).one()

    async def pin_of(self, user_id: int) -> Any:
        """The wallet user's ``pin_hash``, ``login_id`` and ``pin_failures``, or None."""
        return (
            await self.conn.execute(
                select(_users.c.pin_hash, _users.c.login_id, _users.c.pin_failures).where(
                    _users.c.id == user_id
                )
            )
        ).first()

    async def pin_failures(self, user_id: int) -> int:
        """The customer's wrong PINs in a row."""
        return int(
            (
                await self.conn.execute(select(_users.c.pin_failures).where(_users.c.id == user_id))
            ).scalar_one()
        )

    async def set_pin_failures(self, user_id: int, failures: int) -> None:
        """Set the customer's count of wrong PINs in a row."""
        await self.conn.execute(update(_users).where(_users.c.id == user_id).values(pin_failures=failures))

    async def add_device_if_free(self, values: dict[str, Any]) -> Any:
        """Insert a device unless its number is taken; the new device's row, or None."""
        did = (
            await self.conn.execute(
                insert_ignore(self.conn, _devices, "device_no").values(**values).returning(_devices.c.id)
            )
        ).scalar()
        if did is None:
            return None
        return (await self.conn.execute(select(_devices).where(_devices.c.id == did))).one()

    async def devices_of(self, user_id: int) -> list[Any]:
        """The user's device rows, oldest first."""
        return list(
            (
                await self.conn.execute(
                    select(_devices).where(_devices.c.user_id == user_id).order_by(_devices.c.id)
                )
            ).all()
        )

    async def slots_used_at(self, device_id: int, step: int) -> set[int]:
        """The slots of the device's codes used in one minute (``step``)."""
        return {
            int(v)
            for v in (
                await self.conn.execute(
                    select(t.code_uses.c.slot).where(
                        t.code_uses.c.device_id == device_id, t.code_uses.c.step == step
                    )
                )
            ).scalars()
        }

    async def entry_by_ref(self, ref: str) -> int | None:
        """The id of the journal entry with ``ref`` (a top-up's ``topup:<reference>``), or None."""
        value = (
            await self.conn.execute(select(t.journal_entries.c.id).where(t.journal_entries.c.ref == ref))
        ).scalar()
        return int(value) if value is not None else None

    async def entry_credits(self, entry_id: int, account: str, amount: int) -> bool:
        """Whether the entry credits exactly ``amount`` to ``account`` (a top-up repeated as it was)."""
        row = (
            await self.conn.execute(
                select(t.postings.c.id).where(
                    t.postings.c.entry_id == entry_id,
                    t.postings.c.account == account,
                    t.postings.c.amount == amount,
                )
            )
        ).first()
        return row is not None

    async def topups(self, account: str, limit: int) -> list[Any]:
        """The latest top-up entries of a wallet account, newest first (``id``, ``ref``, ``amount``, ``created_at``)."""
        e, ps = t.journal_entries, t.postings
        return list(
            (
                await self.conn.execute(
                    select(e.c.id, e.c.ref, ps.c.amount, e.c.created_at)
                    .join(ps, ps.c.entry_id == e.c.id)
                    .where(e.c.kind == "topup", ps.c.account == account)
                    .order_by(e.c.id.desc())
                    .limit(limit)
                )
            ).all()
        )

    async def user_by_login(self, login_id: str) -> Any:
        """The wallet user row with ``login_id``, or None."""
        return (await self.conn.execute(select(_users).where(_users.c.login_id == login_id))).first()

    async def browser_device(self, token_hash: str, user_id: int) -> int | None:
        """The id of the user's active device that this browser (by its token's hash) is, or None."""
        value = (
            await self.conn.execute(
                select(_devices.c.id)
                .join(_browsers, _browsers.c.device_id == _devices.c.id)
                .where(
                    _browsers.c.token_hash == token_hash,
                    _devices.c.user_id == user_id,
                    _devices.c.status == "active",
                )
            )
        ).scalar()
        return int(value) if value is not None else None

    async def clear_pin_failures(self, user_id: int) -> None:
        """Unlock a PIN locked by wrong PINs (a right password proves the customer)."""
        await self.conn.execute(
            update(_users).where(_users.c.id == user_id, _users.c.pin_failures != 0).values(pin_failures=0)
        )

    async def add_browser(self, device_id: int, token_hash: str, user_agent: str, now: datetime) -> None:
        """Remember that a browser (by its long-lived token's hash) is this device."""
        await self.conn.execute(
            insert(_browsers).values(
                device_id=device_id, token_hash=token_hash, user_agent=user_agent[:256], created_at=now
            )
        )

    async def add_session(
        self,
        token_hash: str,
        user_id: int,
        device_id: int,
        csrf_token: str,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Open a session for a cookie token's hash."""
        await self.conn.execute(
            insert(_sessions).values(
                token_hash=token_hash,
                user_id=user_id,
                device_id=device_id,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=expires_at,
            )
        )

    async def session(self, token_hash: str) -> Any:
        """The session of a cookie token's hash with its user's row and its device, or None."""
        return (
            await self.conn.execute(
                select(
                    _sessions.c.id.label("session_id"),
                    _sessions.c.csrf_token,
                    _sessions.c.expires_at,
                    _users,
                    _devices.c.id.label("device_id"),
                    _devices.c.device_no,
                    _devices.c.secret,
                    _devices.c.name.label("device_name"),
                    _devices.c.status.label("device_status"),
                )
                .join(_users, _users.c.id == _sessions.c.user_id)
                .join(_devices, _devices.c.id == _sessions.c.device_id)
                .where(_sessions.c.token_hash == token_hash)
            )
        ).first()

    async def end_session(self, token_hash: str) -> None:
        """End the session of a cookie token's hash (nothing if there is none)."""
        await self.conn.execute(delete(_sessions).where(_sessions.c.token_hash == token_hash))

    async def devices(self, user_id: int) -> list[Any]:
        """The user's devices, newest first, with the browser each is (``user_agent``; None if none)."""
        return list(
            (
                await self.conn.execute(
                    select(
                        _devices.c.id,
                        _devices.c.device_no,
                        _devices.c.name,
                        _devices.c.status,
                        _devices.c.created_at,
                        _browsers.c.user_agent,
                    )
                    .outerjoin(_browsers, _browsers.c.device_id == _devices.c.id)
                    .where(_devices.c.user_id == user_id)
                    .order_by(_devices.c.id.desc())
                )
            ).all()
        )

    async def revoke_device(self, user_id: int, device_id: int) -> bool:
        """Revoke one of the user's devices and end its sessions; False if the user has no such device."""
        res = await self.conn.execute(
            update(_devices)
            .where(_devices.c.id == device_id, _devices.c.user_id == user_id)
            .values(status="revoked")
        )
        if res.rowcount != 1:
            return False
        await self.conn.execute(delete(_sessions).where(_sessions.c.device_id == device_id))
        return True

    async def used_slots(self, device_id: int, since_step: int) -> list[tuple[int, int]]:
        """The (step, slot) pairs of the device's codes used since ``since_step``, in order."""
        rows = (
            await self.conn.execute(
                select(t.code_uses.c.step, t.code_uses.c.slot).where(
                    t.code_uses.c.device_id == device_id, t.code_uses.c.step >= since_step
                )
            )
        ).all()
        return sorted((int(r.step), int(r.slot)) for r in rows)
