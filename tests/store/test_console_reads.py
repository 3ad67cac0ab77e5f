"""The merchant console's read model scopes every read by the merchant's id, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

import factories as f
from tillpay.services import console, payments
from tillpay.services.platform import Platform
from tillpay.store.console import PaymentQuery

pytestmark = pytest.mark.anyio


async def test_another_merchants_rows_are_never_read(platform: Platform) -> None:
    await f.rates(platform)
    a = await f.merchant(platform)
    b = await f.merchant(platform, notify_url="http://127.0.0.1:9/notify")
    c = await f.customer(platform)
    paid = (
        await payments.pay(
            platform,
            payments.PayCommand(
                merchant=b.merchant,
                partner_trans_id="order-1",
                code=await f.code(platform, c),
                price_amount=1000,
                price_currency="USD",
                settle_currency="USD",
                subject="Noodles",
                dialect="mapi",
                notify_url=b.merchant.notify_url,
            ),
        )
    ).payment
    await console.refund(platform, b.merchant, paid.trade_no, 100, console.new_refund_id(), None)
    since, until = platform.now() - timedelta(days=1), platform.now() + timedelta(days=1)

    async with platform.reader() as r:
        reads = r.console
        row = await reads.payment(b.merchant.id, paid.trade_no)
        notices, _ = await reads.notifications(b.merchant.id, 10)
        # The owner sees each of them: the reads below would find them if they were not scoped.
        assert row is not None and await reads.refunds(b.merchant.id, row.id)
        assert await reads.risk_decision(b.merchant.id, row.id) is not None
        assert notices and (await reads.notification(b.merchant.id, notices[0].notify_id))[0]
        assert await reads.payments(b.merchant.id, PaymentQuery(q="order-1"), before=None, limit=5)
        assert await reads.sales(b.merchant.id, since, until) and await reads.refunded(
            b.merchant.id, since, until
        )
        assert await reads.paid_since(b.merchant.id, since) and await reads.keys(b.merchant.id)

        other = a.merchant.id
        assert await reads.payment(other, paid.trade_no) is None
        assert await reads.refunds(other, row.id) == []
        assert await reads.risk_decision(other, row.id) is None
        assert await reads.notifications(other, 10, payment_id=row.id) == ([], [])
        assert await reads.notification(other, notices[0].notify_id) == ([], [])
        assert await reads.payments(other, PaymentQuery(q="order-1"), before=None, limit=5) == []
        assert (
            await reads.sales(other, since, until) == [] and await reads.refunded(other, since, until) == []
        )
        assert await reads.paid_since(other, since) == []
        assert await reads.confirm_share(other, since) == (0, 0)
        assert await reads.declines(other, 10) == []
        assert [k.merchant_id for k in await reads.keys(other)] == [other]
