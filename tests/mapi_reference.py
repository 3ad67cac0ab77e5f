"""A MAPI merchant client written from the public clients' rules, not from Tillpay's code.

It imports nothing of Tillpay's signing, protocol or client code, so a misreading shared by Tillpay's
gateway and Tillpay's own client cannot hide here. Each rule names the public code it follows:

- Request signature: every parameter except ``sign`` and ``sign_type``, empty ones dropped, sorted by
  name, ``k=v`` joined by ``&`` with raw values; MD5 appends the key and takes the lower-case hex digest;
  RSA is SHA1withRSA and RSA2 SHA256withRSA, Base64 (melitigo/AlipaySDK ``BaseAlipayClient.genSignValue``
  and ``SignatureTool``; Yurunsoft/PaySDK ``AlipayCrossBorder/SDK.php`` ``sign``/``parseSignData``).
- How a request travels, three ways seen in public code:
  ``classic``: POST to ``gateway.do?_input_charset=X`` with ``_input_charset`` also among the signed
  form fields (Alipay's classic demo, ``AlipaySubmit.buildRequest``); ``url-charset``: POST to
  ``gateway.do?_input_charset=X``, signed with it but the form without it (melitigo/AlipaySDK
  ``BaseAlipayClient.execute``); ``get``: every parameter in the query string (melitigo ``link``).
- Response verification: only ``is_success=T`` responses are verified; the string is the children of
  ``<response><alipay>``, sorted by name, ``k=v`` joined by ``&`` (melitigo
  ``AlipayResponse.getPreSignString`` keeps empty values, Yurunsoft ``verifySync`` drops them; this
  client insists there are none, so both agree), with the MD5 key appended or checked with the
  gateway's public key. melitigo also requires a ``text/xml;`` content type.
- A refusal (``is_success=F``) is not verified by either client; when it carries a signature anyway,
  this client checks it over the string melitigo's ``AlipayResponse.getPreSignString`` builds for an
  answer without ``<response>``: ``error=<value>``. So every signed answer is checked, refusals too.
- Notification verification: every posted parameter except ``sign`` and ``sign_type``, empty ones
  dropped, sorted (Yurunsoft ``verifyCallback``; Alipay's classic ``AlipayNotify.verify``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

Style = Literal["classic", "url-charset", "get"]


class ReferenceSignatureError(AssertionError):
    """The answer's signature does not verify the way the public clients verify it."""


def pre_sign_string(params: Mapping[str, str]) -> str:
    """``k=v&...`` over the non-empty parameters except ``sign``/``sign_type``, sorted by name."""
    items = sorted((k, v) for k, v in params.items() if k not in ("sign", "sign_type") and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def _hash(sign_type: str) -> hashes.HashAlgorithm:
    return hashes.SHA1() if sign_type == "RSA" else hashes.SHA256()  # noqa: S303 - Alipay's RSA is SHA1


def sign(content: str, sign_type: str, *, md5_key: str = "", private_key_pem: str = "", charset: str) -> str:
    """The signature a merchant sends for ``content``."""
    data = content.encode(charset)
    if sign_type == "MD5":
        return hashlib.md5(data + md5_key.encode(charset)).hexdigest()
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), _hash(sign_type))).decode()


def verify(
    content: str, signature: str, sign_type: str, *, md5_key: str = "", public_key_pem: str = "", charset: str
) -> bool:
    """Whether ``signature`` is the gateway's signature of ``content``."""
    data = content.encode(charset)
    if sign_type == "MD5":
        return hashlib.md5(data + md5_key.encode(charset)).hexdigest() == signature
    key = serialization.load_pem_public_key(public_key_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), _hash(sign_type))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class Answer:
    """A parsed MAPI answer: ``is_success``, the top-level ``error``, the business fields."""

    is_success: bool
    error: str | None
    detail: str | None  # Tillpay's top-level detail_error_des of a refusal
    fields: dict[str, str]
    sign: str | None
    sign_type: str | None
    content_type: str
    raw: bytes
    echo: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.fields[name]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.fields.get(name, default)


def parse(raw: bytes, content_type: str = "text/xml; charset=UTF-8") -> Answer:
    """Parse ``<alipay>...</alipay>``; the XML declaration's encoding may be GBK, which expat lacks."""
    m = re.match(rb'\s*<\?xml[^>]*encoding="([^"]+)"[^>]*\?>', raw)
    text = raw[m.end() :].decode(m.group(1).decode()) if m else raw.decode("utf-8")
    root = ET.fromstring(text)  # noqa: S314 - a loopback test server's answer
    assert root.tag == "alipay", root.tag
    business = root.find("response/alipay")
    fields: dict[str, str] = {}
    if business is not None:
        for child in business:
            assert len(child) == 0, f"nested element {child.tag}: the clients only read flat fields"
            fields[child.tag] = child.text or ""
    echo = {p.get("name", ""): p.text or "" for p in root.findall("request/param")}
    return Answer(
        is_success=root.findtext("is_success") == "T",
        error=root.findtext("error"),
        detail=root.findtext("detail_error_des"),
        fields=fields,
        sign=root.findtext("sign"),
        sign_type=root.findtext("sign_type"),
        content_type=content_type,
        raw=raw,
        echo=echo,
    )


