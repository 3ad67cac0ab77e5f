"""The console users repository: merchant console users and their sessions.

A user row is always read with its merchant's partner id and name (``partner_id``, ``merchant_name``);
a session row adds the session's columns and, when the user's merchant has a test merchant, that test
merchant's id, partner id and name (``test_id``, ``test_partner_id``, ``test_name``). Changing a user
takes the merchant's id, so one merchant never changes another's users.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store import tables as t

_u, _s, _m = t.console_users, t.console_sessions, t.merchants


def _users() -> Select[Any]:
    return select(_u, _m.c.partner_id, _m.c.name.label("merchant_name")).join(_m, _m.c.id == _u.c.merchant_id)


class ConsoleUsersRepository:
    """Console users and sessions."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add_user(
        self, merchant_id: int, login: str, name: str, role: str, password_hash: str, now: datetime
    ) -> None:
        """Insert an active user (IntegrityError if the login is taken)."""
        await self.conn.execute(
            insert(_u).values(
                merchant_id=merchant_id,
                login=login,
                name=name,
                role=role,
                password_hash=password_hash,
                status="active",
                created_at=now,
            )
        )

    async def by_login(self, login: str) -> Any:
        """The user with this login (with its merchant's partner id and name), or None."""
        return (await self.conn.execute(_users().where(_u.c.login == login))).first()

    async def users_of(self, merchant_id: int) -> list[Any]:
        """The merchant's users, oldest first."""
        return list(
            (await self.conn.execute(_users().where(_u.c.merchant_id == merchant_id).order_by(_u.c.id))).all()
        )

    async def set_status(self, merchant_id: int, user_id: int, status: str) -> bool:
        """Set the status of one of the merchant's users; False if the merchant has no such user."""
        res = await self.conn.execute(
            update(_u).where(_u.c.id == user_id, _u.c.merchant_id == merchant_id).values(status=status)
        )
        return res.rowcount == 1

    async def end_sessions_of(self, user_id: int) -> None:
        """Delete every session of the user."""
        await self.conn.execute(delete(_s).where(_s.c.user_id == user_id))

    async def add_session(
        self, token_hash: str, user_id: int, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Insert a session, seen now."""
        await self.conn.execute(
            insert(_s).values(
                token_hash=token_hash,
                user_id=user_id,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=expires_at,
                last_seen_at=now,
            )
        )

    async def session(self, token_hash: str) -> Any:
        """The session with this token hash, with its user, merchant and test merchant; or None."""
        tm = _m.alias("test_merchant")
        return (
            await self.conn.execute(
                _users()
                .add_columns(
                    _s.c.id.label("session_id"),
                    _s.c.csrf_token,
                    _s.c.expires_at,
                    _s.c.last_seen_at,
                    _s.c.test_mode,
                    tm.c.id.label("test_id"),
                    tm.c.partner_id.label("test_partner_id"),
                    tm.c.name.label("test_name"),
                )
                .join(_s, _s.c.user_id == _u.c.id)
                .outerjoin(tm, tm.c.test_of == _u.c.merchant_id)
                .where(_s.c.token_hash == token_hash)
            )
        ).first()

    async def touch_session(self, session_id: int, now: datetime) -> None:
        """Record that the session was used at ``now``."""
        await self.conn.execute(update(_s).where(_s.c.id == session_id).values(last_seen_at=now))

    async def set_test_mode(self, session_id: int, test: bool) -> None:
        """Switch the session to test data or back to live data."""
        await self.conn.execute(update(_s).where(_s.c.id == session_id).values(test_mode=test))

    async def end_session(self, token_hash: str) -> None:
        """Delete the session with this token hash."""
        await self.conn.execute(delete(_s).where(_s.c.token_hash == token_hash))
