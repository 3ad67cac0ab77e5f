"""Sample notifications from the console (a CSRF-protected POST, owner or manager) and from
``tillpay merchant notify-samples``, against a live production server: the test merchant gets them, the
live merchant is refused, a second batch within the minute is answered with when to try again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

import factories as f
from conftest import LOOPBACK_RECEIVERS_ENV, LiveServer
from services.test_notify_samples import AckReceiver
from tillpay.cli import main as cli
from tillpay.config import get_settings
from tillpay.services import console, console_auth, merchants
from tillpay.services.platform import Platform
from web.test_notify_inspector_http import PASSWORD, _sign_in
from web.test_wallet_http import csrf_of


@pytest.mark.loopback_receivers
def test_the_console_sends_samples_to_test_credentials_only(live: LiveServer) -> None:
    receiver = AckReceiver()
    try:

        async def setup(p: Platform) -> tuple[str, str, int]:
            live_m = (await f.merchant(p, notify_url=receiver.url)).merchant
            test_m = (await merchants.test_merchant_of(p, live_m.partner_id)).merchant
            # A test merchant has no console users of its own: the live merchant's users switch to its data.
            await console_auth.add_user(
                p,
                partner_id=live_m.partner_id,
                login=f"owner-{live_m.partner_id}@shop.test",
                password=PASSWORD,
                role="owner",
            )
            await console_auth.add_user(
                p,
                partner_id=live_m.partner_id,
                login="clerk@shop.test",
                password=PASSWORD,
                role="cashier-supervisor",
            )
            return live_m.partner_id, test_m.partner_id, test_m.id

        live_partner, _test_partner, test_id = live.run(setup)
        assert not live.settings.sandbox

        # The owner in test data: the button, a POST without the form's token refused, then 10 queued.
        t = _sign_in(live, live_partner)
        home = t.get("/console/").text
        switched = t.post("/console/mode", data={"mode": "test", "next": "/console/", "csrf": csrf_of(home)})
        assert switched.status_code == 303, switched.text
        page = t.get("/console/notifications").text
        assert 'id="send-samples"' in page
        assert t.post("/console/notifications/samples", data={}).status_code == 403
        r = t.post("/console/notifications/samples", data={"csrf": csrf_of(page)})
        assert r.status_code == 303
        assert parse_qs(urlsplit(r.headers["location"]).query) == {"samples": ["10"]}
        shown = t.get(r.headers["location"]).text
        assert "Queued 10 sample notifications" in shown and shown.count('class="inspect"') == 10

        async def delivered(p: Platform) -> int:
            return sum(n.status == "delivered" for n in await console.notifications(p, test_id))

        deadline = time.monotonic() + 30  # the embedded worker delivers them; not a speed check
        while live.run(delivered) < 10:
            assert time.monotonic() < deadline, "the samples were never all delivered"
            time.sleep(0.1)
        assert len(receiver.bodies) == 10 and all(b"SAMPLE" in b for b in receiver.bodies)

        # The default allows 3 batches a minute: two more pass, the fourth is refused, saying when to retry.
        for _ in range(2):
            r = t.post("/console/notifications/samples", data={"csrf": csrf_of(shown)})
            assert parse_qs(urlsplit(r.headers["location"]).query) == {"samples": ["10"]}
        r = t.post("/console/notifications/samples", data={"csrf": csrf_of(shown)})
        error = parse_qs(urlsplit(r.headers["location"]).query)["error"][0]
        assert error.startswith("at most 3 sample batches a minute for a merchant: try again in ")
        assert 'id="error"' in t.get(r.headers["location"]).text

        # A cashier supervisor may not; the owner in live data sees why there is no button and is refused.
        c = _sign_in_login(live, "clerk@shop.test")
        assert (
            c.post(
                "/console/notifications/samples", data={"csrf": csrf_of(c.get("/console/").text)}
            ).status_code
            == 403
        )
        lv = _sign_in(live, live_partner)
        page = lv.get("/console/notifications").text
        assert 'id="send-samples"' not in page and 'id="samples-live"' in page
        r = lv.post("/console/notifications/samples", data={"csrf": csrf_of(page)})
        error = parse_qs(urlsplit(r.headers["location"]).query)["error"][0]
        assert "test credentials" in error
        assert "No notifications yet." in lv.get("/console/notifications").text
        for client in (t, c, lv):
            client.close()
    finally:
        receiver.close()


def _sign_in_login(live: LiveServer, login: str):  # type: ignore[no-untyped-def]
    import httpx

    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post("/console/login", data={"login": login, "password": PASSWORD, "csrf": csrf_of(page.text)})
    assert r.status_code == 303, r.text
    return c


@pytest.fixture
def cli_allows_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command's own settings allow receivers on loopback (it checks the URL against the operator's
    policy too); they are read once per process, so the cached ones are dropped before and after."""
    for name, value in LOOPBACK_RECEIVERS_ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.loopback_receivers
@pytest.mark.usefixtures("cli_allows_loopback")
def test_the_cli_queues_samples_for_a_test_merchant_and_refuses_a_live_one(live: LiveServer) -> None:
    # The server's worker delivers the samples: to a receiver on loopback, never to a name to look up.
    receiver = AckReceiver()
    try:
        _cli_samples(live, receiver.url)
    finally:
        receiver.close()


def _cli_samples(live: LiveServer, notify_url: str) -> None:
    async def setup(p: Platform) -> tuple[str, str]:
        live_m = (await f.merchant(p, notify_url=notify_url)).merchant
        test_m = (await merchants.test_merchant_of(p, live_m.partner_id)).merchant
        return live_m.partner_id, test_m.partner_id

    live_partner, test_partner = live.run(setup)
    url = live.settings.database_url
    runner = CliRunner()
    ok = runner.invoke(
        cli,
        ["--json", "--database-url", url, "merchant", "notify-samples", test_partner, "--dialect", "mapi"],
    )
    assert ok.exit_code == 0, ok.output
    # stdout only: the live server's thread logs (on stderr) while the command runs in this process.
    out = json.loads(ok.stdout)
    assert [s["kind"] for s in out["samples"]] == ["success", "closed", "cancel", "refund"]
    assert all(s["notify_id"].startswith("SAMPLE") for s in out["samples"])
    refused = runner.invoke(
        cli,
        ["--json", "--database-url", url, "merchant", "notify-samples", live_partner],
    )
    assert refused.exit_code == 1, refused.output
    assert json.loads(refused.stdout)["error"] == "ILLEGAL_ARGUMENT"
    assert "test credentials" in json.loads(refused.stdout)["message"]
