"""Secondary merchants and their stores, as an acquirer or ISV (a Tillpay merchant) registers them.

Everything here is scoped by the registering merchant's id: one partner never reads or changes another
partner's secondary merchants, even under the same ``secondary_merchant_id``. A registration is accepted
at once (Tillpay is the acquirer and has no review queue); the operator can disable a secondary merchant
or one of its stores (``tillpay merchant secondary disable``), and then pays naming it are refused. A
later registration updates the fields but never re-enables what the operator disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.secmerchant import Registered, Registration
from tillpay.services.platform import Platform
from tillpay.store.secmerchants import registered_columns as registered_columns
from tillpay.store.uow import Repositories

#: Registration field → ``secondary_merchants`` column (the rest of the store's fields keep their names).
_MERCHANT_COLUMNS = {
    "secondary_merchant_name": "name",
    "secondary_merchant_type": "merchant_type",
    "registration_no": "registration_no",
    "register_country": "register_country",
    "register_address": "register_address",
    "shareholder_name": "shareholder_name",
    "shareholder_id": "shareholder_id",
    "representative_name": "representative_name",
    "representative_id": "representative_id",
    "settlement_no": "settlement_no",
    "contact_no": "contact_no",
    "contact_email": "contact_email",
    "cs_no": "cs_no",
    "cs_email": "cs_email",
}
_STORE_COLUMNS = (
    "store_name",
    "store_country",
    "store_address",
    "store_industry",
    "internal_store_photo",
    "external_storefront_photo",
    "extend_params",
)


@dataclass(frozen=True, slots=True)
class SecondaryStore:
    """A registered store of a secondary merchant."""

    store_id: str
    name: str
    country: str
    address: str
    industry: str
    status: str
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SecondaryMerchant:
    """A registered secondary merchant and its stores."""

    secondary_merchant_id: str
    name: str
    merchant_type: str | None
    register_country: str | None
    status: str
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime
    stores: tuple[SecondaryStore, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (``--json`` output)."""
        return {
            "secondary_merchant_id": self.secondary_merchant_id,
            "name": self.name,
            "type": self.merchant_type,
            "register_country": self.register_country,
            "status": self.status,
            "reject_reason": self.reject_reason,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "stores": [
                {
                    "store_id": s.store_id,
                    "name": s.name,
                    "country": s.country,
                    "address": s.address,
                    "industry": s.industry,
                    "status": s.status,
                    "reject_reason": s.reject_reason,
                    "created_at": s.created_at.isoformat(),
                    "updated_at": s.updated_at.isoformat(),
                }
                for s in self.stores
            ],
        }


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The registration status of one store, as ``queryStatus`` reports it."""

    secondary_merchant_id: str
    store_id: str
    active: bool
    reject_reason: str | None


@dataclass(frozen=True, slots=True)
class MaintainResult:
    """What a registration did: created the store, changed stored fields, or neither (a repeat)."""

    created: bool
    changed: bool
    status: StoreStatus


async def maintain(p: Platform, merchant_id: int, reg: Registration) -> MaintainResult:
    """Register or update a secondary merchant and one of its stores; a repeat changes nothing."""
    reg.check()
    now = p.now()
    merchant_values = {col: getattr(reg, field) for field, col in _MERCHANT_COLUMNS.items()}
    store_values = {col: getattr(reg, col) for col in _STORE_COLUMNS}
    smid, store_id = reg.secondary_merchant_id, reg.store_id
    async with p.unit_of_work() as uow:
        repo = uow.secondary
        # Insert-if-absent first, so that two first registrations racing each other both end in one row.
        await repo.add_merchant_if_absent(merchant_id, smid, merchant_values, now)
        created = await repo.add_store_if_absent(merchant_id, smid, store_id, store_values, now)
        m_row = await repo.lock_merchant(merchant_id, smid)
        s_row = await repo.lock_store(merchant_id, smid, store_id)
        changed = False
        # Alipay: "The latest information can overwrite the previous information." Status and reject
        # reason are the operator's and are not touched here.
        if any(getattr(m_row, col) != value for col, value in merchant_values.items()):
            await repo.update_merchant(m_row.id, merchant_values, now)
            changed = True
        if any(getattr(s_row, col) != value for col, value in store_values.items()):
            await repo.update_store(s_row.id, store_values, now)
            changed = True
        status = _status(smid, store_id, m_row, s_row)
        await uow.commit()
    return MaintainResult(created, changed, status)


def _status(smid: str, store_id: str, m_row: Any, s_row: Any) -> StoreStatus:
    active = m_row.status == "active" and s_row.status == "active"
    reason = s_row.reject_reason if s_row.status != "active" else m_row.reject_reason
    return StoreStatus(smid, store_id, active, None if active else reason)


async def query_status(
    p: Platform, merchant_id: int, secondary_merchant_id: str, store_id: str
) -> StoreStatus:
    """The status of one of the merchant's registered stores; NOT_FOUND if it has none by these ids."""
    async with p.reader() as r:
        row = await r.secondary.status(merchant_id, secondary_merchant_id, store_id)
    if row is None:
        raise TillpayError(
            Code.NOT_FOUND,
            f"no store {store_id!r} registered for secondary merchant {secondary_merchant_id!r}",
        )
    active = row.status == "active" and row.store_status == "active"
    reason = row.store_reject_reason if row.store_status != "active" else row.reject_reason
    return StoreStatus(secondary_merchant_id, store_id, active, None if active else reason)


