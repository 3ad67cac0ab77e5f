"""A bounded fuzz of what a stranger or a till can send: the three gateway parsers and the sign-in forms.

Every input gets a documented refusal or a valid answer in its dialect's shape (never a server error, never
a malformed answer), the server stays up, and no payment, refund or posting is stored. MAPI inputs are
also sent signed with the merchant's real MD5 key (tests/mapi_reference.py signs them), so the business
parsers behind the signature check are fuzzed too, not only the refusal in front of it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LiveServer
from mapi_helpers import counts, make_shop

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same inputs on every run: a failure reproduces, CI is not a lottery
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MAPI_NAMES = [
    "service",
    "partner",
    "_input_charset",
    "sign_type",
    "sign",
    "alipay_seller_id",
    "partner_trans_id",
    "buyer_identity_code",
    "trans_name",
    "trans_amount",
    "currency",
    "trans_currency",
    "extend_info",
    "timestamp",
    "out_trade_no",
    "trade_no",
    "refund_amount",
    "partner_refund_id",
    "notify_url",
    "total_fee",
    "price",
    "quantity",
]
SERVICES = [
    "alipay.acquire.overseas.spot.pay",
    "alipay.acquire.overseas.query",
    "alipay.acquire.cancel",
    "alipay.acquire.overseas.spot.refund",
    "alipay.acquire.refund.query",
    "alipay.acquire.precreate",
    "alipay.overseas.secmerchant.offline.maintain",
]
#: Text a parser may meet: control characters, quotes, separators, long runs, non-ASCII, JSON-ish.
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1e3", "1.001", "&a=b", "\x00", "\x08", '"', "{}", "[]", '{"a":' * 50]),
    st.from_regex(r"28\d{16}", fullmatch=True),
    st.text(alphabet="0123456789.", max_size=20),
)
PARAMS = st.dictionaries(st.sampled_from(MAPI_NAMES), TEXT, max_size=10)


def _well_formed_mapi(r: httpx.Response) -> ET.Element:
    assert r.status_code in (200, 413), r.status_code
    assert r.headers["content-type"].startswith("text/xml;")
    body = r.content.split(b"?>", 1)[1] if r.content.startswith(b"<?xml") else r.content
    encoding = r.headers["content-type"].partition("charset=")[2] or "UTF-8"
    root = ET.fromstring(body.decode(encoding))  # noqa: S314 - a loopback test server's answer
    assert root.tag == "alipay" and root.findtext("is_success") in ("T", "F")
    return root


@FUZZ
@given(params=PARAMS, service=st.sampled_from(SERVICES), signed=st.booleans())
def test_mapi_answers_every_input_with_well_formed_xml_and_stores_nothing(
    live: LiveServer, params: dict[str, str], service: str, signed: bool
) -> None:
    shop = _shop(live)
    c = shop.reference(live)
    before = counts(live)
    if signed:
        params = {k: v for k, v in params.items() if k not in ("sign", "sign_type", "partner")}
        try:
            body = c.signed(service, {"service": service, **params})
        except (UnicodeEncodeError, ValueError):
            return  # text the charset cannot carry is refused by the client itself
    else:
        body = {"service": service, **params}
    r = httpx.post(live.url + "/gateway.do", data=body, timeout=30)
    root = _well_formed_mapi(r)
    if root.findtext("is_success") == "T":
        assert root.findtext("response/alipay/result_code") or root.findtext("response/alipay/response_code")
    else:
        assert root.findtext("error")
    after = counts(live)
    assert {k: after[k] for k in ("payments", "refunds", "postings")} == {
        k: before[k] for k in ("payments", "refunds", "postings")
    }


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    op=st.sampled_from(["pay", "inquiryPayment", "cancel", "refund", "inquiryRefund", "nope"]),
    body=st.one_of(JSONISH.map(json.dumps), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
    headers=st.dictionaries(
        st.sampled_from(["client-id", "request-time", "signature", "content-type"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        max_size=4,
    ),
)
def test_antom_answers_every_input_with_its_json_result_and_stores_nothing(
    live: LiveServer, op: str, body: str, headers: dict[str, str]
) -> None:
    _shop(live)
    before = counts(live)
    r = httpx.post(
        live.url + f"/ams/api/v1/payments/{op}", content=body.encode(), headers=headers, timeout=30
    )
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 404:
        result = r.json()["result"]
        assert result["resultStatus"] in ("F", "U") and result["resultCode"], result
        assert result["resultCode"] != "UNKNOWN_EXCEPTION", result
    assert counts(live)["payments"] == before["payments"]


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            ["app_id", "method", "charset", "sign_type", "sign", "timestamp", "version", "biz_content"]
        ),
        st.one_of(TEXT, JSONISH.map(json.dumps)),
        max_size=8,
    ),
    method=st.sampled_from(["alipay.trade.pay", "alipay.trade.query", "alipay.trade.refund", "alipay.nope"]),
)
def test_open_platform_answers_every_input_with_its_json_shape_and_stores_nothing(
    live: LiveServer, params: dict[str, str], method: str
) -> None:
    _shop(live)
    before = counts(live)
    r = httpx.post(live.url + "/gateway.do", data={**params, "method": method}, timeout=30)
    assert r.status_code in (200, 413), r.status_code
    if r.status_code == 200:
        doc: Any = r.json()
        (node,) = [v for k, v in doc.items() if k.endswith("_response")]
        assert node["code"] in ("10000", "10003", "20000", "20001", "40001", "40002", "40004"), node
    assert counts(live)["payments"] == before["payments"]


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(["login", "password", "email", "csrf", "next", "pin", "tp_csrf"]), TEXT, max_size=5
    ),
    path=st.sampled_from(["/console/login", "/wallet/login"]),
)
def test_sign_in_forms_refuse_every_input_without_a_server_error(
    live: LiveServer, form: dict[str, str], path: str
) -> None:
    r = httpx.post(live.url + path, data=form, timeout=30, follow_redirects=False)
    assert r.status_code < 500, (r.status_code, r.text[:200])
    cookies = " ".join(r.headers.get_list("set-cookie"))
    assert "tp_session=" not in cookies and "tp_console=" not in cookies  # nobody was signed in


_SHOPS: dict[str, Any] = {}


def _shop(live: LiveServer) -> Any:
    """One merchant per live server: Hypothesis runs many examples against the same fixture."""
    if live.url not in _SHOPS:
        _SHOPS[live.url] = make_shop(live)
    return _SHOPS[live.url]
