"""Onboarding merchants: ids, keys and settlement currency."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import known_currency
from tillpay.services.platform import Merchant, Platform

PARTNER_RE = re.compile(r"^2088\d{12}$")


@dataclass(frozen=True, slots=True)
class NewMerchant:
    """A created merchant and the secrets it must be given once."""

    merchant: Merchant
    #: The merchant's RSA private key when Tillpay generated the pair (sandbox convenience), else None.
    merchant_private_key: str | None


async def add_merchant(
    p: Platform,
    *,
    name: str,
    settlement_currency: str,
    notify_url: str | None = None,
    partner_id: str | None = None,
    md5_key: str | None = None,
    public_key: str | None = None,
    generate_keys: bool = True,
    mcc: str = "5411",
    test_of: int | None = None,
) -> NewMerchant:
    """Create a merchant with a partner id, an MD5 key and Tillpay's own key pair for its responses.

    Without ``public_key`` and with ``generate_keys``, a merchant key pair is generated and its private
    half returned once (handy for a sandbox; production merchants upload their own public key).
    """
    if not name.strip():
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a merchant needs a name")
    known_currency(settlement_currency)
    if partner_id is not None and not PARTNER_RE.match(partner_id):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a partner id is 16 digits starting with 2088")
    if md5_key is not None and not re.fullmatch(r"[A-Za-z0-9]{16,64}", md5_key):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "an MD5 key is 16 to 64 letters and digits")
    if not re.fullmatch(r"\d{4}", mcc):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "an MCC is 4 digits")
    merchant_private: str | None = None
    public_pem: str | None
    if public_key is not None:
        try:
            public_pem = signing.public_key_pem(signing.load_public_key(public_key))
        except signing.KeyFormatError as e:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"merchant public key: {e}") from None
    elif generate_keys:
        key = signing.generate_private_key()
        merchant_private = signing.private_key_pem(key, pkcs1=True)
        public_pem = signing.public_key_pem(key.public_key())
    else:
        public_pem = None  # an MD5-only merchant
    gateway_key = signing.generate_private_key()
    pid = partner_id or p.ids.partner_id()
    values = dict(
        partner_id=pid,
        name=name.strip(),
        md5_key=md5_key or p.ids.md5_key(),
        public_key=public_pem,
        gateway_private_key=signing.private_key_pem(gateway_key),
        gateway_public_key=signing.public_key_pem(gateway_key.public_key()),
        settlement_currency=settlement_currency,
        notify_url=notify_url,
        mcc=mcc,
        status="active",
        created_at=p.now(),
        app_id=p.ids.app_id(),
        # A test merchant's client id starts ``SANDBOX_``: Antom's SDKs then call /ams/sandbox/api/...
        client_id=("SANDBOX_" if test_of is not None else "") + p.ids.client_id(),
        test_of=test_of,
    )
    try:
        async with p.unit_of_work() as uow:
            mid = await uow.merchants.add(values)
            if public_pem is not None:
                await uow.merchants.add_key(mid, 1, public_pem, p.now())
            await uow.commit()
    except IntegrityError:
        raise TillpayError(Code.ALREADY_EXISTS, f"partner {pid} exists already") from None
    return NewMerchant(await p.merchant_by_partner(pid, fresh=True), merchant_private)


async def test_merchant_of(p: Platform, partner_id: str) -> NewMerchant:
    """The test credentials of the live merchant ``partner_id``: its test merchant, made on first use.

    A test merchant is a merchant of its own (partner id, MD5 key, key pair, app id, client id) tied to
    the live one by ``test_of``: the same wire and endpoints, sandbox money only, its own clock, and
    nothing of it is settled or paid out. The merchant's private key is returned only when the test
    merchant is made here (``merchant_private_key`` is None when it existed already).
    """
    live = await p.merchant_by_partner(partner_id, fresh=True)
    if live.is_test:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{partner_id} is a test merchant already")
    async with p.reader() as r:
        existing = await r.merchants.test_merchant_of(live.id)
    if existing is not None:
        return NewMerchant(await p.merchant_by_partner(existing, fresh=True), None)
    try:
        return await add_merchant(
            p,
            name=f"{live.name} (test)",
            settlement_currency=live.settlement_currency,
            notify_url=live.notify_url,
            mcc=live.mcc,
            test_of=live.id,
        )
    except TillpayError as e:
        if e.code is not Code.ALREADY_EXISTS:
            raise
    # Made by a concurrent call in the meantime (test_of is unique): answer with that one.
    return await test_merchant_of(p, partner_id)


async def live_merchant_of(p: Platform, merchant: Merchant) -> Merchant:
    """The live merchant a test merchant belongs to (the merchant itself when it is live)."""
    if merchant.test_of is None:
        return merchant
    async with p.reader() as r:
        pid = await r.merchants.partner_of(merchant.test_of)
    return await p.merchant_by_partner(pid)


async def list_merchants(p: Platform) -> list[Merchant]:
    """Every merchant, oldest first."""
    async with p.reader() as r:
        ids = await r.merchants.partner_ids()
    return [await p.merchant_by_partner(i, fresh=True) for i in ids]


async def set_merchant_status(p: Platform, partner_id: str, status: str) -> Merchant:
    """Freeze (``frozen``) or re-activate (``active``) a merchant."""
    if status not in ("active", "frozen"):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "status is active or frozen")
    async with p.unit_of_work() as uow:
        found = await uow.merchants.set_status(partner_id, status)
        await uow.commit()
    if not found:
        raise TillpayError(Code.ILLEGAL_PARTNER)
    p.forget_merchant(partner_id)
    return await p.merchant_by_partner(partner_id, fresh=True)


async def add_key_version(
    p: Platform, partner_id: str, public_key: str, grace_seconds: int | None = None
) -> int:
    """Register a new RSA public key for a merchant; returns its Antom ``keyVersion``.

    The new key becomes the merchant's current key (MAPI and Open Platform verify with it); Antom
    requests naming an older ``keyVersion`` keep verifying with that version's key for ``grace_seconds``
    (default ``TILLPAY_KEY_GRACE_SECONDS``), then are refused.
    """
    grace = p.settings.key_grace_seconds if grace_seconds is None else grace_seconds
    if grace < 0:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the grace period cannot be negative")
    try:
        public_pem = signing.public_key_pem(signing.load_public_key(public_key))
    except signing.KeyFormatError as e:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"merchant public key: {e}") from None
    m = await p.merchant_by_partner(partner_id, fresh=True)
    async with p.unit_of_work() as uow:
        # Lock the merchant row so two rotations cannot pick the same version number.
        await uow.merchants.lock(m.id)
        version = (await uow.merchants.latest_key_version(m.id) or 0) + 1
        await uow.merchants.add_key(m.id, version, public_pem, p.now())
        await uow.merchants.expire_keys_before(m.id, version, p.now() + timedelta(seconds=grace))
        await uow.merchants.set_public_key(m.id, public_pem)
        await uow.commit()
    p.forget_merchant(partner_id)
    return version


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One of a merchant's RSA public keys (Antom ``keyVersion``) and whether it still verifies."""

    version: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    status: str  # current | active | expiring | expired | revoked


