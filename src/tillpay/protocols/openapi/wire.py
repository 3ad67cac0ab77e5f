"""The Open Platform's wire format: parameters, signatures, the signed JSON answer, times and amounts.

Requests (reference §3.2, §3.6): common parameters (``app_id``, ``method``, ``charset``, ``sign_type``,
``timestamp``, ``version``, ``notify_url``...) and ``biz_content`` (JSON), sent as a GET query string
(python-alipay-sdk) or as a POST with the common parameters in the query and ``biz_content`` in the
form body (alipay-sdk-python). The signature covers every parameter except ``sign`` (``sign_type``
included), empty ones dropped, sorted, ``k=v`` joined by ``&``, raw values, in ``charset``.

Answers are always HTTP 200 and look like ``{"alipay_trade_pay_response":{...},"sign":"..."}``: the SDKs
cut the exact text of the ``*_response`` object out of the body and verify ``sign`` over it, so the
text is built here byte for byte and ``sign`` comes last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.protocols import common

CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gb2312"}
SIGN_TYPES = ("RSA", "RSA2")
MAX_REQUEST_BYTES = 64 * 1024


def raw_keys(query: bytes, body: bytes) -> set[bytes]:
    """The parameter names of a form request, undecoded (to tell the two ``gateway.do`` dialects apart)."""
    return {*common.form_keys(query), *common.form_keys(body)}


def loose_params(query: bytes, body: bytes) -> dict[str, str]:
    """ASCII-only view of the parameters, for answering a request that cannot be decoded."""
    return {
        k.decode("ascii", "replace"): v.decode("ascii", "replace")
        for k, v in common.split_form(query) + common.split_form(body)
    }


def decode_params(query: bytes, body: bytes) -> tuple[dict[str, str], str]:
    """Decode query and form parameters with the request's ``charset``; returns them and the codec.

    A parameter given twice or bytes the charset cannot decode are refused: a signature over ambiguous
    input means nothing.
    """
    pairs = common.form_pairs(query, body, MAX_REQUEST_BYTES)
    raw = next((v for k, v in pairs if k == b"charset"), b"utf-8")
    codec = CHARSETS.get(raw.decode("ascii", "replace").lower())
    if codec is None:
        raise TillpayError(Code.ILLEGAL_CHARSET, "charset must be utf-8, gbk or gb2312")
    return common.decode_form(pairs, codec), codec


def sign_content(params: Mapping[str, str]) -> str:
    """The string a request (or notification, without ``sign_type``) signature covers."""
    return signing.canonical_query(params, exclude=("sign",))


def response_key(method: str | None) -> str:
    """``alipay.trade.pay`` → ``alipay_trade_pay_response``; ``error_response`` if there is no method."""
    return f"{method.replace('.', '_')}_response" if method else "error_response"


def render(
    method: str | None, node: Mapping[str, Any], private_key_pem: str | None, sign_type: str, codec: str
) -> bytes:
    """The answer body: the response node, then ``sign`` over the node's exact text (if a key is known)."""
    # UTF-8 answers carry text as is; in GBK/GB2312 non-ASCII text is \u-escaped, which is the same JSON
    # and cannot fail to encode.
    inner = json.dumps(node, ensure_ascii=codec != "utf-8", separators=(",", ":"))
    text = '{"' + response_key(method) + '":' + inner
    if private_key_pem is not None:
        alg = sign_type if sign_type in SIGN_TYPES else "RSA2"
        sig = signing.rsa_sign(
            inner.encode(codec),
            signing.load_private_key(private_key_pem),
            alg,  # type: ignore[arg-type]
        )
        text += ',"sign":"' + sig + '"'
    return (text + "}").encode(codec)


def signed_node(body: bytes, method: str, codec: str = "utf-8") -> tuple[str, str | None]:
    """Cut the ``*_response`` text and the ``sign`` out of an answer, as the SDKs do (for tests)."""
    text = body.decode(codec)
    key = '"' + response_key(method) + '":'
    start = text.index(key) + len(key)
    end = text.rfind(',"sign":"')
    if end < 0:
        return text[start:-1], None
    return text[start:end], text[end + len(',"sign":"') : -2]
