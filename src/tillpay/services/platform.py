"""The service context: database, settings, clock and id generator, passed to every use case."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from tillpay.config import Settings
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import parse_amount
from tillpay.services.security import HashPool
from tillpay.store.engine import create_engine
from tillpay.store.merchants import CREDENTIALS
from tillpay.store.uow import Reader, Repositories, UnitOfWork

#: How long a server process trusts its copy of a merchant (keys, status): changes reach every process
#: within this time.
MERCHANT_CACHE_SECONDS = 2.0  # float-ok: seconds


class Clock(Protocol):
    """Where time comes from; tests move a fake one instead of sleeping."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real UTC clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 26, 2, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:  # float-ok: seconds of time, not money
        self._now += timedelta(seconds=seconds)


class Ids:
    """Generates the ids Tillpay hands out (random parts come from ``secrets``)."""

    def trade_no(self, now: datetime) -> str:
        """An Alipay-style 28-digit transaction id: date, channel ``22``, then 18 random digits."""
        return now.strftime("%Y%m%d") + "22" + _digits(18)

    def refund_no(self, now: datetime) -> str:
        """A refund id in the same shape as a transaction id, channel ``25``."""
        return now.strftime("%Y%m%d") + "25" + _digits(18)

    def notify_id(self) -> str:
        """A notification id, stable across the notification's retries."""
        return secrets.token_hex(17)

    def app_id(self) -> str:
        """A 16-digit Open Platform app id starting ``2021``, as Alipay issues them."""
        return "2021" + _digits(12)

    def client_id(self) -> str:
        """An Antom client id: ``TP`` and 14 letters and digits (never ``SANDBOX_``, which SDKs reroute)."""
        alphabet = string.ascii_uppercase + string.digits
        return "TP" + "".join(secrets.choice(alphabet) for _ in range(14))

    def partner_id(self) -> str:
        """A 16-digit partner id starting ``2088``."""
        return "2088" + _digits(12)

    def md5_key(self) -> str:
        """A 32-character MD5 key of letters and digits, as Alipay issues them."""
        alphabet = string.ascii_lowercase + string.digits
        return "".join(secrets.choice(alphabet) for _ in range(32))

    def device_no(self) -> int:
        """A random 8-digit device number (random so device numbers cannot be enumerated)."""
        return 10_000_000 + secrets.randbelow(90_000_000)

    def device_secret(self) -> bytes:
        """A 20-byte payment-code secret (the RFC 4226 recommended size)."""
        return secrets.token_bytes(20)


def _digits(n: int) -> str:
    # One draw, not one per digit: each draw from `secrets` is a system call (18 per trade_no before).
    return f"{secrets.randbelow(10**n):0{n}d}"


@dataclass(frozen=True, slots=True)
class Merchant:
    """A merchant as the gateway needs it on every request."""

    id: int
    partner_id: str
    name: str
    md5_key: str
    public_key: str | None
    gateway_private_key: str
    gateway_public_key: str
    settlement_currency: str
    notify_url: str | None
    mcc: str
    status: str
    #: Alipay Open Platform app id (face-to-face dialect) and Antom client id; None for old rows.
    app_id: str | None = None
    client_id: str | None = None
    #: The sign types the merchant may use (None: every one the dialect takes).
    sign_types: frozenset[str] | None = None
    #: The MD5 key before the last rotation and until when requests may still use it.
    md5_key_previous: str | None = None
    md5_key_previous_until: datetime | None = None
    #: On a test merchant, the id of the live merchant whose test credentials it holds; None when live.
    test_of: int | None = None
    #: How far the merchant's test clock runs ahead of real time (0 for a live merchant).
    clock_offset_seconds: int = 0

    @property
    def is_test(self) -> bool:
        """A test merchant: sandbox money only, never settled or paid out (docs/sandbox.md)."""
        return self.test_of is not None

    def clock(self, now: datetime) -> datetime:
        """The merchant's time at the platform's ``now``: its test clock, or ``now`` for a live one."""
        return now + timedelta(seconds=self.clock_offset_seconds) if self.clock_offset_seconds else now

    def allows(self, sign_type: str) -> bool:
        """Whether the merchant may sign with ``sign_type`` (``MD5``, ``RSA``, ``RSA2``, ``RSA256``)."""
        return self.sign_types is None or sign_type.upper() in self.sign_types

    def md5_keys(self, now: datetime) -> list[str]:
        """The MD5 keys a request may be signed with now: the current one, then the previous in its grace."""
        keys = [self.md5_key]
        until = self.md5_key_previous_until
        if self.md5_key_previous and until is not None and now < until:
            keys.append(self.md5_key_previous)
        return keys


def parse_confirm_limits(text: str) -> dict[str, int]:
    """Parse ``CNY:2000.00,USD:300.00`` into minor-unit limits per currency."""
    limits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        currency, _, amount = part.partition(":")
        limits[currency.strip()] = parse_amount(amount.strip(), currency.strip())
    return limits


