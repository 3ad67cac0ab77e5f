"""The console's notification inspector over HTTP: sign-in, one merchant never reads another's
notification, the request as sent with its signature marked, the merchant's answer shown as text, and
the Redeliver button. A real server whose embedded worker delivers to a receiver on loopback, on SQLite
and PostgreSQL."""

from __future__ import annotations

import html
import time
from urllib.parse import parse_qsl

import httpx
import pytest

import factories as f
from conftest import LiveServer
from services.test_notify_inspector import RawReceiver, _paid
from tillpay.services import console, console_auth
from tillpay.services.platform import Platform
from web.test_wallet_http import csrf_of

PASSWORD = "owner-password-1234"
SCRIPT = b"<script>alert(1)</script>"


def _sign_in(live: LiveServer, partner_id: str) -> httpx.Client:
    c = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
    page = c.get("/console/login")
    r = c.post(
        "/console/login",
        data={"login": f"owner-{partner_id}@shop.test", "password": PASSWORD, "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303, r.text
    return c


async def _owner(p: Platform, partner_id: str) -> None:
    await console_auth.add_user(
        p, partner_id=partner_id, login=f"owner-{partner_id}@shop.test", password=PASSWORD, role="owner"
    )


@pytest.mark.loopback_receivers
def test_the_inspector_shows_the_request_and_the_answer_to_its_merchant_only(live: LiveServer) -> None:
    receiver = RawReceiver([SCRIPT])  # the first answer: merchant-controlled markup, never acknowledged
    try:

        async def setup(p: Platform) -> tuple[str, int, str]:
            a = await _paid(p, receiver.url, "HTTP-1")
            b = await f.merchant(p, name="Other")
            await _owner(p, a.merchant.partner_id)
            await _owner(p, b.merchant.partner_id)
            (n,) = await console.notifications(p, a.merchant.id)
            return a.merchant.partner_id, a.merchant.id, b.merchant.partner_id + "|" + n.notify_id

        partner_a, id_a, rest = live.run(setup)
        partner_b, notify_id = rest.split("|")

        async def attempts(p: Platform) -> int:
            return len((await console.notification(p, id_a, notify_id)).attempts)

        deadline = time.monotonic() + 30  # the embedded worker delivers it; not a speed check
        while live.run(attempts) < 1:
            assert time.monotonic() < deadline, "the notification was never attempted"
            time.sleep(0.1)
        (body,) = receiver.bodies
        fields = dict(parse_qsl(body.decode()))
        url = f"/console/notifications/{notify_id}"

        anonymous = httpx.Client(base_url=live.url, follow_redirects=False, timeout=20)
        r = anonymous.get(url)
        assert r.status_code in (302, 303) and "/console/login" in r.headers["location"]
        assert fields["sign"] not in r.text

        a = _sign_in(live, partner_a)
        assert f'href="{url}"' in a.get("/console/notifications").text
        r = a.get(url)
        assert r.status_code == 200
        page = r.text
        # The answer is text, never markup.
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
        # The body as sent (escaped), and the signature marked on its own.
        assert html.escape(body.decode(), quote=False) in page
        assert f"<mark>{html.escape(fields['sign'])}</mark>" in page
        assert "User-Agent" in page and "Content-Length" in page

        # Redeliver from the page comes back to it.
        r = a.post(f"{url}/redeliver", data={"csrf": csrf_of(page), "back": "detail"})
        assert r.status_code == 303 and r.headers["location"].startswith(url + "?")

        # Another merchant's owner: not found, and nothing of it shown.
        b = _sign_in(live, partner_b)
        r = b.get(url)
        assert r.status_code == 404
        assert fields["sign"] not in r.text and notify_id not in b.get("/console/notifications").text
        r = b.post(f"{url}/redeliver", data={"csrf": csrf_of(b.get("/console/notifications").text)})
        assert r.status_code == 404
        assert a.get("/console/notifications/not-an-id").status_code == 404
        for c in (a, b, anonymous):
            c.close()
    finally:
        receiver.close()