async def list_secondary(p: Platform, merchant_id: int) -> list[SecondaryMerchant]:
    """The merchant's secondary merchants with their stores, by id."""
    async with p.reader() as r:
        merchants = await r.secondary.merchants(merchant_id)
        store_rows = await r.secondary.stores(merchant_id)
    by_merchant: dict[str, list[SecondaryStore]] = {}
    for s in store_rows:
        by_merchant.setdefault(s.secondary_merchant_id, []).append(
            SecondaryStore(
                s.store_id,
                s.store_name,
                s.store_country,
                s.store_address,
                s.store_industry,
                s.status,
                s.reject_reason,
                s.created_at,
                s.updated_at,
            )
        )
    return [
        SecondaryMerchant(
            m.secondary_merchant_id,
            m.name,
            m.merchant_type,
            m.register_country,
            m.status,
            m.reject_reason,
            m.created_at,
            m.updated_at,
            tuple(by_merchant.get(m.secondary_merchant_id, [])),
        )
        for m in merchants
    ]


async def set_status(
    p: Platform,
    merchant_id: int,
    secondary_merchant_id: str,
    store_id: str | None,
    status: str,
    reason: str | None = None,
) -> None:
    """Enable or disable a secondary merchant (``store_id`` None) or one of its stores."""
    if status not in ("active", "disabled"):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status is active or disabled")
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > 256:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the reason is at most 256 characters")
    values = {
        "status": status,
        "reject_reason": reason if status == "disabled" else None,
        "updated_at": p.now(),
    }
    what = (
        f"secondary merchant {secondary_merchant_id!r}"
        if store_id is None
        else f"store {store_id!r} of secondary merchant {secondary_merchant_id!r}"
    )
    async with p.unit_of_work() as uow:
        found = await uow.secondary.set_status(merchant_id, secondary_merchant_id, store_id, values)
        await uow.commit()
    if not found:
        raise TillpayError(Code.NOT_FOUND, f"no {what}")


# ------------------------------------------------------------------------------------ the pay path


def registered_of(row: Any) -> Registered | None:
    """What a row with :func:`registered_columns` says is registered (None: nothing)."""
    if row["sm_status"] is None:
        return None
    store = row["ss_status"]
    return Registered(
        merchant_name=row["sm_name"],
        merchant_active=row["sm_status"] == "active",
        store_name=row["ss_name"],
        store_industry=row["ss_industry"],
        store_active=None if store is None else store == "active",
    )


async def registered(
    repos: Repositories, merchant_id: int, secondary_merchant_id: str | None, store_id: str | None
) -> Registered | None:
    """What is registered about a pay's secondary merchant and store (one statement)."""
    if not secondary_merchant_id:
        return None
    row = await repos.secondary.registered(merchant_id, secondary_merchant_id, store_id)
    return registered_of(row) if row is not None else None
