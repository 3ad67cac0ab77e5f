"""Builders of test data through the public services (never by writing rows directly)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from tillpay.services import fx, merchants, wallets
from tillpay.services.merchants import NewMerchant
from tillpay.services.platform import Platform
from tillpay.services.wallets import Device, WalletUser

_seq = itertools.count(1)


@dataclass
class Customer:
    """A wallet user and its device."""

    user: WalletUser
    device: Device
    pin: str = "123456"


async def merchant(
    p: Platform, currency: str = "USD", notify_url: str | None = None, name: str = "Shop"
) -> NewMerchant:
    return await merchants.add_merchant(
        p, name=f"{name} {next(_seq)}", settlement_currency=currency, notify_url=notify_url
    )


async def customer(
    p: Platform, currency: str = "CNY", balance: int = 1_000_000, pin: str = "123456"
) -> Customer:
    login = f"user{next(_seq)}@example.test"
    user, device = await wallets.add_user(p, login_id=login, currency=currency, pin=pin)
    if balance:
        user = await wallets.topup(p, login, balance)
    return Customer(user, device, pin)


async def rates(p: Platform) -> None:
    await fx.set_rate(p, "USD", "CNY", "7.1023")
    await fx.set_rate(p, "EUR", "CNY", "7.7461")
    await fx.set_rate(p, "USD", "JPY", "151.37")


async def code(p: Platform, c: Customer) -> str:
    return await wallets.current_code(p, c.device)
