"""Test merchants: who may pay them, and their test clocks (docs/sandbox.md).

A test merchant (``merchants.test_of``) holds a live merchant's test credentials. Two money rules keep
made-up money apart from real money:

- a test merchant takes sandbox wallets only (``wallet_users.sandbox``);
- on a production server a live merchant refuses sandbox wallets (on a sandbox server the console's test
  payments still pay a live merchant from its sandbox wallet, never settled: docs/security.md).

Both refusals are ``RISK_REJECT``, the code every dialect already has for "this buyer cannot pay at this
merchant" (MAPI ``PAYMENT_REQUEST_HAS_RISK``, Open Platform ``ACQ.PAYMENT_REQUEST_HAS_RISK``, Antom
``RISK_REJECT``): a Tillpay choice, Alipay has no test merchants.

A test merchant's clock runs ``clock_offset_seconds`` ahead of real time and only moves forward. What a
test merchant does is stamped with its own time (``Merchant.clock``): payments expire, refund windows
close and business days close by it; moving it runs the merchant's expiry and its test settlement at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tillpay.domain import settlement as dom
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import sandbox_settlement
from tillpay.services.expiry import expire_due
from tillpay.services.platform import Merchant, Platform
from tillpay.store.uow import Repositories

#: The detail of the refusals (the code is RISK_REJECT in every dialect).
SANDBOX_ONLY = "a test merchant takes sandbox wallets only (tillpay wallet add --sandbox)"
LIVE_NOT_SANDBOX = "a sandbox wallet cannot pay a live merchant on a production server"

#: The longest single move of a clock: a year and a day (a bigger jump is most likely a typo).
MAX_ADVANCE_SECONDS = 366 * 86400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:(\d{1,7})([smhdw]))+")
_PART = re.compile(r"(\d{1,7})([smhdw])")


def payer_problem(*, test_merchant: bool, sandbox_wallet: bool, sandbox_server: bool) -> str | None:
    """Why this wallet may not pay this merchant, or None: the two money rules."""
    if test_merchant and not sandbox_wallet:
        return SANDBOX_ONLY
    if not test_merchant and sandbox_wallet and not sandbox_server:
        return LIVE_NOT_SANDBOX
    return None


async def check_payer(
    p: Platform, repos: Repositories, test_merchant: bool, user_id: int, *, sandbox: bool | None = None
) -> None:
    """Refuse (RISK_REJECT) a wallet the money rules keep from paying this merchant; reads only.

    ``sandbox``: the wallet's sandbox mark when the caller read it already (then nothing is read here).
    """
    if not test_merchant and p.settings.sandbox:
        return  # a live merchant on a sandbox server takes any wallet: nothing to read
    if sandbox is None:
        sandbox = await repos.wallets.is_sandbox(user_id)
    problem = payer_problem(
        test_merchant=test_merchant, sandbox_wallet=bool(sandbox), sandbox_server=p.settings.sandbox
    )
    if problem:
        raise TillpayError(Code.RISK_REJECT, problem)


async def merchant_of_payment(repos: Repositories, merchant_id: int) -> tuple[bool, int]:
    """(is a test merchant, clock offset in seconds) of a payment's merchant."""
    return await repos.merchants.test_mark(merchant_id)


# -------------------------------------------------------------------------------------------- clock


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``2h``, ``3d``, ``1w`` or a sum like ``1d12h``, in seconds (above 0)."""
    clean = text.strip().lower()
    if not _DURATION.fullmatch(clean):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a duration is like 90s, 15m, 2h, 3d, 1w or 1d12h")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(clean))
    if seconds <= 0:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a clock only moves forward: give a duration above 0")
    return seconds


@dataclass(frozen=True, slots=True)
class ClockView:
    """A test merchant's clock: its time, how far ahead it is, and what the last move did."""

    partner_id: str
    offset_seconds: int
    real_time: datetime
    merchant_time: datetime
    business_day: date
    next_cutoff: datetime
    expired: int
    settlement: sandbox_settlement.TestRun

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "partner_id": self.partner_id,
            "mode": "test",
            "offset_seconds": self.offset_seconds,
            "real_time": self.real_time.isoformat(),
            "merchant_time": self.merchant_time.isoformat(),
            "business_day": self.business_day.isoformat(),
            "next_cutoff": self.next_cutoff.isoformat(),
            "expired": self.expired,
            "settlement": self.settlement.to_json(),
        }


def _refuse_live(m: Merchant) -> None:
    if not m.is_test:
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            f"{m.partner_id} is a live merchant: live merchants always use real time "
            "(move its test merchant's clock: tillpay merchant test-credentials)",
        )


async def _view(p: Platform, m: Merchant, expired: int, directory: str | Path | None) -> ClockView:
    now = p.now()
    mine = m.clock(now)
    s = p.settings
    try:
        day = dom.business_day(mine, s.settlement_timezone, s.settlement_cutoff)
        cutoff = dom.cutoff_at(day, s.settlement_timezone, s.settlement_cutoff)
    except dom.SettlementConfigError as e:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, str(e)) from None
    run = await sandbox_settlement.run(p, m, directory=directory)
    return ClockView(m.partner_id, m.clock_offset_seconds, now, mine, day, cutoff, expired, run)


async def show(p: Platform, partner_id: str, *, directory: str | Path | None = None) -> ClockView:
    """A test merchant's clock, with its test settlement brought up to its time."""
    m = await p.merchant_by_partner(partner_id, fresh=True)
    _refuse_live(m)
    return await _view(p, m, 0, directory)


async def advance(
    p: Platform, partner_id: str, seconds: int, *, directory: str | Path | None = None
) -> ClockView:
    """Move a test merchant's clock forward by ``seconds``; then what is due at its new time happens:
    its waiting payments expire, and the business days that closed are settled into test files."""
    if seconds <= 0:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a clock only moves forward: give a duration above 0")
    if seconds > MAX_ADVANCE_SECONDS:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a clock moves at most 366 days at a time")
    m = await p.merchant_by_partner(partner_id, fresh=True)
    _refuse_live(m)
    async with p.unit_of_work() as uow:
        # Added in the database, so two moves at once both count; never on a live merchant.
        await uow.merchants.advance_test_clock(m.id, seconds)
        await uow.commit()
    m = await p.merchant_by_partner(partner_id, fresh=True)
    expired = 0
    while True:
        closed = await expire_due(p, 500, merchant=m)
        expired += closed
        if closed < 500:
            break
    return await _view(p, m, expired, directory)


def mode_of(m: Merchant) -> str:
    """``test`` or ``live``: what ``X-Tillpay-Mode`` says (sent only for ``test``)."""
    return "test" if m.is_test else "live"


MODE_HEADER = "X-Tillpay-Mode"


def mode_headers(m: Merchant | None) -> dict[str, str]:
    """``{"X-Tillpay-Mode": "test"}`` for a test merchant's answers and notifications, else nothing."""
    return {MODE_HEADER: "test"} if m is not None and m.is_test else {}
