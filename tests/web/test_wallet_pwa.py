"""The wallet as an installable web app over real HTTP: manifest, service worker, what may be kept offline,
and the confirmation screen's reason."""

from __future__ import annotations

import io
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.dates import format_datetime
from PIL import Image
from sqlalchemy import update
from test_wallet_http import browser, csrf_of, make_user, shop, sign_in

from conftest import LiveServer
from tillpay.domain import paycode
from tillpay.services import risk, wallets
from tillpay.store import tables as t
from tillpay.web.wallet import i18n, pages
from tillpay.web.wallet.pages import OFFLINE_HEADER

LANGS = sorted(i18n.LANGUAGES)


def _device(live: LiveServer, user_id: int) -> wallets.Device:
    async def go(p: Any) -> wallets.Device:
        return (await wallets.devices_of(p, user_id))[0]

    return live.run(go)  # type: ignore[no-any-return]


def _code(live: LiveServer, user_id: int) -> str:
    async def go(p: Any) -> str:
        return await wallets.current_code(p, (await wallets.devices_of(p, user_id))[0])

    return live.run(go)  # type: ignore[no-any-return]


def _rules(live: LiveServer, login: str, rules: dict[str, Any]) -> None:
    async def go(p: Any) -> None:
        await risk.set_rules(p, "user", login, rules)

    live.run(go)


