"""The till's heartbeat timer: beats reach a running gateway, and a silent gateway never holds the till."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLE_CATALOG, FLAT_WHITE, Shop, run_in_thread, scan, shop, until

from conftest import test_settings
from tillpay.domain.heartbeat import Liveness
from tillpay.ecr.app import EcrApp
from tillpay.ecr.config import ConfigError, EcrConfig
from tillpay.ecr.heartbeat import HeartbeatSender
from tillpay.ecr.till import Till
from tillpay.services import heartbeats
from tillpay.services.platform import Platform

pytestmark = pytest.mark.anyio
__all__ = ["shop"]  # the fixture, imported for pytest


async def gateway_view(db_url: str, partner: str) -> tuple[str, dict[str, heartbeats.TerminalHealth]]:
    """The merchant's MD5 key and its terminals' heartbeats, read from the gateway's database."""
    p = Platform(test_settings(db_url))
    try:
        m = await p.merchant_by_partner(partner)
        return m.md5_key, {h.terminal_id: h for h in await heartbeats.terminal_health(p, m.id)}
    finally:
        await p.close()


async def test_the_ecr_timer_sends_heartbeats_to_the_gateway_and_signs_off_on_close(shop: Shop) -> None:
    key, before = await gateway_view(shop.db, shop.cfg.partner)
    assert before == {}
    till = shop.till(md5_key=key, heartbeat_interval=0.3)
    app = EcrApp(till)

    async def beats() -> int:
        h = (await gateway_view(shop.db, shop.cfg.partner))[1].get("T3")
        return h.beats if h else 0

    async with app.run_test(size=(120, 40)) as pilot:
        await scan(pilot, FLAT_WHITE)  # the till works as ever while the timer runs
        assert [line.name for line in till.basket.lines] == ["Flat white"]
        deadline = time.monotonic() + 20
        while await beats() < 3:
            assert time.monotonic() < deadline, f"no heartbeats: {till.heartbeat.last_error}"
            await pilot.pause(0.1)
    assert till.heartbeat.failed == 0 and till.heartbeat.sent >= 3
    t3 = (await gateway_view(shop.db, shop.cfg.partner))[1]["T3"]
    assert t3.liveness is Liveness.ONLINE and t3.store_id == "S-7" and t3.equipment_type == "ECR"
    await run_in_thread(till.close)  # the ECR's exit: one last SIGNOFF
    t3 = (await gateway_view(shop.db, shop.cfg.partner))[1]["T3"]
    assert t3.action == "SIGNOFF" and t3.liveness is Liveness.SIGNED_OFF


class BlackHole:
    """A loopback TCP server that accepts connections and never answers: a gateway that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def cfg_for(url: str, tmp_path: Path, **changes: Any) -> EcrConfig:
    (tmp_path / "catalog.csv").write_bytes(EXAMPLE_CATALOG.read_bytes())
    base: dict[str, Any] = dict(
        gateway_url=url,
        partner="2088000000000001",
        sign_type="MD5",
        md5_key="k" * 32,
        terminal_id="T9",
        store_id="S-9",
        http_timeout=1,
        heartbeat_interval=0.2,
        heartbeat_timeout=0.5,
        source=str(tmp_path / "tillpay-ecr.toml"),
    )
    return EcrConfig(**(base | changes))


async def test_a_gateway_that_never_answers_heartbeats_never_holds_the_cashier(
    black_hole: BlackHole, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tillpay.ecr.heartbeat")
    till = Till(cfg_for(black_hole.url, tmp_path, heartbeat_timeout=6))
    app = EcrApp(till)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: black_hole.accepted >= 1, within=5)  # the first beat hangs...
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, FLAT_WHITE)
        # ...and the scans were answered meanwhile: the heartbeat is still waiting, the basket is not.
        assert till.basket.lines[0].qty == 2 and till.heartbeat.failed == 0
        await until(pilot, lambda: till.heartbeat.failed >= 1, within=10)
    assert till.heartbeat.sent == 0 and "Timeout" in (till.heartbeat.last_error or "")
    assert any("heartbeat SIGNON failed for terminal T9" in r.getMessage() for r in caplog.records)
    started = time.monotonic()
    await run_in_thread(till.close)  # a hanging beat and the SIGNOFF each give up within the timeout
    assert time.monotonic() - started < 2 * 6 + 2


@pytest.mark.parametrize(
    "changes",
    [
        dict(heartbeat_interval=0),
        dict(md5_key="", sign_type="RSA2", merchant_private_key="x", gateway_public_key="y"),
    ],
)
def test_heartbeats_are_off_without_an_interval_or_a_salt(
    black_hole: BlackHole, tmp_path: Path, changes: dict[str, Any]
) -> None:
    sender = HeartbeatSender(cfg_for(black_hole.url, tmp_path, **changes))
    assert not sender.enabled
    sender.start()
    time.sleep(0.5)
    sender.stop()
    assert black_hole.accepted == 0 and sender.sent == sender.failed == 0


@pytest.mark.parametrize(
    "changes", [dict(heartbeat_interval=-1), dict(heartbeat_timeout=0), dict(heartbeat_timeout=120)]
)
def test_bad_heartbeat_settings_are_refused(tmp_path: Path, changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="heartbeat"):
        cfg_for("http://127.0.0.1:1", tmp_path, **changes)


def test_the_heartbeat_body_names_the_till_and_its_digest_is_salted_with_the_md5_key(tmp_path: Path) -> None:
    import hashlib
    import json

    sender = HeartbeatSender(cfg_for("http://127.0.0.1:1", tmp_path))
    body = sender.body("SIGNON")
    info = json.loads(body)["heartBeat"][0]
    assert info["terminalId"] == "T9" and info["storeId"] == "S-9" and info["partnerId"] == "2088000000000001"
    assert info["action"] == "SIGNON" and info["productCode"] == "OVERSEAS_MBARCODE_PAY"
    from tillpay import signing

    assert signing.salted_sha256(body, "k" * 32) == hashlib.sha256(body + b"k" * 32).hexdigest()


def test_init_writes_the_heartbeat_timer_and_the_file_round_trips(tmp_path: Path) -> None:
    import os
    import subprocess

    from harness import TILLPAY

    run = [*TILLPAY, "ecr", "init", "--gateway-url", "http://127.0.0.1:8000", "--partner", "2088000000000001"]
    run += ["--sign-type", "MD5", "--md5-key", "k" * 32, "--heartbeat-interval", "15"]
    proc = subprocess.run(
        [*run, "--heartbeat-timeout", "2"], cwd=tmp_path, env={**os.environ}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    cfg = EcrConfig.load(tmp_path / "tillpay-ecr.toml")
    assert (cfg.heartbeat_interval, cfg.heartbeat_timeout, cfg.log_file) == (15, 2, "ecr.log")
    assert HeartbeatSender(cfg).enabled
    off = subprocess.run(
        [*run[:-1], "0", "--config", "off.toml"],
        cwd=tmp_path,
        env={**os.environ},
        capture_output=True,
        text=True,
    )
    assert off.returncode == 0, off.stderr
    assert not HeartbeatSender(EcrConfig.load(tmp_path / "off.toml")).enabled