async def key_versions(p: Platform, partner_id: str) -> list[KeyVersion]:
    """The merchant's key versions, newest first, with their status now."""
    m = await p.merchant_by_partner(partner_id, fresh=True)
    return await key_versions_of(p, m.id)


async def key_versions_of(p: Platform, merchant_id: int) -> list[KeyVersion]:
    """:func:`key_versions` by merchant id (the console)."""
    async with p.reader() as reader:
        rows = await reader.merchants.key_versions(merchant_id)
    now = p.now()
    out = []
    for i, r in enumerate(rows):
        if r.revoked_at is not None:
            status = "revoked"
        elif r.expires_at is not None:
            status = "expired" if r.expires_at <= now else "expiring"
        else:
            status = "current" if i == 0 else "active"
        out.append(KeyVersion(r.key_version, r.created_at, r.expires_at, r.revoked_at, status))
    return out


async def revoke_key_version(p: Platform, partner_id: str, version: int) -> None:
    """Refuse requests naming ``version`` from now on; the current version cannot be revoked."""
    m = await p.merchant_by_partner(partner_id, fresh=True)
    async with p.unit_of_work() as uow:
        await uow.merchants.lock(m.id)
        latest = await uow.merchants.latest_key_version(m.id)
        if latest is None or not 1 <= version <= latest:
            raise TillpayError(Code.NOT_FOUND, f"{partner_id} has no key version {version}")
        if version == latest:
            raise TillpayError(
                Code.ILLEGAL_ARGUMENT,
                f"key version {version} is the current key: add a new one first (merchant key-add)",
            )
        await uow.merchants.revoke_key(m.id, version, p.now())
        await uow.commit()
    p.forget_merchant(partner_id)