def test_the_manifest_installs_the_wallet_to_open_on_the_payment_code(live: LiveServer) -> None:
    with browser(live) as c:
        page = c.get("/wallet/login").text
        assert '<link rel="manifest" href="/wallet/manifest.webmanifest">' in page
        r = c.get("/wallet/manifest.webmanifest", headers={"accept-language": "ja"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/manifest+json")
        m = r.json()
        assert m["start_url"] == "/wallet/code" and m["scope"] == "/wallet/"
        assert m["display"] == "standalone" and m["theme_color"] == "#1456d9"
        assert m["name"] == "Tillpay ウォレット" and m["lang"] == "ja"
        sizes = set()
        for icon in m["icons"]:
            got = c.get(icon["src"])
            assert got.status_code == 200, icon
            if icon["type"] == "image/png":
                w, h = Image.open(io.BytesIO(got.content)).size
                assert f"{w}x{h}" == icon["sizes"]
                sizes.add(w)
        assert {192, 512} <= sizes


def test_the_service_worker_covers_the_wallet_and_keeps_every_asset_it_names(live: LiveServer) -> None:
    with browser(live) as c:
        r = c.get("/wallet/sw.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        # Served from /wallet/ itself, so its default scope is the whole app without Service-Worker-Allowed,
        # under the same narrow policy as the pages; never cached, so a new version is found at once.
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        assert "__" not in r.text, "a placeholder was not filled in"
        version = re.search(r'var VERSION = "([0-9a-f]{16})";', r.text)
        assert version
        assets = re.findall(r'"(/wallet/static/[^"]+)"', r.text)
        assert "/wallet/static/wallet.js" in assets and "/wallet/static/paycode.js" in assets
        for asset in assets:
            assert c.get(asset).status_code == 200, asset
        # Every script and style a page loads is kept, or the page would break offline.
        page = c.get("/wallet/login").text
        loaded = set(re.findall(r'(?:src|href)="(/wallet/static/[^"]+)"', page))
        assert loaded <= set(assets), loaded - set(assets)


def test_only_the_signed_in_users_own_get_pages_may_be_kept_offline(live: LiveServer) -> None:
    _, mapi = shop(live)
    u = make_user(live, balance=1_000_000)
    with mapi:
        paid = mapi.pay("PWA-1", _code(live, u.id), "3.00", "CNY", "Tea")
        big = mapi.pay("PWA-2", _code(live, u.id), "2500.00", "CNY", "Sofa")
    assert paid.ok and big.status == "WAIT_BUYER_PAY"
    with browser(live) as anonymous:
        login = anonymous.get("/wallet/login")
        assert login.status_code == 200 and OFFLINE_HEADER not in login.headers
        assert OFFLINE_HEADER not in anonymous.get("/wallet/code").headers  # the redirect to sign in
    c = sign_in(live, u.login_id)
    for path in ("/wallet/", "/wallet/code", "/wallet/history", f"/wallet/payments/{paid.trade_no}"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert r.headers[OFFLINE_HEADER] == "page", path
        assert 'data-fresh="1"' in r.text
    for path in (f"/wallet/confirm/{big.trade_no}", "/wallet/devices", "/wallet/payments/0000000000000000"):
        assert OFFLINE_HEADER not in c.get(path).headers, path
    # The sign-in page seen by someone signed in redirects; the answer to a form is never kept.
    assert OFFLINE_HEADER not in c.get("/wallet/login").headers
    csrf = csrf_of(c.get("/wallet/").text)
    posted = c.post("/wallet/lang", data={"csrf": csrf, "lang": "en", "next": "/wallet/"})
    assert posted.status_code == 303 and OFFLINE_HEADER not in posted.headers
    c.close()


@pytest.mark.parametrize("lang", LANGS)
def test_kept_pages_carry_a_last_known_notice_with_the_time_they_were_made(
    live: LiveServer, lang: str
) -> None:
    u = make_user(live)
    c = sign_in(live, u.login_id)
    c.cookies.set("tp_lang", lang, path="/wallet")
    c.cookies.set("tp_tz", "Pacific%2FKiritimati", path="/wallet")
    before = datetime.now(UTC).replace(microsecond=0)
    home = c.get("/wallet/").text
    notice = re.search(r'<p class="last-known" id="last-known" role="status" hidden>([^<]+)</p>', home)
    assert notice, "no last-known notice on the home page"
    text = notice.group(1)
    zone = i18n.zone("Pacific/Kiritimati")
    # The page was made between these two moments; its time is written in the phone's zone.
    candidates = {
        format_datetime(datetime.fromtimestamp(s, UTC), "medium", tzinfo=zone, locale=lang)
        for s in range(int(before.timestamp()), int(time.time()) + 2)
    }
    assert any(w in text for w in candidates), (text, candidates)
    wanted = i18n.translations(lang).gettext("Offline: last known as of %(when)s.")
    assert text.startswith(wanted.split("%(when)s")[0].replace("&", "&amp;"))
    assert 'id="last-known"' in c.get("/wallet/history").text
    assert 'id="last-known"' not in c.get("/wallet/code").text  # the code page shows a live code
    c.close()


def _confirm_page(c: httpx.Client, trade_no: str, lang: str) -> str:
    c.cookies.set("tp_lang", lang, path="/wallet")
    r = c.get(f"/wallet/confirm/{trade_no}")
    assert r.status_code == 200, r.status_code
    why = re.search(r'<p class="why" id="why" data-rule="([^"]*)">([^<]+)</p>', r.text)
    assert why, "no reason on the confirmation page"
    return why.group(2)


def test_the_confirmation_page_says_which_rule_asked_in_every_language(live: LiveServer) -> None:
    _, mapi = shop(live)
    cases: dict[str, str] = {}
    clients: dict[str, httpx.Client] = {}
    with mapi:
        # Above the no-confirmation limit (CNY 2000.00 in the tests' settings).
        u = make_user(live, balance=1_000_000)
        r = mapi.pay("WHY-1", _code(live, u.id), "2500.00", "CNY", "Sofa")
        cases["amount_over_confirm_limit"], clients["amount_over_confirm_limit"] = (
            r.trade_no,
            sign_in(live, u.login_id),
        )
        # A device younger than a day.
        u = make_user(live)
        _rules(live, u.login_id, {"new_device_hours": 24})
        r = mapi.pay("WHY-2", _code(live, u.id), "3.00", "CNY", "Tea")
        cases["new_device"], clients["new_device"] = r.trade_no, sign_in(live, u.login_id)
        # A code from the minute before (the phone showed it offline).
        u = make_user(live)
        _rules(live, u.login_id, {"offline_code_confirm": True, "offline_code_min_steps": 1})
        d = _device(live, u.id)
        old = paycode.generate(d.secret, d.device_no, int(time.time()) - 60, 0)
        r = mapi.pay("WHY-3", old, "3.00", "CNY", "Tea")
        cases["offline_code"], clients["offline_code"] = r.trade_no, sign_in(live, u.login_id)
        # More than one payment in ten minutes.
        u = make_user(live)
        _rules(live, u.login_id, {"velocity_count": 1})
        assert mapi.pay("WHY-4", _code(live, u.id), "1.00", "CNY", "Gum").ok
        r = mapi.pay("WHY-5", _code(live, u.id), "1.00", "CNY", "Gum")
        cases["velocity"], clients["velocity"] = r.trade_no, sign_in(live, u.login_id)
        # A rule this wallet version does not know yet.
        u = make_user(live, balance=1_000_000)
        r = mapi.pay("WHY-6", _code(live, u.id), "2500.00", "CNY", "Sofa")
        cases["some_future_rule"], clients["some_future_rule"] = r.trade_no, sign_in(live, u.login_id)

    async def rename(p: Any) -> None:
        async with p.engine.begin() as conn:
            await conn.execute(
                update(t.payments)
                .where(t.payments.c.trade_no == cases["some_future_rule"])
                .values(risk_rule="some_future_rule")
            )

    live.run(rename)
    english = {
        "amount_over_confirm_limit": "We ask because the amount is above what you can pay without confirming.",
        "new_device": "We ask because this phone was added to your wallet recently.",
        "offline_code": "We ask because the code was made some minutes ago, perhaps while this phone was offline.",
        "velocity": "We ask because you made many payments in a short time.",
        "some_future_rule": "We ask to keep your wallet safe.",
    }
    for rule, trade_no in cases.items():
        seen = {lang: _confirm_page(clients[rule], trade_no, lang) for lang in LANGS}
        assert seen["en"] == english[rule], (rule, seen["en"])
        for lang in LANGS:
            assert seen[lang] == i18n.translations(lang).gettext(english[rule]), (rule, lang)
        assert len(set(seen.values())) == len(LANGS), f"{rule}: a language shows another's sentence"
    for c in clients.values():
        c.close()


def test_a_changed_asset_makes_a_new_service_worker_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "static"
    shutil.copytree(pages.STATIC, copy)

    def version() -> str:
        pages._service_worker.cache_clear()
        found = re.search(rb'var VERSION = "([0-9a-f]{16})";', pages._service_worker())
        assert found
        return found.group(1).decode()

    monkeypatch.setattr(pages, "STATIC", copy)
    try:
        first = version()
        assert version() == first  # the same files, the same version
        css = copy / "wallet.css"
        css.write_text(css.read_text() + "\n.new-rule { color: red; }\n")
        assert version() != first  # the browser installs the new worker, which fetches the new file
    finally:
        monkeypatch.undo()
        pages._service_worker.cache_clear()
