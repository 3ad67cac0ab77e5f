"""Test credentials beside live ones: a live merchant's test merchant, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

import factories as f
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import merchants
from tillpay.services.platform import Platform

pytestmark = pytest.mark.anyio


async def test_a_live_merchant_gets_one_test_merchant_with_its_own_credentials(platform: Platform) -> None:
    live = (await f.merchant(platform)).merchant
    assert not live.is_test and live.clock_offset_seconds == 0
    made = await merchants.test_merchant_of(platform, live.partner_id)
    test = made.merchant
    assert test.is_test and test.test_of == live.id
    assert made.merchant_private_key is not None  # handed out once, when made
    # Credentials of its own on every dialect, nothing shared with the live merchant.
    assert test.partner_id != live.partner_id and test.md5_key != live.md5_key
    assert test.app_id not in (None, live.app_id) and test.client_id not in (None, live.client_id)
    assert test.gateway_public_key != live.gateway_public_key
    assert test.settlement_currency == live.settlement_currency and test.name == f"{live.name} (test)"

    again = await merchants.test_merchant_of(platform, live.partner_id)
    assert again.merchant.partner_id == test.partner_id and again.merchant_private_key is None
    assert (await merchants.live_merchant_of(platform, test)).partner_id == live.partner_id
    assert (await merchants.live_merchant_of(platform, live)).partner_id == live.partner_id


async def test_a_test_merchant_has_no_test_merchant_of_its_own(platform: Platform) -> None:
    live = (await f.merchant(platform)).merchant
    test = (await merchants.test_merchant_of(platform, live.partner_id)).merchant
    with pytest.raises(TillpayError) as e:
        await merchants.test_merchant_of(platform, test.partner_id)
    assert e.value.code is Code.ILLEGAL_ARGUMENT
    with pytest.raises(TillpayError) as e:
        await merchants.test_merchant_of(platform, "2088999999999999")
    assert e.value.code is Code.ILLEGAL_PARTNER


async def test_a_merchants_clock_is_real_time_plus_its_offset(platform: Platform) -> None:
    live = (await f.merchant(platform)).merchant
    now = platform.now()
    assert live.clock(now) == now
    test = (await merchants.test_merchant_of(platform, live.partner_id)).merchant
    assert test.clock(now) == now  # a new test clock starts at real time
