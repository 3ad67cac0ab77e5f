"""A bounded fuzz of the console's and the wallet's forms as a signed-in user sends them (valid session and
CSRF token, so the fields reach the forms' own parsers, not only the CSRF check in front of them).

Every input gets a page, a redirect or a documented refusal (never a server error), the server stays up,
and no payment, refund or posting is made: the forms that could move money are aimed at payments that
cannot take it (another merchant's, one that does not exist). Derandomized like test_sec_fuzz.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import factories as f
from conftest import LiveServer
from mapi_helpers import counts
from tillpay.services import console_auth, payments
from tillpay.services.platform import Platform
from web.test_wallet_http import csrf_of, make_user, sign_in

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PASSWORD = "owner-password-1234"
MISSING_TRADE = "2026112622001400000000000000"

#: Text a form parser may meet: control characters, separators, numbers at the edges, long runs.
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "0.001",
            "1e3",
            "NaN",
            "99999999999999999999",
            "2026-02-30",
            "&a=b",
            "\x00",
            "'",
            "%00",
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "/console/../wallet",
        ]
    ),
    st.text(alphabet="0123456789.-", max_size=24),
    st.just("x" * 5000),
)

#: (method, path, the fields its form has) for each console form and filter; ``{other}`` is a payment
#: of another merchant, ``{missing}`` one that does not exist.
CONSOLE = [
    ("POST", "/console/payments/{other}/refund", ["amount", "reason", "refund_id"]),
    ("POST", "/console/payments/{missing}/refund", ["amount", "reason", "refund_id"]),
    ("POST", "/console/integration/notify-url", ["notify_url"]),
    ("POST", "/console/integration/keys", ["public_key", "version"]),
    ("POST", "/console/integration/keys/revoke", ["version"]),
    ("POST", "/console/stores/add", ["kind", "ident", "name", "store_id"]),
    ("POST", "/console/stores/status", ["kind", "ident", "status", "store_id"]),
    ("POST", "/console/users/add", ["login", "name", "password", "role"]),
    ("POST", "/console/settlements/reconcile", ["day", "journal"]),
    ("POST", "/console/login", ["login", "password", "next"]),
    ("GET", "/console/payments", ["q", "status", "from", "to", "min", "max", "currency", "store", "before"]),
    ("GET", "/console/payments.csv", ["q", "status", "from", "to", "min", "max", "dialect", "terminal"]),
    ("GET", "/console/settlements/download", ["name"]),
    ("GET", "/console/api/payments", ["q", "status", "from", "to", "wallet_currency", "before"]),
]
WALLET = [
    ("POST", "/wallet/confirm/{missing}", ["action", "pin"]),
    ("POST", "/wallet/qr/{missing}", ["pin"]),
    ("POST", "/wallet/lang", ["lang", "next"]),
    ("POST", "/wallet/login", ["login", "password", "next"]),
    ("GET", "/wallet/history", ["page", "before"]),
]


@dataclass
class Signed:
    console: httpx.Client
    wallet: httpx.Client
    other_trade: str


_SIGNED: dict[str, Signed] = {}


def _signed(live: LiveServer) -> Signed:
    """One console owner and one wallet customer per live server, signed in once."""
    if live.url in _SIGNED:
        return _SIGNED[live.url]

    async def go(p: Platform) -> tuple[str, str]:
        await f.rates(p)
        mine, theirs = await f.merchant(p, "CNY"), await f.merchant(p, "CNY", name="Other")
        await console_auth.add_user(
            p,
            partner_id=mine.merchant.partner_id,
            login="fuzz-owner@shop.test",
            password=PASSWORD,
            role="owner",
        )
        c = await f.customer(p)
        paid = await payments.pay(
            p,
            payments.PayCommand(
                merchant=theirs.merchant,
                partner_trans_id="fuzz-other-1",
                code=await f.code(p, c),
                price_amount=100,
                price_currency="CNY",
                settle_currency="CNY",
                subject="Noodles",
                dialect="mapi",
                notify_url=None,
            ),
        )
        return mine.merchant.partner_id, paid.payment.trade_no

    _, other_trade = live.run(go)
    console = httpx.Client(base_url=live.url, follow_redirects=False, timeout=30)
    page = console.get("/console/login")
    r = console.post(
        "/console/login",
        data={"login": "fuzz-owner@shop.test", "password": PASSWORD, "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303, r.text
    wallet = sign_in(live, make_user(live).login_id)
    _SIGNED[live.url] = Signed(console, wallet, other_trade)
    return _SIGNED[live.url]


def _send(
    c: httpx.Client,
    csrf_page: str,
    form: tuple[str, str, list[str]],
    values: dict[str, str],
    ids: dict[str, str],
) -> httpx.Response:
    method, path, _ = form
    path = path.format(**ids)
    if method == "GET":
        return c.get(path, params=values)
    csrf = csrf_of(c.get(csrf_page).text)
    return c.post(path, data={**values, "csrf": csrf})


def _fields(names: list[str]) -> Any:
    return st.dictionaries(st.sampled_from(names), TEXT, max_size=len(names))


@FUZZ
@given(data=st.data(), form=st.sampled_from(CONSOLE + WALLET))
def test_console_and_wallet_forms_answer_every_input_without_a_server_error_and_move_no_money(
    live: LiveServer, data: st.DataObject, form: tuple[str, str, list[str]]
) -> None:
    s = _signed(live)
    values = data.draw(_fields(form[2]))
    before = counts(live)
    ids = {"other": s.other_trade, "missing": MISSING_TRADE}
    if form[1].startswith("/console/"):
        r = _send(s.console, "/console/integration", form, values, ids)
    else:
        r = _send(s.wallet, "/wallet/", form, values, ids)
    assert r.status_code < 500, (form[1], {k: v[:80] for k, v in values.items()}, r.status_code, r.text[:300])
    if r.is_redirect:  # never off the site, whatever ``next`` said
        where = r.headers["location"]
        assert where.startswith("/") and not where.startswith(("//", "/\\")), where
    elif r.status_code != 429:
        kind = r.headers.get("content-type", "")
        assert kind.startswith(("text/html", "application/json", "text/csv", "text/plain")), kind
    after = counts(live)
    assert {k: after[k] for k in ("payments", "refunds", "postings")} == {
        k: before[k] for k in ("payments", "refunds", "postings")
    }
    assert httpx.get(live.url + "/health", timeout=10).status_code == 200
