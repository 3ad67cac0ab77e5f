"""Issue 14, findings 2 and 5: a notification endpoint cannot hold the worker, flood it, redirect it, or be
an internal address; one merchant's slow endpoint does not delay another's notifications, nor expiry.

Every endpoint listens on loopback; the tests that want it delivered there opt into the allow-list
(``LOOPBACK_RECEIVERS``). Bounds on time are generous: an endpoint that hangs hangs for the whole test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
from endpoints import Endpoint, answer, drip, flood, hang, redirect

import factories as f
from conftest import LOOPBACK_RECEIVERS
from notify_receivers import FormReceiver
from tillpay.config import Settings
from tillpay.domain.payment import Status
from tillpay.outbound import MAX_ANSWER_BYTES, OutboundClient, OutboundError, Policy
from tillpay.services import console, payments
from tillpay.services.merchants import NewMerchant
from tillpay.services.platform import FakeClock, Platform
from tillpay.services.views import PaymentView
from tillpay.worker import runner
from tillpay.worker.notifier import Notifier, deliver_due

pytestmark = pytest.mark.anyio


async def _pay(p: Platform, m: NewMerchant, amount: int = 1000) -> PaymentView:
    c = await f.customer(p)
    out = await payments.pay(
        p,
        payments.PayCommand(
            merchant=m.merchant,
            partner_trans_id=f"order-{c.user.id}",
            code=await f.code(p, c),
            price_amount=amount,
            price_currency="USD",
            settle_currency="USD",
            subject="Noodles",
            dialect="mapi",
            notify_url=m.merchant.notify_url,
        ),
    )
    return out.payment


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float = 20) -> None:
    """Until ``check()`` holds; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def loopback_client(deadline: float = 10) -> OutboundClient:
    return OutboundClient(Policy.of(Settings(**LOOPBACK_RECEIVERS)), deadline_seconds=deadline)


# ------------------------------------------------------------------------------- one endpoint, one call


async def test_an_endpoint_that_drips_a_byte_a_second_is_cut_at_the_deadline() -> None:
    sent: list[int] = []
    ep = Endpoint(drip(sent, interval=1.0))
    try:
        async with loopback_client(deadline=2) as client:
            started = time.monotonic()
            with pytest.raises(OutboundError, match="no complete answer within 2 s"):
                await client.post(ep.url, b"x=1", {})
            took = time.monotonic() - started
    finally:
        ep.close()
    # Each read got a byte within a second, so only a deadline for the whole call could end it: before,
    # the 1,000 promised bytes held the worker for 1,000 s.
    assert sent and took < 2 + 5


async def test_a_300_mb_answer_is_read_only_up_to_the_cap() -> None:
    sent: list[int] = []
    ep = Endpoint(flood(sent))
    try:
        async with loopback_client() as client:
            got = await client.post(ep.url, b"x=1", {})
    finally:
        ep.close()
    assert got.status == 200 and got.truncated and got.body == b"A" * MAX_ANSWER_BYTES
    # Status line, headers, the cap and one small read: not the 300 MB on offer.
    assert got.received < 16 * 1024


async def test_a_redirect_is_an_answer_not_an_instruction() -> None:
    target = Endpoint(answer(b"success"))
    ep = Endpoint(redirect(target.url))
    try:
        async with loopback_client() as client:
            got = await client.post(ep.url, b"x=1", {})
    finally:
        ep.close()
        target.close()
    assert got.status == 302 and target.connections == 0


# ------------------------------------------------------------------------------------ through the outbox


@pytest.mark.parametrize(
    ("settings", "host", "reason"),
    [
        ({"notify_allow_ports": "1-65535"}, "127.0.0.1", "refused: the URL names a loopback address"),
        (
            {"notify_allow_ports": "1-65535"},
            "localhost",
            "refused: localhost does not resolve to a public address",
        ),
        ({"notify_allow_networks": "127.0.0.0/8"}, "127.0.0.1", "refused: the URL uses port"),
    ],
)
async def test_a_queued_notification_to_an_internal_address_is_refused_once_and_never_sent(
    platform: Platform, settings: dict[str, str], host: str, reason: str
) -> None:
    # Queued as an outbox row from before the edge checked notify URLs would be: through the service.
    receiver = FormReceiver()
    platform.settings = platform.settings.model_copy(update=settings)
    try:
        await f.rates(platform)
        url = receiver.url.replace("127.0.0.1", host)
        m = await f.merchant(platform, notify_url=url)
        await _pay(platform, m)
        async with OutboundClient.from_settings(platform.settings) as client:
            assert await deliver_due(platform, client) == 1
            assert await deliver_due(platform, client) == 0  # not retried: the answer would be the same
        (n,) = await console.notifications(platform, m.merchant.id)
        assert n.status == "failed" and len(n.attempts) == 1
        (attempt,) = n.attempts
        assert attempt.http_status is None and attempt.error is not None and attempt.error.startswith(reason)
        # "Redeliver" repeats the refusal, not the request.
        assert await console.redeliver(platform, m.merchant.id, n.notify_id)
        async with OutboundClient.from_settings(platform.settings) as client:
            assert await deliver_due(platform, client) == 1
        assert len((await console.notifications(platform, m.merchant.id))[0].attempts) == 2
        assert receiver.received == []
    finally:
        receiver.close()


