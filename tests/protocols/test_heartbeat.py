"""Terminal heartbeats over real HTTP (``/monitor/api/heartbeat/isv``), on SQLite and PostgreSQL.

The requests are built here from the wire rules in docs/heartbeat.md (``AD:global/heartbeat``: JSON
``{"heartBeat": [...]}``, head fields ``version``, ``isvId``, ``reqTime``, ``digest``), with hashlib
directly rather than Tillpay's signing code, so a change to either side shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import LiveServer
from tillpay import signing
from tillpay.services import heartbeats, merchants
from tillpay.services.merchants import NewMerchant

PATH = "/monitor/api/heartbeat/isv"
REQ_TIME = "2026-11-26T10:00:00.253+08:00"


def beat(terminal: str, partner: str, **extra: Any) -> dict[str, Any]:
    """One HeartBeatInfo with the page's field names."""
    return {
        "secondaryMerchantId": "SM-1",
        "storeId": "S-1",
        "partnerId": partner,
        "productCode": "OVERSEAS_MBARCODE_PAY",
        "sceneCode": "PAYMENT_QRCODE",
        "equipmentType": "ECR",
        "terminalId": terminal,
        "networkType": "LAN",
        "action": "SIGNON",
        **extra,
    }


def post(
    live: LiveServer,
    body: bytes,
    *,
    isv_id: str,
    salt: str,
    digest: str | None = None,
    req_time: str | None = REQ_TIME,
    **kw: Any,
) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "version": "1.0.1",
        "isvId": isv_id,
        "digest": digest if digest is not None else hashlib.sha256(body + salt.encode()).hexdigest(),
    }
    if req_time is not None:
        headers["reqTime"] = req_time
    return httpx.post(live.url + PATH, content=body, headers=headers, timeout=10, **kw)


def body_of(*beats: dict[str, Any]) -> bytes:
    return json.dumps({"heartBeat": list(beats)}).encode()


def seen(live: LiveServer, m: NewMerchant) -> dict[str, heartbeats.TerminalHealth]:
    rows = live.run(lambda p: heartbeats.terminal_health(p, m.merchant.id))
    return {r.terminal_id: r for r in rows}


@pytest.fixture
def shop(live: LiveServer) -> Iterator[NewMerchant]:
    yield live.run(lambda p: merchants.add_merchant(p, name="Heartbeat Cafe", settlement_currency="USD"))


def test_the_digest_is_hex_sha256_of_the_body_followed_by_the_salt() -> None:
    body = b'{"heartBeat":[{"terminalId":"T1"}]}'
    salt = "abcdefghijklmnopqrstuvwxyz012345"
    vector = "dd019d22e25e90c079181c0c81b1a134eee3badba669fa2afd4538b69f9dccec"
    assert signing.salted_sha256(body, salt) == vector
    assert signing.salted_sha256_verify(body, salt, vector.upper())
    assert not signing.salted_sha256_verify(body, salt + "x", vector)
    assert not signing.salted_sha256_verify(body, salt, "é" * 64)  # not ASCII: refused, not an error


def test_a_good_heartbeat_records_each_terminal_once_and_counts_its_beats(
    live: LiveServer, shop: NewMerchant
) -> None:
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    r = post(live, body_of(beat("T1", pid), beat("T2", pid, networkType="WIFI")), isv_id=pid, salt=key)
    assert r.status_code == 200, r.text
    assert r.json() == {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}
    rows = seen(live, shop)
    assert set(rows) == {"T1", "T2"}
    assert rows["T2"].network_type == "WIFI" and rows["T1"].equipment_type == "ECR"
    assert rows["T1"].store_id == "S-1" and rows["T1"].beats == 1 and not rows["T1"].registered
    assert rows["T1"].reported_at is not None and rows["T1"].reported_at.utcoffset() is not None
    assert rows["T1"].reported_at.isoformat().startswith("2026-11-26T02:00:00.253")

    r = post(live, body_of(beat("T1", pid, action="SIGNOFF")), isv_id=pid, salt=key)
    assert r.status_code == 200, r.text
    rows = seen(live, shop)
    assert rows["T1"].beats == 2 and rows["T1"].action == "SIGNOFF" and rows["T2"].beats == 1
    assert str(rows["T1"].liveness) == "signed off"
    assert len(rows) == 2  # an update in place, not a new row per beat


