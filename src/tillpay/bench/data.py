"""The benchmark's database: created fresh, filled with merchants and many funded wallets in bulk.

Wallet users and devices are inserted many rows per statement (one PIN hash, computed once, serves every
user: scrypt takes ~20 ms by design). The money still goes in through ``post_entry``, the only ledger
writer, so ``tillpay audit`` checks the benchmark's ledger like any other.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from tillpay.domain import ledger
from tillpay.services import fx, merchants
from tillpay.services.payments import post_entry
from tillpay.services.platform import Platform
from tillpay.services.security import hash_secret
from tillpay.store import tables as t
from tillpay.store.engine import is_sqlite

PIN = "123456"
#: Every wallet starts with this much (CNY 20,000.00): enough for ten of the largest benchmark payments.
BALANCE = 2_000_000
USD_CNY = "7.1023"
DEVICE_NO_BASE = 20_000_000


@dataclass(frozen=True, slots=True)
class BenchMerchant:
    """A merchant with the secrets a till needs to sign requests in every dialect."""

    partner_id: str
    md5_key: str
    private_key: str
    app_id: str
    client_id: str
    currency: str


@dataclass(frozen=True, slots=True)
class BenchDevice:
    """A wallet's device: what its phone needs to make payment codes offline."""

    device_no: int
    secret: bytes
    user_id: int


@dataclass(frozen=True, slots=True)
class Fixture:
    """What a benchmark database holds, as the request generator needs it."""

    merchants: list[BenchMerchant]
    devices: list[BenchDevice]


def _pg(url: str) -> psycopg.Connection:
    u = make_url(url).set(drivername="postgresql")
    return psycopg.connect(u.render_as_string(hide_password=False), autocommit=True)


def check_target(target: str) -> None:
    """ValueError with a clear message unless ``target`` is 'sqlite' or a PostgreSQL server that
    answers (checked before minutes of work, not after)."""
    if target == "sqlite":
        return
    try:
        driver, shown = make_url(target).drivername, _safe(target)
    except Exception:
        driver, shown = "", repr(target)
    if not driver.startswith("postgres"):
        raise ValueError(f"{shown}: give 'sqlite' or a PostgreSQL URL (postgresql://user:pass@host/db)")
    try:
        with _pg(target):
            pass
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot use the PostgreSQL server of {_safe(target)}: {first}") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def create_database(target: str, workdir: Path) -> str:
    """A new, empty database: a SQLite file in ``workdir`` (``target`` "sqlite"), or a fresh database on
    the PostgreSQL server ``target`` points at (any database URL on it; the new one is named
    ``tillpay_bench_<random>``). Returns its URL."""
    if target == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    if is_sqlite(target):
        raise ValueError("give 'sqlite' or a PostgreSQL URL")
    name = f"tillpay_bench_{uuid.uuid4().hex[:10]}"
    with _pg(target) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(target).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Remove a database made by :func:`create_database` (a SQLite file goes with its folder)."""
    if is_sqlite(url):
        return
    u = make_url(url)
    name = u.database
    with _pg(u.set(database="postgres").render_as_string(hide_password=False)) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def populate(p: Platform, *, n_merchants: int, n_users: int) -> Fixture:
    """Merchants (half settling in CNY, half in USD, so FX quotes are on the path) and funded wallets."""
    await fx.set_rate(p, "USD", "CNY", USD_CNY)
    made: list[BenchMerchant] = []
    for i in range(n_merchants):
        currency = "CNY" if i % 2 == 0 else "USD"
        new = await merchants.add_merchant(p, name=f"Bench shop {i + 1}", settlement_currency=currency)
        m = new.merchant
        assert new.merchant_private_key and m.app_id and m.client_id
        made.append(
            BenchMerchant(m.partner_id, m.md5_key, new.merchant_private_key, m.app_id, m.client_id, currency)
        )
    return Fixture(made, await add_wallets(p, 0, n_users))


async def add_wallets(p: Platform, start: int, count: int, chunk: int = 2000) -> list[BenchDevice]:
    """Wallets ``start + 1 .. start + count``, funded, each with one device."""
    pin_hash = hash_secret(PIN)
    now = p.now()
    devices: list[BenchDevice] = []
    for first in range(start, start + count, chunk):
        size = min(chunk, start + count - first)
        async with p.engine.begin() as conn:
            await conn.execute(
                insert(t.wallet_users),
                [
                    {
                        "login_id": f"bench{first + i:07d}@bench.test",
                        "name": f"Bench customer {first + i}",
                        "currency": "CNY",
                        "pin_hash": pin_hash,
                        "balance": 0,
                        "status": "active",
                        "created_at": now,
                    }
                    for i in range(size)
                ],
            )
            ids = list(
                (
                    await conn.execute(
                        select(t.wallet_users.c.id)
                        .where(
                            t.wallet_users.c.login_id.between(
                                f"bench{first:07d}@bench.test", f"bench{first + size - 1:07d}@bench.test"
                            )
                        )
                        .order_by(t.wallet_users.c.login_id)
                    )
                ).scalars()
            )
            if ids != list(range(first + 1, first + size + 1)):
                raise RuntimeError("the benchmark needs a fresh database (wallet ids 1..n)")
            secrets = [os.urandom(20) for _ in range(size)]
            # Device n (and its wallet, also n) has the number 20,000,000 + n: the database's raw-rate
            # loop (dbrate) finds a device's number without asking. Real device numbers are random.
            await conn.execute(
                insert(t.devices),
                [
                    {
                        "device_no": DEVICE_NO_BASE + uid,
                        "user_id": uid,
                        "secret": secrets[i],
                        "name": "bench phone",
                        "status": "active",
                        "created_at": now,
                    }
                    for i, uid in enumerate(ids)
                ],
            )
            # One top-up entry per chunk: the bank pays every wallet of the chunk its starting balance.
            await post_entry(
                conn,
                kind="topup",
                ref=f"topup:bench-{first}",
                postings=[
                    ledger.Posting(ledger.BANK, "CNY", -BALANCE * size),
                    *(ledger.Posting(ledger.wallet_account(uid), "CNY", BALANCE) for uid in ids),
                ],
                now=now,
                memo="benchmark funding",
            )
        devices.extend(BenchDevice(DEVICE_NO_BASE + uid, secrets[i], uid) for i, uid in enumerate(ids))
    return devices