async def test_the_merchant_sees_the_status_and_an_excerpt_of_a_huge_answer(platform: Platform) -> None:
    sent: list[int] = []
    ep = Endpoint(flood(sent))
    platform.settings = platform.settings.model_copy(update=LOOPBACK_RECEIVERS)
    try:
        await f.rates(platform)
        m = await f.merchant(platform, notify_url=ep.url)
        await _pay(platform, m)
        async with OutboundClient.from_settings(platform.settings) as client:
            assert await deliver_due(platform, client) == 1
    finally:
        ep.close()
    (n,) = await console.notifications(platform, m.merchant.id)
    (attempt,) = n.attempts
    assert attempt.http_status == 200 and attempt.response == "A" * 199 + "…"
    assert n.status == "pending"  # not an acknowledgement: tried again on the schedule


async def test_one_merchants_hanging_endpoints_do_not_hold_another_merchants_notification(
    platform: Platform,
) -> None:
    release = threading.Event()
    slow = Endpoint(hang(release))
    fast = FormReceiver()
    platform.settings = platform.settings.model_copy(
        update={
            **LOOPBACK_RECEIVERS,
            "notify_concurrency": 4,
            "notify_per_merchant": 2,
            "notify_timeout_seconds": 120,
        }
    )
    stop = asyncio.Event()
    try:
        await f.rates(platform)
        a = await f.merchant(platform, notify_url=slow.url)
        b = await f.merchant(platform, notify_url=fast.url)
        for _ in range(6):
            await _pay(platform, a)  # queued first: a sequential worker would sit on these
        await _pay(platform, b)
        async with OutboundClient.from_settings(platform.settings) as client:
            worker = asyncio.create_task(Notifier(platform, client).run(stop))
            try:
                await until(lambda: len(fast.received) == 1 and slow.open_now == 2)
                await asyncio.sleep(0.5)
                # A holds its share of the slots and no more; none of its notifications is answered yet.
                assert slow.most_open == 2 and slow.connections == 2 and not release.is_set()
            finally:
                release.set()
                stop.set()
                await worker
    finally:
        release.set()
        slow.close()
        fast.close()


async def test_payments_expire_while_a_notification_hangs(platform: Platform, clock: FakeClock) -> None:
    release = threading.Event()
    slow = Endpoint(hang(release))
    platform.settings = platform.settings.model_copy(
        update={**LOOPBACK_RECEIVERS, "notify_timeout_seconds": 120, "payment_timeout_seconds": 1}
    )
    stop = asyncio.Event()
    try:
        await f.rates(platform)
        a = await f.merchant(platform, notify_url=slow.url)
        b = await f.merchant(platform)
        await _pay(platform, a)
        worker = asyncio.create_task(runner.run(platform, stop))
        try:
            await until(lambda: slow.open_now == 1)
            waiting = await _pay(platform, b, amount=40_000)  # USD 400.00: the customer must confirm
            assert waiting.status is Status.WAIT_BUYER_PAY
            clock.advance(2)

            async def closed() -> bool:
                view = await payments.payment_by_trade_no(platform, waiting.trade_no)
                return view.status is Status.TRADE_CLOSED

            await until(closed)
            assert slow.open_now == 1 and not release.is_set()  # the notification still hangs
        finally:
            release.set()
            stop.set()
            await worker
    finally:
        release.set()
        slow.close()


async def test_two_workers_never_send_the_same_notification(platform: Platform) -> None:
    receiver = FormReceiver()
    platform.settings = platform.settings.model_copy(update={**LOOPBACK_RECEIVERS, "notify_per_merchant": 16})
    try:
        await f.rates(platform)
        shops = [await f.merchant(platform, notify_url=receiver.url) for _ in range(3)]
        for m in shops:
            for _ in range(8):
                await _pay(platform, m)
        # A second process: its own engine on the same database.
        other = Platform(platform.settings, clock=platform.clock)
        try:
            async with (
                OutboundClient.from_settings(platform.settings) as c1,
                OutboundClient.from_settings(platform.settings) as c2,
            ):
                sent = await asyncio.gather(
                    deliver_due(platform, c1), deliver_due(other, c2), deliver_due(platform, c1)
                )
        finally:
            await other.close()
        assert sum(sent) == 24
        ids = [r["notify_id"] for r in receiver.received]
        assert len(ids) == 24 and len(set(ids)) == 24
    finally:
        receiver.close()


async def test_redeliver_does_not_double_an_attempt_in_flight(platform: Platform) -> None:
    release = threading.Event()
    slow = Endpoint(hang(release))
    platform.settings = platform.settings.model_copy(
        update={**LOOPBACK_RECEIVERS, "notify_timeout_seconds": 120}
    )
    try:
        await f.rates(platform)
        m = await f.merchant(platform, notify_url=slow.url)
        await _pay(platform, m)
        (n,) = await console.notifications(platform, m.merchant.id)
        async with OutboundClient.from_settings(platform.settings) as client:
            notifier = Notifier(platform, client)
            assert await notifier.start_due() == 1
            await until(lambda: slow.open_now == 1)
            assert (await console.notifications(platform, m.merchant.id))[0].status == "sending"
            assert await console.redeliver(platform, m.merchant.id, n.notify_id) is False
            assert await notifier.start_due() == 0  # nothing was queued again
            release.set()
            await notifier.drain()
        assert slow.connections == 1
        assert (await console.notifications(platform, m.merchant.id))[0].status == "delivered"
        assert await console.redeliver(platform, m.merchant.id, n.notify_id) is True  # once done, it may
    finally:
        release.set()
        slow.close()