class Platform:
    """Everything a use case needs: the engine, settings, clock, ids and small caches."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        clock: Clock | None = None,
        ids: Ids | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or create_engine(settings.database_url, pool_size=settings.db_pool_size)
        self.clock: Clock = clock or SystemClock()
        self.ids = ids or Ids()
        self.confirm_above = parse_confirm_limits(settings.confirm_above)
        #: Password and PIN hashing, off the event loop and bounded (services/security.py).
        self.hash_pool = HashPool(settings.hash_threads, settings.hash_queue)
        self._merchants: dict[str, tuple[float, Merchant]] = {}  # float-ok: monotonic cache time
        self._credentials: dict[str, tuple[float, str]] = {}  # float-ok: monotonic cache time
        self._rates: tuple[float, datetime, dict[tuple[str, str], Decimal]] | None = (
            None  # float-ok: cache time
        )

    async def close(self) -> None:
        """Release the database connections and the hashing threads."""
        self.hash_pool.close()
        await self.engine.dispose()

    def now(self) -> datetime:
        """The current time from the injected clock."""
        return self.clock.now()

    def unit_of_work(self) -> UnitOfWork:
        """A use case's write transaction with its repositories, rolled back unless committed."""
        return UnitOfWork(self.engine)

    def reader(self, *, snapshot: bool = False) -> Reader:
        """A use case's read phase: the repositories on a connection that never writes. ``snapshot``: all
        of its statements see one moment (for figures read together, such as a scrape's counts)."""
        return Reader(self.engine, snapshot=snapshot)

    async def merchant_by_partner(self, partner_id: str, *, fresh: bool = False) -> Merchant:
        """The merchant with ``partner_id`` (cached MERCHANT_CACHE_SECONDS); ILLEGAL_PARTNER if unknown."""
        hit = self._merchants.get(partner_id)
        # A test merchant is read afresh every time: its test clock moves, and every server process must
        # stamp the next payment with the moved clock at once (test traffic, so the read costs nothing
        # that matters; live merchants keep the cache).
        if hit and not fresh and not hit[1].is_test and time.monotonic() - hit[0] < MERCHANT_CACHE_SECONDS:
            return hit[1]
        async with self.reader() as r:
            row = await r.merchants.by_partner(partner_id)
        if row is None:
            raise TillpayError(Code.ILLEGAL_PARTNER, f"unknown partner {partner_id!r}")
        m = Merchant(
            id=row.id,
            partner_id=row.partner_id,
            name=row.name,
            md5_key=row.md5_key,
            public_key=row.public_key,
            gateway_private_key=row.gateway_private_key,
            gateway_public_key=row.gateway_public_key,
            settlement_currency=row.settlement_currency,
            notify_url=row.notify_url,
            mcc=row.mcc,
            status=row.status,
            app_id=row.app_id,
            client_id=row.client_id,
            sign_types=frozenset(row.sign_types.split(",")) if row.sign_types else None,
            md5_key_previous=row.md5_key_previous,
            md5_key_previous_until=row.md5_key_previous_until,
            test_of=row.test_of,
            clock_offset_seconds=row.clock_offset_seconds,
        )
        self._merchants[partner_id] = (time.monotonic(), m)
        return m

    async def merchant_by_credential(self, column: str, value: str) -> Merchant:
        """The merchant whose ``app_id`` or ``client_id`` is ``value``; ILLEGAL_PARTNER if none."""
        if column not in CREDENTIALS:
            raise ValueError(f"not a merchant credential column: {column!r}")
        key = f"{column}:{value}"
        hit = self._credentials.get(key)
        if hit and time.monotonic() - hit[0] < 2.0:
            return await self.merchant_by_partner(hit[1])
        async with self.reader() as r:
            partner = await r.merchants.partner_by_credential(column, value)
        if partner is None:
            raise TillpayError(Code.ILLEGAL_PARTNER, f"unknown {column} {value!r}")
        self._credentials[key] = (time.monotonic(), partner)
        return await self.merchant_by_partner(partner)

    def forget_merchant(self, partner_id: str) -> None:
        """Drop a cached merchant after it changed."""
        self._merchants.pop(partner_id, None)

    async def rates(self, repos: Repositories) -> Mapping[tuple[str, str], Decimal]:
        """The rates in effect now (latest effective row per pair), cached for one second."""
        now = self.now()
        # Valid for one second of both clocks: a rate that takes effect at a set time applies on time.
        if (
            self._rates
            and time.monotonic() - self._rates[0] < 1.0
            and abs((now - self._rates[1]).total_seconds()) < 1
        ):
            return self._rates[2]
        rows = await repos.fx.rates_until(now)
        rates = {(r.base, r.quote): Decimal(r.rate) for r in rows}  # later rows win
        self._rates = (time.monotonic(), now, rates)
        return rates

    def forget_rates(self) -> None:
        """Drop the cached rates after they changed."""
        self._rates = None