def test_a_wrong_digest_and_an_unknown_partner_get_the_same_refusal_and_record_nothing(
    live: LiveServer, shop: NewMerchant
) -> None:
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    other = live.run(lambda p: merchants.add_merchant(p, name="Other", settlement_currency="USD"))
    body = body_of(beat("T1", pid))
    answers = [
        post(live, body, isv_id=pid, salt=key + "x"),  # wrong salt
        post(live, body, isv_id=pid, salt=key, digest=""),  # no digest
        post(live, body, isv_id=pid, salt=key, digest="0" * 64),
        post(live, body, isv_id="2088999999999999", salt=key),  # unknown partner, valid-looking
        post(live, body, isv_id="not-a-partner", salt=key),
        # Another merchant's id with this merchant's key: the key belongs to the isvId, not the body.
        post(
            live, body_of(beat("T1", other.merchant.partner_id)), isv_id=other.merchant.partner_id, salt=key
        ),
    ]
    for r in answers:
        assert r.status_code == 401, r.text
        assert r.json()["result"]["resultCode"] == "INVALID_SIGNATURE"
    assert len({r.content for r in answers}) == 1  # nothing tells an unknown partner from a wrong key
    assert seen(live, shop) == {} and seen(live, other) == {}


def test_an_oversized_body_is_refused_unread_and_records_nothing(live: LiveServer, shop: NewMerchant) -> None:
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    huge = body_of(beat("T1", pid, filler="x" * 70_000))
    r = post(live, huge, isv_id=pid, salt=key)
    assert r.status_code == 413 and r.json()["result"]["resultCode"] == "PARAM_ILLEGAL"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count as it reads
        for i in range(0, len(huge), 4096):
            yield huge[i : i + 4096]

    digest = hashlib.sha256(huge + key.encode()).hexdigest()
    r = httpx.post(
        live.url + PATH,
        content=chunks(),
        headers={"isvId": pid, "digest": digest, "reqTime": REQ_TIME},
        timeout=10,
    )
    assert r.status_code == 413
    assert seen(live, shop) == {}


@pytest.mark.parametrize(
    "payload, req_time, needle",
    [
        ({"heartBeat": []}, REQ_TIME, "non-empty"),
        ({"beats": [{"terminalId": "T1"}]}, REQ_TIME, "heartBeat"),
        ({"heartBeat": [{"terminalId": "T1"}, {"storeId": "S-1"}]}, REQ_TIME, "heartBeat[1].terminalId"),
        ({"heartBeat": [{"terminalId": "T1"}, {"terminalId": "<script>"}]}, REQ_TIME, "terminalId"),
        ({"heartBeat": [{"terminalId": "T1", "networkType": 5}]}, REQ_TIME, "networkType"),
        ({"heartBeat": [{"terminalId": "T1", "partnerId": "2088000000000009"}]}, REQ_TIME, "isvId"),
        ({"heartBeat": [{"terminalId": f"T{i}"} for i in range(101)]}, REQ_TIME, "at most 100"),
        ({"heartBeat": [{"terminalId": "T1"}]}, None, "reqTime"),
        ({"heartBeat": [{"terminalId": "T1"}]}, "2026-11-26 10:00:00", "offset"),
    ],
)
def test_a_malformed_heartbeat_is_refused_whole(
    live: LiveServer, shop: NewMerchant, payload: dict[str, Any], req_time: str | None, needle: str
) -> None:
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    r = post(live, json.dumps(payload).encode(), isv_id=pid, salt=key, req_time=req_time)
    assert r.status_code == 400, r.text
    assert (
        r.json()["result"]["resultCode"] == "PARAM_ILLEGAL" and needle in r.json()["result"]["resultMessage"]
    )
    assert seen(live, shop) == {}  # not even the good entry before the bad one


def test_not_json_is_refused_after_the_digest(live: LiveServer, shop: NewMerchant) -> None:
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    assert post(live, b"\xff{not json", isv_id=pid, salt=key).status_code == 400
    assert post(live, b"\xff{not json", isv_id=pid, salt="wrong").status_code == 401


def test_new_terminal_ids_beyond_the_limit_are_refused_known_ones_keep_beating(db_url: str) -> None:
    live = LiveServer(db_url, heartbeat_max_terminals=2)
    try:
        m = live.run(lambda p: merchants.add_merchant(p, name="Busy", settlement_currency="USD"))
        pid, key = m.merchant.partner_id, m.merchant.md5_key
        assert post(live, body_of(beat("T1", pid), beat("T2", pid)), isv_id=pid, salt=key).status_code == 200
        r = post(live, body_of(beat("T1", pid), beat("T3", pid)), isv_id=pid, salt=key)
        assert r.status_code == 400 and "at most 2 terminals" in r.json()["result"]["resultMessage"]
        rows = seen(live, m)
        assert set(rows) == {"T1", "T2"} and rows["T1"].beats == 1  # the refused request changed nothing
        assert post(live, body_of(beat("T2", pid)), isv_id=pid, salt=key).status_code == 200
        assert seen(live, m)["T2"].beats == 2
    finally:
        live.stop()
