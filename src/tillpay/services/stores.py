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

from sqlalchemy.exc import IntegrityError

from tillpay.domain.errors import Code, TillpayError
from tillpay.services.platform import Platform
from tillpay.store.stores import disabled_clause as disabled_clause
from tillpay.store.uow import Repositories

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
    async with p.reader() as r:
        rows = await r.stores.stores(merchant_id)
    return [Store(r.id, r.store_id, r.name, r.status, r.created_at) for r in rows]


async def list_terminals(p: Platform, merchant_id: int) -> list[Terminal]:
    """The merchant's terminals, by id."""
    async with p.reader() as r:
        rows = await r.stores.terminals(merchant_id)
    return [Terminal(r.id, r.terminal_id, r.store_id, r.name, r.status, r.created_at) for r in rows]


async def add_store(p: Platform, merchant_id: int, store_id: str, name: str) -> Store:
    """Register a store; ALREADY_EXISTS if the merchant has one with this id."""
    store_id = store_id.strip()
    _check("store", store_id, name)
    try:
        async with p.unit_of_work() as uow:
            await uow.stores.add_store(merchant_id, store_id, name.strip(), p.now())
            await uow.commit()
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
        async with p.unit_of_work() as uow:
            await uow.stores.add_terminal(merchant_id, terminal_id, store_id, name.strip(), p.now())
            await uow.commit()
    except IntegrityError:
        raise TillpayError(Code.ALREADY_EXISTS, f"terminal {terminal_id!r} exists already") from None
    return next(x for x in await list_terminals(p, merchant_id) if x.terminal_id == terminal_id)


async def set_status(p: Platform, merchant_id: int, kind: str, ident: str, status: str) -> None:
    """Enable (``active``) or disable (``disabled``) one of the merchant's stores or terminals."""
    if status not in ("active", "disabled"):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status is active or disabled")
    async with p.unit_of_work() as uow:
        found = await uow.stores.set_status(merchant_id, kind, ident, status)
        await uow.commit()
    if not found:
        raise TillpayError(Code.NOT_FOUND, f"no {kind} {ident!r}")


async def refuse_if_disabled(
    repos: Repositories, merchant_id: int, store_id: str | None, terminal_id: str | None
) -> None:
    """ILLEGAL_ARGUMENT if the terminal, or the store, of a pay is disabled: one indexed lookup."""
    if not store_id and not terminal_id:
        return
    if await repos.stores.disabled(merchant_id, store_id, terminal_id):
        where = f"terminal {terminal_id}" if terminal_id else f"store {store_id}"
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{where} is disabled in the merchant console")