SIGN_TYPES = ("MD5", "RSA", "RSA2", "RSA256")


async def set_sign_types(p: Platform, partner_id: str, sign_types: list[str] | None) -> Merchant:
    """Allow only these sign types (MAPI ``MD5``/``RSA``/``RSA2``, Open Platform ``RSA``/``RSA2``, Antom
    ``RSA256``); None allows every one. Leaving ``MD5`` out disables the MD5 key."""
    text = None
    if sign_types is not None:
        wanted = sorted({s.strip().upper() for s in sign_types if s.strip()})
        unknown = [s for s in wanted if s not in SIGN_TYPES]
        if unknown or not wanted:
            raise TillpayError(
                Code.ILLEGAL_ARGUMENT, f"sign types are one or more of {', '.join(SIGN_TYPES)}, not {unknown}"
            )
        text = ",".join(wanted)
    async with p.unit_of_work() as uow:
        found = await uow.merchants.set_sign_types(partner_id, text)
        await uow.commit()
    if not found:
        raise TillpayError(Code.ILLEGAL_PARTNER, f"unknown partner {partner_id!r}")
    p.forget_merchant(partner_id)
    return await p.merchant_by_partner(partner_id, fresh=True)


async def rotate_md5_key(
    p: Platform, partner_id: str, grace_seconds: int | None = None, new_key: str | None = None
) -> str:
    """Give the merchant a new MD5 key; requests signed with the old one are accepted for
    ``grace_seconds`` (default ``TILLPAY_KEY_GRACE_SECONDS``; 0 ends the old key now). Returns the key."""
    grace = p.settings.key_grace_seconds if grace_seconds is None else grace_seconds
    if grace < 0:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the grace period cannot be negative")
    if new_key is not None and not re.fullmatch(r"[A-Za-z0-9]{16,64}", new_key):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "an MD5 key is 16 to 64 letters and digits")
    key = new_key or p.ids.md5_key()
    m = await p.merchant_by_partner(partner_id, fresh=True)
    if key == m.md5_key:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the new MD5 key is the current one")
    async with p.unit_of_work() as uow:
        await uow.merchants.set_md5_key(
            m.id,
            key,
            m.md5_key if grace else None,
            p.now() + timedelta(seconds=grace) if grace else None,
        )
        await uow.commit()
    p.forget_merchant(partner_id)
    return key


async def public_key_version(p: Platform, merchant: Merchant, version: int | None) -> str:
    """The merchant's public key for Antom ``keyVersion`` ``version`` (None: the latest).

    HAS_NO_PUBLICKEY if the merchant has no such version (Antom answers KEY_NOT_FOUND).
    """
    async with p.reader() as r:
        key = await r.merchants.usable_key(merchant.id, version, p.now())
    if key is None:
        raise TillpayError(
            Code.HAS_NO_PUBLICKEY,
            f"no usable public key version {version} for this client (unknown, expired or revoked)"
            if version
            else "no public key registered",
        )
    return str(key)
