"""A captured heartbeat cannot be replayed to make a dead terminal look alive (issue 14, a leftover of
finding 8's replay window): the body's ``reqTime``, which the digest covers, must be fresh and newer than
the terminal's last recorded beat. Real HTTP on loopback, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import LiveServer
from protocols.test_heartbeat import beat, post, seen
from tillpay.ecr.config import EcrConfig
from tillpay.ecr.heartbeat import HeartbeatSender
from tillpay.services import merchants
from tillpay.services.merchants import NewMerchant


def _signed_body(partner: str, when: datetime, terminal: str = "T1", action: str = "SIGNON") -> bytes:
    doc = {
        "heartBeat": [beat(terminal, partner, action=action)],
        "reqTime": when.isoformat(timespec="milliseconds"),
    }
    return json.dumps(doc).encode()


def _shop(live: LiveServer) -> NewMerchant:
    return live.run(lambda p: merchants.add_merchant(p, name="Replay Cafe", settlement_currency="USD"))


def test_a_replayed_heartbeat_is_not_recorded(live: LiveServer) -> None:
    shop = _shop(live)
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    now = datetime.now(UTC)
    first = _signed_body(pid, now - timedelta(seconds=120))
    assert post(live, first, isv_id=pid, salt=key).status_code == 200
    recorded = seen(live, shop)["T1"]
    assert recorded.beats == 1
    # The same request again, with any header time it likes: answered, and nothing changes.
    for header_time in (None, now.isoformat(timespec="milliseconds")):
        r = post(live, first, isv_id=pid, salt=key, req_time=header_time or recorded.reported_at.isoformat())
        assert r.status_code == 200, r.text
        again = seen(live, shop)["T1"]
        assert again.beats == 1 and again.last_seen_at == recorded.last_seen_at
    # A newer beat is recorded; then the older one, replayed, is not.
    newer = _signed_body(pid, now - timedelta(seconds=60), action="SIGNOFF")
    assert post(live, newer, isv_id=pid, salt=key).status_code == 200
    assert seen(live, shop)["T1"].beats == 2
    assert post(live, first, isv_id=pid, salt=key).status_code == 200
    assert seen(live, shop)["T1"].beats == 2 and seen(live, shop)["T1"].action == "SIGNOFF"
    # A body without a time cannot stand in for this terminal's beats any more.
    unsigned = json.dumps({"heartBeat": [beat("T1", pid)]}).encode()
    assert post(live, unsigned, isv_id=pid, salt=key).status_code == 200
    assert seen(live, shop)["T1"].beats == 2 and seen(live, shop)["T1"].action == "SIGNOFF"


def test_a_stale_or_malformed_signed_time_is_refused(live: LiveServer) -> None:
    shop = _shop(live)
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    now = datetime.now(UTC)
    for when in (now - timedelta(minutes=16), now + timedelta(minutes=16)):
        r = post(live, _signed_body(pid, when), isv_id=pid, salt=key)
        assert r.status_code == 400 and "reqTime" in r.json()["result"]["resultMessage"], r.text
    for bad in ("yesterday", "2026-11-26T10:00:00", 1764500000000):
        body = json.dumps({"heartBeat": [beat("T1", pid)], "reqTime": bad}).encode()
        r = post(live, body, isv_id=pid, salt=key)
        assert r.status_code == 400 and r.json()["result"]["resultCode"] == "PARAM_ILLEGAL", r.text
    assert "T1" not in seen(live, shop)


def test_a_terminal_that_never_signed_its_time_keeps_beating(live: LiveServer) -> None:
    shop = _shop(live)
    pid, key = shop.merchant.partner_id, shop.merchant.md5_key
    body = json.dumps({"heartBeat": [beat("OLD-1", pid)]}).encode()
    for _ in range(2):
        assert post(live, body, isv_id=pid, salt=key).status_code == 200
    assert seen(live, shop)["OLD-1"].beats == 2


def test_the_till_signs_a_newer_time_on_every_beat(live: LiveServer, tmp_path: Path) -> None:
    shop = _shop(live)
    cfg = EcrConfig(
        gateway_url=live.url,
        partner=shop.merchant.partner_id,
        sign_type="MD5",
        md5_key=shop.merchant.md5_key,
        terminal_id="T9",
        store_id="S-9",
        heartbeat_interval=3600,  # the timer sends the first beat only; the test sends the rest
        heartbeat_timeout=10,
        source=str(tmp_path / "tillpay-ecr.toml"),
    )
    frozen = datetime.now(UTC)
    sender = HeartbeatSender(cfg, now=lambda: frozen)  # a clock that does not move: still newer each time
    sender.start()
    try:
        deadline = time.monotonic() + 20
        while sender.sent < 1:  # the timer's first beat, before the test's own (one sender at a time)
            assert time.monotonic() < deadline, sender.last_error
            time.sleep(0.02)
        for _ in range(3):
            assert sender.send("SIGNON"), sender.last_error
    finally:
        sender.stop()
    rows = seen(live, shop)
    assert rows[cfg.terminal_id].beats == 5  # the one at start, the three, and the SIGNOFF on stop
    assert rows[cfg.terminal_id].action == "SIGNOFF"
