"""``tillpay merchant secondary``: what an acquirer registered over MAPI, listed, disabled and enabled by
the operator as processes, with a served gateway that refuses and then takes a pay naming it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from e2e.test_serve import cli, cli_json, client, code, shop
from tillpay.client import GatewayRejected

__all__ = ["shop"]  # the fixture, used by name

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_list_disable_and_enable_what_an_acquirer_registered(shop: dict[str, Any]) -> None:
    db, partner = shop["db"], shop["merchant"]["partner_id"]
    assert cli_json(db, "merchant", "secondary", "list", partner)["secondary_merchants"] == []
    ts = (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    with client(shop) as c:
        r = c.call(
            "alipay.overseas.secmerchant.offline.maintain",
            {
                "timestamp": ts,
                "secondary_merchant_name": "Dim Sum House",
                "secondary_merchant_id": "MID_77",
                "store_id": "S77",
                "store_name": "Dim Sum House Central",
                "store_country": "HK",
                "store_address": "1 Queen's Road Central",
                "store_industry": "5812",
            },
        )
        assert r.ok, r
    [sm] = cli_json(db, "merchant", "secondary", "list", partner)["secondary_merchants"]
    assert (sm["secondary_merchant_id"], sm["name"], sm["status"]) == ("MID_77", "Dim Sum House", "active")
    assert [(s["store_id"], s["industry"], s["country"]) for s in sm["stores"]] == [("S77", "5812", "HK")]

    out = cli_json(
        db, "merchant", "secondary", "disable", partner, "MID_77", "--store", "S77", "--reason", "audit"
    )
    assert out["status"] == "disabled"
    extend = json.dumps({"secondary_merchant_id": "MID_77", "store_id": "S77"})
    with client(shop) as c:
        with pytest.raises(GatewayRejected) as refused:
            c.call("alipay.acquire.overseas.spot.pay", pay_params(shop, "E-1", extend))
        assert refused.value.error == "ILLEGAL_ARGUMENT"
    [sm] = cli_json(db, "merchant", "secondary", "list", partner)["secondary_merchants"]
    assert (sm["stores"][0]["status"], sm["stores"][0]["reject_reason"]) == ("disabled", "audit")

    cli_json(db, "merchant", "secondary", "enable", partner, "MID_77", "--store", "S77")
    with client(shop) as c:
        assert c.call("alipay.acquire.overseas.spot.pay", pay_params(shop, "E-2", extend)).ok
        q = c.query("E-2")
        assert q.ok

    # A bad or foreign reference is a clear error, not a silent no-op.
    proc = cli(db, "merchant", "secondary", "disable", partner, "MID_NOPE", check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["error"] == "NOT_FOUND"
    proc = cli(db, "merchant", "secondary", "list", "2088000000000999", check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["error"] == "ILLEGAL_PARTNER"
    text = cli(db, "merchant", "secondary", "--help").stdout
    assert "offline.maintain" in text and "queryStatus" in text


def pay_params(shop: dict[str, Any], ptid: str, extend: str) -> dict[str, str]:
    return {
        "alipay_seller_id": shop["merchant"]["partner_id"],
        "partner_trans_id": ptid,
        "buyer_identity_code": code(shop),
        "trans_amount": "12.00",
        "currency": "CNY",
        "trans_name": "Har gow",
        "extend_info": extend,
    }
