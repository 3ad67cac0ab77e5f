"""Merchants' keys and test credentials under concurrent requests, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

import factories as f
from tillpay import signing
from tillpay.services import merchants
from tillpay.services.platform import Platform

pytestmark = pytest.mark.anyio


def _public_pem() -> str:
    return signing.public_key_pem(signing.generate_private_key().public_key())


async def test_concurrent_key_rotations_each_get_a_version_of_their_own(platform: Platform) -> None:
    partner = (await f.merchant(platform)).merchant.partner_id
    keys = [_public_pem() for _ in range(5)]
    versions = await asyncio.gather(*(merchants.add_key_version(platform, partner, k) for k in keys))
    assert sorted(versions) == [2, 3, 4, 5, 6]
    listed = await merchants.key_versions(platform, partner)
    assert [v.version for v in listed] == [6, 5, 4, 3, 2, 1]
    assert [v.status for v in listed] == ["current"] + ["expiring"] * 5
    # The newest version is the merchant's current key.
    current = keys[versions.index(6)]
    m = await platform.merchant_by_partner(partner, fresh=True)
    assert m.public_key == current
    assert await merchants.public_key_version(platform, m, None) == current


async def test_concurrent_requests_for_test_credentials_make_one_test_merchant(platform: Platform) -> None:
    live = (await f.merchant(platform)).merchant
    made = await asyncio.gather(*(merchants.test_merchant_of(platform, live.partner_id) for _ in range(4)))
    assert len({m.merchant.partner_id for m in made}) == 1
    assert sum(m.merchant_private_key is not None for m in made) == 1  # the key is handed out once
    assert [m.partner_id for m in await merchants.list_merchants(platform)] == [
        live.partner_id,
        made[0].merchant.partner_id,
    ]
