"""The settlement and transaction files name the secondary merchant a pay named (reference §1.14:
``Secondary_merchant_industry``, ``Secondary_merchant_name``, ``Secondary_merchant_id``,
``Operator_name``), on SQLite and PostgreSQL; pays that named none keep the merchant's own values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

import factories as f
from tillpay.domain import settlement as dom
from tillpay.domain.secmerchant import Registration
from tillpay.services import payments, secmerchants, settlement
from tillpay.services.payments import PayCommand, RefundCommand
from tillpay.services.platform import FakeClock, Platform

pytestmark = pytest.mark.anyio

DAY = date(2026, 11, 25)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))


async def test_files_carry_the_secondary_merchant_and_store_name_of_each_pay(
    platform: Platform, clock: FakeClock, tmp_path: Path
) -> None:
    platform.settings.settlement_dir = str(tmp_path)
    m = (await f.merchant(platform, "USD")).merchant
    await settlement.set_fee(platform, m.partner_id, 100)
    c = await f.customer(platform, "USD", balance=1_000_000)
    await secmerchants.maintain(
        platform,
        m.id,
        Registration.parse(
            {
                "secondary_merchant_id": "MID_1",
                "secondary_merchant_name": "Noodle | Bar",
                "store_id": "S1",
                "store_name": "Noodle Bar Central",
                "store_country": "HK",
                "store_address": "1 Queen's Road",
                "store_industry": "5812",
            }
        ),
    )

    async def pay(ptid: str, **kw: str) -> str:
        out = await payments.pay(
            platform,
            PayCommand(
                merchant=m,
                partner_trans_id=ptid,
                code=await f.code(platform, c),
                price_amount=1000,
                price_currency="USD",
                settle_currency="USD",
                subject="Noodles",
                dialect="mapi",
                **kw,  # type: ignore[arg-type]
            ),
        )
        assert out.code is None, out
        return out.payment.trade_no

    a = await pay("A", secondary_merchant_id="MID_1", store_id="S1", terminal_id="T1")
    b = await pay("B", store_id="S9", terminal_id="T9")
    await payments.refund(
        platform,
        RefundCommand(
            merchant=m,
            partner_refund_id="A-R",
            amount=400,
            currency="USD",
            dialect="mapi",
            partner_trans_id="A",
        ),
    )
    clock.advance(24 * 3600)
    await settlement.run_day(platform, DAY)
    tx_name, st_name = dom.file_names(m.partner_id, DAY, "USD")
    tx = (tmp_path / tx_name).read_text().splitlines()[2:]
    st = (tmp_path / st_name).read_text().splitlines()[1:]
    cols = slice(8, 12)  # industry, name, id, operator in the transaction file
    assert [line.split("|")[cols] for line in tx] == [
        ["5812", "Noodle   Bar", "MID_1", "Noodle Bar Central"],  # "|" in a name cannot split a record
        ["5411", m.name, "S9", "T9"],
        ["5812", "Noodle   Bar", "MID_1", "Noodle Bar Central"],  # the refund of A
    ]
    assert [line.split("|")[1] for line in tx] == [a, b, a]
    assert [line.split("|")[11:15] for line in st] == [
        ["5812", "Noodle   Bar", "MID_1", "Noodle Bar Central"],
        ["5411", m.name, "S9", "T9"],
        ["5812", "Noodle   Bar", "MID_1", "Noodle Bar Central"],
    ]
