"""Issue 14, finding 7 in the console: key versions with their status, revoked from the console; the
owner's sign types and MD5 key rotation (SQLite and PostgreSQL)."""

from __future__ import annotations

import re

import httpx
import pytest

import factories as f
import mapi_helpers
from conftest import LiveServer
from mapi_reference import ReferenceClient
from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.services import console, console_auth, merchants
from tillpay.services.platform import FakeClock, Platform
from tillpay.store import tables as t
from web.test_wallet_http import csrf_of


@pytest.mark.anyio
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


# ------------------------------------------------------------------ sign types and MD5 key, in the console

OWNER_PASSWORD = "owner-password-1234"
QUERY = "alipay.acquire.overseas.query"


def _console_user(live: LiveServer, partner: str, role: str) -> httpx.Client:
    login = f"{role}-{partner}@shop.test"
    live.run(
        lambda p: console_auth.add_user(
            p, partner_id=partner, login=login, password=OWNER_PASSWORD, role=role
        )
    )
    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post(
        "/console/login", data={"login": login, "password": OWNER_PASSWORD, "csrf": csrf_of(page.text)}
    )
    assert r.status_code == 303, r.text
    return c


def _query_error(client: ReferenceClient) -> str | None:
    """None when the query was accepted (``is_success=T``), else the refusal's error."""
    answer = client.send(client.signed(QUERY, {"partner_trans_id": "none"}))
    return None if answer.is_success else answer.error


def test_the_owner_rotates_the_md5_key_and_limits_sign_types_in_the_console(live: LiveServer) -> None:
    shop = mapi_helpers.make_shop(live, currency="CNY")
    old_key = shop.new.merchant.md5_key
    md5, rsa2 = shop.reference(live, sign_type="MD5"), shop.reference(live, sign_type="RSA2")
    c = _console_user(live, shop.partner, "owner")
    page = c.get("/console/integration").text
    assert 'id="md5-form"' in page and 'id="sign-types-form"' in page

    # A new MD5 key, the old one ended at once: shown on the answer only, never in its URL.
    r = c.post("/console/integration/md5-rotate", data={"csrf": csrf_of(page), "end_old_now": "1"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    new_key = re.search(r'id="new-md5-key">[^<]*<code>([A-Za-z0-9]+)</code>', r.text)
    assert new_key and new_key.group(1) != old_key
    assert _query_error(md5) == "ILLEGAL_SIGN"  # the old key
    md5.md5_key = new_key.group(1)
    assert _query_error(md5) is None
    assert new_key.group(1) not in c.get("/console/integration").text  # shown once

    # RSA2 only: MD5 requests are refused (the MD5 key is disabled) and its rotation too.
    csrf = csrf_of(c.get("/console/integration").text)
    r = c.post("/console/integration/sign-types", data={"csrf": csrf, "sign_type": ["RSA2"]})
    assert r.status_code == 303 and "done=" in r.headers["location"]
    assert _query_error(md5) == "ILLEGAL_SIGN_TYPE"
    assert _query_error(rsa2) is None
    r = c.post("/console/integration/md5-rotate", data={"csrf": csrf})
    assert r.status_code == 303 and "error=" in r.headers["location"]
    md5.md5_key = new_key.group(1)
    assert _query_error(md5) == "ILLEGAL_SIGN_TYPE"  # not rotated

    # Nothing allowed is refused; all four allowed is "all".
    r = c.post("/console/integration/sign-types", data={"csrf": csrf})
    assert r.status_code == 303 and "error=" in r.headers["location"]
    assert _query_error(rsa2) is None
    r = c.post(
        "/console/integration/sign-types", data={"csrf": csrf, "sign_type": ["MD5", "RSA", "RSA2", "RSA256"]}
    )
    assert r.status_code == 303
    assert live.run(lambda p: p.merchant_by_partner(shop.partner, fresh=True)).sign_types is None
    assert _query_error(md5) is None
    c.close()

    # A manager sees the integration page but changes no key.
    m = _console_user(live, shop.partner, "manager")
    page = m.get("/console/integration").text
    assert 'id="md5-form"' not in page
    assert m.post("/console/integration/md5-rotate", data={"csrf": csrf_of(page)}).status_code == 403
    assert _query_error(md5) is None
    m.close()


@pytest.mark.anyio
async def test_the_console_refuses_sign_types_that_leave_the_merchant_nothing_to_sign_with(
    platform: Platform,
) -> None:
    md5_only = (await merchants.add_merchant(platform, name="MD5 only", settlement_currency="CNY")).merchant
    assert md5_only.public_key is None or md5_only.public_key
    if md5_only.public_key:  # the factory may give every merchant an RSA key: take it away for this case
        async with platform.engine.begin() as conn:
            await conn.execute(
                t.merchants.update().where(t.merchants.c.id == md5_only.id).values(public_key=None)
            )
        md5_only = await platform.merchant_by_partner(md5_only.partner_id, fresh=True)
    for chosen in ([], ["RSA2"], ["RSA", "RSA256"], ["SHA1"]):
        with pytest.raises(TillpayError) as e:
            await console.set_sign_types(platform, md5_only, chosen)
        assert e.value.code is Code.ILLEGAL_ARGUMENT
    assert (await console.set_sign_types(platform, md5_only, ["md5"])).sign_types == frozenset({"MD5"})
