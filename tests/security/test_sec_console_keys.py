"""Issue 14, finding 7 in the console: key versions with their status, revoked from the console."""

from __future__ import annotations

import pytest

import factories as f
from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import console, merchants
from tillpay.services.platform import FakeClock, Platform

pytestmark = pytest.mark.anyio


async def test_the_console_shows_key_states_and_revokes_an_old_version(
    platform: Platform, clock: FakeClock
) -> None:
    new = await f.merchant(platform, "CNY")
    m = new.merchant
    pem = signing.public_key_pem(signing.generate_private_key().public_key())
    await console.rotate_key(platform, m, pem)  # version 2; version 1 in its grace period
    states = [(k.version, k.current, k.status) for k in await console.key_versions(platform, m)]
    assert states == [(2, True, "current"), (1, False, "expiring")]
    clock.advance(platform.settings.key_grace_seconds + 1)
    assert [k.status for k in await console.key_versions(platform, m)] == ["current", "expired"]
    with pytest.raises(TillpayError) as e:
        await merchants.public_key_version(platform, m, 1)
    assert e.value.code is Code.HAS_NO_PUBLICKEY
    await console.rotate_key(platform, m, signing.public_key_pem(signing.generate_private_key().public_key()))
    await console.revoke_key(platform, m, "2")
    assert [k.status for k in await console.key_versions(platform, m)] == ["current", "revoked", "expired"]
    for bad in ("3", "x", ""):
        with pytest.raises(TillpayError):
            await console.revoke_key(platform, m, bad)
