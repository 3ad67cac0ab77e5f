"""A merchant's stores and terminals: the ids its tills send, named, and switched off when needed.

Payments carry the ``store_id`` and ``terminal_id`` the till sent (MAPI ``extend_info``, Open Platform
``store_id``/``terminal_id``); registering them is optional. Disabling one is a stop sign for the pay
path: a pay from a disabled terminal, or from any terminal of a disabled store, is refused with
ILLEGAL_ARGUMENT before anything is recorded (refunds, queries and cancels keep working, so a disabled
till's open business can still be wound up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tillpay.domain.errors import Code, TillpayError
from tillpay.services.platform import Platform
from tillpay.store import tables as t

ID_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Store:
    """A registered store."""

    id: int
    store_id: str
    name: str
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Terminal:
    """A registered terminal (till) and the store it stands in, if known."""

    id: int
    terminal_id: str
    store_id: str | None
    name: str
    status: str
    created_at: datetime


def _check(kind: str, value: str, name: str) -> None:
    if not ID_RE.match(value):
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT, f"a {kind} id is 1-64 letters, digits or . _ : / - (as the till sends it)"
        )
    if not name.strip() or len(name) > 128:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"a {kind} needs a name of at most 128 characters")


async def list_stores(p: Platform, merchant_id: int) -> list[Store]:
    """The merchant's stores, by id."""
    s = t.stores
    async with p.engine.connect() as conn:
        rows = (
            await conn.execute(select(s).where(s.c.merchant_id == merchant_id).order_by(s.c.store_id))
        ).all()
    return [Store(r.id, r.store_id, r.name, r.status, r.created_at) for r in rows]


async def list_terminals(p: Platform, merchant_id: int) -> list[Terminal]:
    """The merchant's terminals, by id."""
    x = t.terminals
    async with p.engine.connect() as conn:
        rows = (
            await conn.execute(select(x).where(x.c.merchant_id == merchant_id).order_by(x.c.terminal_id))
        ).all()
    return [Terminal(r.id, r.terminal_id, r.store_id, r.name, r.status, r.created_at) for r in rows]


async def add_store(p: Platform, merchant_id: int, store_id: str, name: str) -> Store:
    """Register a store; ALREADY_EXISTS if the merchant has one with this id."""
    store_id = store_id.strip()
    _check("store", store_id, name)
    try:
        async with p.engine.begin() as conn:
            await conn.execute(
                insert(t.stores).values(
                    merchant_id=merchant_id,
                    store_id=store_id,
                    name=name.strip(),
                    status="active",
                    created_at=p.now(),
                )
            )
    except IntegrityError:
        raise TillpayError(Code.ALREADY_EXISTS, f"store {store_id!r} exists already") from None
    return next(s for s in await list_stores(p, merchant_id) if s.store_id == store_id)


async def add_terminal(
    p: Platform, merchant_id: int, terminal_id: str, name: str, store_id: str | None = None
) -> Terminal:
    """Register a terminal (in one of the merchant's stores, if given); ALREADY_EXISTS if it exists."""
    terminal_id = terminal_id.strip()
    store_id = (store_id or "").strip() or None
    _check("terminal", terminal_id, name)
    if store_id is not None and store_id not in {s.store_id for s in await list_stores(p, merchant_id)}:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"no store {store_id!r}: add the store first")
    try:
        async with p.engine.begin() as conn:
            await conn.execute(
                insert(t.terminals).values(
                    merchant_id=merchant_id,
                    terminal_id=terminal_id,
                    store_id=store_id,
                    name=name.strip(),
                    status="active",
                    created_at=p.now(),
                )
            )
    except IntegrityError:
        raise TillpayError(Code.ALREADY_EXISTS, f"terminal {terminal_id!r} exists already") from None
    return next(x for x in await list_terminals(p, merchant_id) if x.terminal_id == terminal_id)


async def set_status(p: Platform, merchant_id: int, kind: str, ident: str, status: str) -> None:
    """Enable (``active``) or disable (``disabled``) one of the merchant's stores or terminals."""
    if status not in ("active", "disabled"):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status is active or disabled")
    table, column = (
        (t.stores, t.stores.c.store_id) if kind == "store" else (t.terminals, t.terminals.c.terminal_id)
    )
    async with p.engine.begin() as conn:
        res = await conn.execute(
            update(table).where(table.c.merchant_id == merchant_id, column == ident).values(status=status)
        )
    if res.rowcount != 1:
        raise TillpayError(Code.NOT_FOUND, f"no {kind} {ident!r}")


def disabled_clause(merchant_id: Any, store_id: Any, terminal_id: Any) -> ColumnElement[bool]:
    """True when the terminal, any store it is registered in, or the store is disabled.

    The arguments are values or bind parameters (the pay path's one-statement read uses the latter); a
    NULL store or terminal id matches nothing.
    """
    x, st = t.terminals, t.stores
    return or_(
        exists().where(
            x.c.merchant_id == merchant_id, x.c.terminal_id == terminal_id, x.c.status == "disabled"
        ),
        # A terminal registered in a disabled store is off too, even when the till omits the store id.
        exists().where(
            x.c.merchant_id == merchant_id,
            x.c.terminal_id == terminal_id,
            st.c.merchant_id == merchant_id,
            st.c.store_id == x.c.store_id,
            st.c.status == "disabled",
        ),
        exists().where(st.c.merchant_id == merchant_id, st.c.store_id == store_id, st.c.status == "disabled"),
    )


async def refuse_if_disabled(
    conn: AsyncConnection, merchant_id: int, store_id: str | None, terminal_id: str | None
) -> None:
    """ILLEGAL_ARGUMENT if the terminal, or the store, of a pay is disabled: one indexed lookup."""
    if not store_id and not terminal_id:
        return
    if (await conn.execute(select(disabled_clause(merchant_id, store_id, terminal_id)))).scalar():
        where = f"terminal {terminal_id}" if terminal_id else f"store {store_id}"
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{where} is disabled in the merchant console")