@dataclass
class ReferenceClient:
    """A merchant's MAPI client following the public clients (see the module docstring)."""

    url: str  # the server's base URL; requests go to ``/gateway.do``
    partner: str
    sign_type: str = "MD5"
    md5_key: str = ""
    private_key_pem: str = ""
    gateway_public_key_pem: str = ""
    charset: str = "UTF-8"
    style: Style = "classic"

    @property
    def codec(self) -> str:
        return {"UTF-8": "utf-8", "GBK": "gbk", "GB2312": "gb2312"}[self.charset.upper()]

    def signed(self, service: str, params: Mapping[str, str | None]) -> dict[str, str]:
        """The parameters with ``service``, ``partner``, ``_input_charset``, ``sign`` and ``sign_type``."""
        out = {k: v for k, v in params.items() if v is not None}
        out.setdefault("service", service)
        out.setdefault("partner", self.partner)
        out.setdefault("_input_charset", self.charset)
        out["sign"] = sign(
            pre_sign_string(out),
            self.sign_type,
            md5_key=self.md5_key,
            private_key_pem=self.private_key_pem,
            charset=self.codec,
        )
        out["sign_type"] = self.sign_type
        return out

    def send(self, params: Mapping[str, str], *, style: Style | None = None) -> Answer:
        """Send already signed parameters the chosen way and parse the answer (not verified)."""
        style = style or self.style
        gateway = self.url.rstrip("/") + "/gateway.do"
        encode = lambda items: urllib.parse.urlencode(items, encoding=self.codec)  # noqa: E731
        charset = params.get("_input_charset", self.charset)
        if style == "get":
            r = httpx.get(gateway + "?" + encode(list(params.items())))
        else:
            body = (
                params if style == "classic" else {k: v for k, v in params.items() if k != "_input_charset"}
            )
            r = httpx.post(
                f"{gateway}?_input_charset={charset}",
                content=encode(list(body.items())).encode("ascii"),
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
            )
        assert r.status_code == 200, r.text
        return parse(r.content, r.headers.get("content-type", ""))

    def check(self, answer: Answer) -> Answer:
        """Verify an answer as the public clients do; raise :class:`ReferenceSignatureError` if it fails."""
        check_answer(
            answer,
            md5_key=self.md5_key,
            public_key_pem=self.gateway_public_key_pem,
            charset=self.codec,
        )
        return answer

    def call(self, service: str, **params: str | None) -> Answer:
        """Sign, send and verify one request."""
        return self.check(self.send(self.signed(service, params)))


def check_answer(answer: Answer, *, md5_key: str, public_key_pem: str, charset: str) -> None:
    """The public clients' response check (melitigo ``execute``/``checkRspSign``, Yurunsoft ``verifySync``)."""
    if not answer.content_type.startswith("text/xml;"):
        raise ReferenceSignatureError(f"melitigo reads only text/xml; answers, got {answer.content_type!r}")
    if not answer.is_success:
        # Neither client verifies a refusal. A signed one is checked over melitigo's string for an
        # answer without <response> (getPreSignString: "error=" + error); an unsigned one is left alone.
        if not answer.sign:
            return
        if answer.fields:
            raise ReferenceSignatureError("a refusal with business fields")
        content = f"error={answer.error}"
    else:
        if not answer.sign or not answer.sign_type:
            raise ReferenceSignatureError("an accepted answer without a signature")
        empty = [k for k, v in answer.fields.items() if v == ""]
        if empty:
            raise ReferenceSignatureError(f"empty elements {empty}: the public clients disagree on these")
        content = "&".join(f"{k}={answer.fields[k]}" for k in sorted(answer.fields))
    if not answer.sign_type:
        raise ReferenceSignatureError("a signature without its sign_type")
    if not verify(
        content,
        answer.sign,
        answer.sign_type,
        md5_key=md5_key,
        public_key_pem=public_key_pem,
        charset=charset,
    ):
        raise ReferenceSignatureError(f"the {answer.sign_type} signature does not cover {content!r}")


def verify_notification(form: Mapping[str, str], *, md5_key: str = "", public_key_pem: str = "") -> bool:
    """The classic notify check: every posted parameter except ``sign``/``sign_type``, sorted."""
    return verify(
        pre_sign_string(form),
        form["sign"],
        form["sign_type"],
        md5_key=md5_key,
        public_key_pem=public_key_pem,
        charset="utf-8",
    )


class CheckedTransport(httpx.HTTPTransport):
    """An httpx transport that runs every MAPI answer, refusals too, through :func:`check_answer`.

    Tillpay's own client (``tillpay.client.MapiClient``) takes it as ``transport=``, so every scenario
    it drives is checked by the public clients' rule as well as by Tillpay's.
    """

    def __init__(self, *, md5_key: str, public_key_pem: str) -> None:
        super().__init__()
        self.md5_key, self.public_key_pem = md5_key, public_key_pem
        self.checked = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/gateway.do") and response.status_code == 200:
            body = response.read()
            content_type = response.headers.get("content-type", "")
            charset = content_type.partition("charset=")[2].strip() or "UTF-8"
            check_answer(
                parse(body, content_type),
                md5_key=self.md5_key,
                public_key_pem=self.public_key_pem,
                charset={"UTF-8": "utf-8", "GBK": "gbk", "GB2312": "gb2312"}[charset.upper()],
            )
            self.checked += 1
        return response
