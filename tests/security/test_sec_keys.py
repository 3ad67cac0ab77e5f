"""Issue 14, finding 7: keys that can be revoked, on SQLite and PostgreSQL (live servers on loopback).

Older Antom key versions stop verifying after a grace period or at once when revoked; each merchant's
sign types can be limited (which disables the MD5 key); the MD5 key can be rotated with a grace period.
"""

from __future__ import annotations

import json
import time

from click.testing import CliRunner

import dialect_clients
import mapi_helpers
from conftest import LiveServer
from tillpay import signing
from tillpay.cli import main as cli
from tillpay.domain.errors import Code, TillpayError
from tillpay.protocols.mapi import signing as mapi_signing
from tillpay.services import merchants

QUERY = "alipay.acquire.overseas.query"
#: The server caches a merchant for up to two seconds (platform.MERCHANT_CACHE_SECONDS).
CACHE = 2.2


def _inquiry(c: dialect_clients.AntomClient) -> tuple[str, str]:
    return c.raw("inquiryPayment", json.dumps({"paymentRequestId": "none"})).result


def test_old_antom_key_versions_expire_after_the_grace_or_when_revoked(live: LiveServer) -> None:
    shop = dialect_clients.make_shop(live)
    partner = shop.merchant.partner_id
    v1 = shop.antom()
    assert _inquiry(v1) == ("F", "ORDER_NOT_EXIST")
    key2, key3 = signing.generate_private_key(), signing.generate_private_key()
    # The default grace: version 1 still verifies after version 2 is added.
    assert (
        live.run(lambda p: merchants.add_key_version(p, partner, signing.public_key_pem(key2.public_key())))
        == 2
    )
    assert _inquiry(v1) == ("F", "ORDER_NOT_EXIST")
    v2 = shop.antom()
    v2.private_key, v2.key_version = signing.private_key_pem(key2), "2"
    assert _inquiry(v2) == ("F", "ORDER_NOT_EXIST")
    # Revoked: refused at once, whatever its grace.
    live.run(lambda p: merchants.revoke_key_version(p, partner, 1))
    assert _inquiry(v1) == ("F", "KEY_NOT_FOUND")
    # The current version cannot be revoked; an unknown one is not found.
    for version, code in ((2, Code.ILLEGAL_ARGUMENT), (9, Code.NOT_FOUND)):
        try:
            live.run(lambda p, v=version: merchants.revoke_key_version(p, partner, v))
        except TillpayError as e:
            assert e.code is code
        else:
            raise AssertionError(f"revoking version {version} succeeded")
    # No grace: version 2 stops verifying as soon as version 3 is added.
    live.run(lambda p: merchants.add_key_version(p, partner, signing.public_key_pem(key3.public_key()), 0))
    assert _inquiry(v2) == ("F", "KEY_NOT_FOUND")
    v3 = shop.antom()
    v3.private_key, v3.key_version = signing.private_key_pem(key3), "3"
    assert _inquiry(v3) == ("F", "ORDER_NOT_EXIST")
    statuses = [k.status for k in live.run(lambda p: merchants.key_versions(p, partner))]
    assert statuses == ["current", "expired", "revoked"]


def test_sign_types_per_merchant_and_md5_rotation(live: LiveServer) -> None:
    shop = mapi_helpers.make_shop(live, currency="CNY")
    partner = shop.partner
    old_key = shop.new.merchant.md5_key
    md5 = shop.reference(live, sign_type="MD5")
    rsa2 = shop.reference(live, sign_type="RSA2")
    assert md5.call(QUERY, partner_trans_id="none")["result_code"] == "FAIL"
    # RSA only: MD5 is refused, so the MD5 key is disabled.
    live.run(lambda p: merchants.set_sign_types(p, partner, ["RSA2", "RSA256"]))
    time.sleep(CACHE)
    refused = md5.send(md5.signed(QUERY, {"partner_trans_id": "none"}))
    assert not refused.is_success and refused.error == "ILLEGAL_SIGN_TYPE" and refused.sign is None
    assert rsa2.call(QUERY, partner_trans_id="none")["result_code"] == "FAIL"
    live.run(lambda p: merchants.set_sign_types(p, partner, None))
    # Rotation with the default grace: the old key still works (answered with the old key), and the new.
    new_key = live.run(lambda p: merchants.rotate_md5_key(p, partner))
    time.sleep(CACHE)
    assert new_key != old_key
    assert md5.call(QUERY, partner_trans_id="none")["result_code"] == "FAIL"  # checked with the old key
    md5_new = shop.reference(live, sign_type="MD5")
    md5_new.md5_key = new_key
    assert md5_new.call(QUERY, partner_trans_id="none")["result_code"] == "FAIL"
    # Without grace the old key stops at once.
    newer = live.run(lambda p: merchants.rotate_md5_key(p, partner, 0))
    time.sleep(CACHE)
    md5_new.md5_key = newer
    assert md5_new.call(QUERY, partner_trans_id="none")["result_code"] == "FAIL"
    for stale in (old_key, new_key):
        md5.md5_key = stale
        answer = md5.send(md5.signed(QUERY, {"partner_trans_id": "none"}))
        assert not answer.is_success and answer.error == "ILLEGAL_SIGN"
    # The settlement API follows the same rules.
    q = {"service": "tillpay.settlement.files", "partner": partner, "timestamp": str(int(time.time() * 1000))}
    q["sign"] = mapi_signing.sign_request(q, sign_type="MD5", md5_key=new_key)
    q["sign_type"] = "MD5"
    import httpx

    assert httpx.get(f"{live.url}/settlement/files", params=q).status_code == 401


def test_the_key_commands(live: LiveServer) -> None:
    shop = dialect_clients.make_shop(live)
    partner = shop.merchant.partner_id
    url = live.settings.database_url
    runner = CliRunner()

    def run(*args: str) -> dict[str, object]:
        result = runner.invoke(cli, ["--json", "--database-url", url, "merchant", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    assert run("sign-types", partner, "rsa2", "RSA256")["sign_types"] == ["RSA2", "RSA256"]
    time.sleep(CACHE)
    rsa = shop.open(sign_type="RSA").call("alipay.trade.query", {"out_trade_no": "X"})
    assert (rsa.code, rsa.sub_code) == ("40002", "isv.invalid-signature-type")
    assert shop.open().call("alipay.trade.query", {"out_trade_no": "X"}).sub_code == "ACQ.TRADE_NOT_EXIST"
    assert _inquiry(shop.antom()) == ("F", "ORDER_NOT_EXIST")
    assert run("sign-types", partner, "MD5")["sign_types"] == ["MD5"]
    time.sleep(CACHE)
    assert _inquiry(shop.antom()) == ("F", "INVALID_SIGNATURE")
    assert run("sign-types", partner, "--all")["sign_types"] is None
    bad = runner.invoke(cli, ["--database-url", url, "merchant", "sign-types", partner, "SHA1"])
    assert bad.exit_code != 0
    key = str(run("md5-rotate", partner, "--grace-seconds", "60")["md5_key"])
    assert len(key) >= 16
    listing = run("keys", partner)
    assert listing["keys"] == [
        {
            "key_version": 1,
            "status": "current",
            "created_at": listing["keys"][0]["created_at"],  # type: ignore[index]
            "expires_at": None,
            "revoked_at": None,
        }
    ]
