"""The console's terminal heartbeats in Chromium against ``tillpay serve`` (SQLite and PostgreSQL).

Tills beat over real HTTP with a digest built here from the wire rules (docs/heartbeat.md); the
Stores page shows each terminal's last heartbeat, lists a terminal heard from but never registered,
and flags one that has gone quiet (the threshold is set to a few seconds for the test).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browserkit import Served
from test_console_browser import Shop, browser_page, chromium, shot, sign_in

from conftest import make_database
from tillpay.services import stores

__all__ = ["browser_page", "chromium"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow
QUIET_SECONDS = 3


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("heartbeat")
    dbs = make_database(request.param, request, tmp)
    server = Served(next(dbs), tmp, TILLPAY_HEARTBEAT_QUIET_SECONDS=str(QUIET_SECONDS))
    try:
        yield server
    finally:
        server.stop()
        for _ in dbs:
            pass


def beat(served: Served, partner: str, salt: str, *terminals: str) -> None:
    body = json.dumps(
        {
            "heartBeat": [
                {
                    "partnerId": partner,
                    "storeId": "S-1",
                    "terminalId": t,
                    "equipmentType": "ECR",
                    "networkType": "LAN",
                    "action": "SIGNON",
                }
                for t in terminals
            ]
        }
    ).encode()
    r = httpx.post(
        served.url + "/monitor/api/heartbeat/isv",
        content=body,
        headers={
            "Content-Type": "application/json",
            "version": "1.0.1",
            "isvId": partner,
            "reqTime": "2026-11-26T10:00:00.000+08:00",
            "digest": hashlib.sha256(body + salt.encode()).hexdigest(),
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text


def row(page: Any, terminal: str) -> str:
    return str(page.locator(f"#heartbeats tr[data-terminal='{terminal}']").inner_text())


def test_the_stores_page_shows_last_heartbeats_and_flags_a_quiet_terminal(
    served: Served, browser_page: Any
) -> None:
    shop = Shop(served)

    async def setup(p: Any) -> str:
        m = await p.merchant_by_partner(shop.partner)
        await stores.add_store(p, m.id, "S-1", "Main Street")
        await stores.add_terminal(p, m.id, "T1", "Front till", "S-1")
        await stores.add_terminal(p, m.id, "T2", "Back till", "S-1")
        return str(m.md5_key)

    salt = served.run(setup)
    beat(served, shop.partner, salt, "T1", "POP-UP-3")
    page = browser_page()
    sign_in(page, served.url, shop.login)
    page.goto(served.url + "/console/stores")
    assert "online" in row(page, "T1") and "Front till" in row(page, "T1") and "LAN" in row(page, "T1")
    assert "never" in row(page, "T2")
    assert "not registered" in row(page, "POP-UP-3") and "online" in row(page, "POP-UP-3")
    assert page.locator("#quiet-alert").count() == 0

    time.sleep(QUIET_SECONDS + 1)  # a real server's clock: nothing to move but time itself
    beat(served, shop.partner, salt, "POP-UP-3")  # still alive
    page.reload()
    assert "quiet" in row(page, "T1")
    assert "online" in row(page, "POP-UP-3")
    alert = page.locator("#quiet-alert").inner_text()
    assert "T1" in alert and "POP-UP-3" not in alert
    shot(page, "10-heartbeats")
