"""MAPI's wire format: form decoding with ``_input_charset``, the XML envelope, times and amounts."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from tillpay.domain.errors import Code, TillpayError
from tillpay.protocols import common

CHARSETS = {"UTF-8": "utf-8", "GBK": "gbk", "GB2312": "gb2312"}
DEFAULT_CHARSET = "UTF-8"
MAX_REQUEST_BYTES = 16 * 1024


def charset_of(name: str | None) -> str:
    """The Python codec for an ``_input_charset`` value (default UTF-8); ILLEGAL_CHARSET otherwise."""
    if name is None or name == "":
        return CHARSETS[DEFAULT_CHARSET]
    codec = CHARSETS.get(name.upper())
    if codec is None:
        raise TillpayError(Code.ILLEGAL_CHARSET, f"_input_charset must be UTF-8, GBK or GB2312, not {name!r}")
    return codec


def decode_params(query: bytes, body: bytes) -> tuple[dict[str, str], str]:
    """Decode GET query and POST form parameters with the request's ``_input_charset``.

    Returns the parameters in arrival order and the codec. A parameter given twice, undecodable bytes
    or an unknown charset is refused, since a signature over ambiguous input means nothing.
    """
    pairs = common.form_pairs(query, body, MAX_REQUEST_BYTES)
    raw_charset = next((v for k, v in pairs if k == b"_input_charset"), None)
    try:
        codec = charset_of(raw_charset.decode("ascii") if raw_charset is not None else None)
    except UnicodeDecodeError:
        raise TillpayError(Code.ILLEGAL_CHARSET, "_input_charset is not ASCII") from None
    return common.decode_form(pairs, codec, _charset_repeated), codec


def _charset_repeated(key: str, first: str, second: str) -> bool:
    """``_input_charset`` may come twice with one value; any other parameter may not."""
    if key != "_input_charset":
        return False
    if first == second:
        # Alipay's classic demo (AlipaySubmit.buildRequest) POSTs to
        # gateway.do?_input_charset=UTF-8 and also signs and sends it in the form: one parameter.
        return True
    raise TillpayError(
        Code.ILLEGAL_ARGUMENT,
        f"_input_charset is {first!r} in the URL and {second!r} in the body: send one value",
    )


#: Characters XML 1.0 does not allow in a document (C0 controls but tab, LF and CR; U+FFFE, U+FFFF;
#: lone surrogates); DEL is refused in input too. The gateway refuses them in requests; the answer
#: never carries one (the echo replaces any with U+FFFD), so it is always well-formed.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


#: What ``_text`` or ``_attr`` would change: markup characters, the attribute's whitespace and quotes
#: (``quoteattr``), and the forbidden characters. Most values hold none and are used as they are.
_SPECIAL = re.compile("[&<>\"'\t\n\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    if _SPECIAL.search(value) is None:
        return value
    return escape(FORBIDDEN.sub("\ufffd", value))


def _attr(value: str) -> str:
    if _SPECIAL.search(value) is None:
        return f'"{value}"'
    return quoteattr(FORBIDDEN.sub("\ufffd", value))


@dataclass
class Envelope:
    """A MAPI response: ``is_success``, the echoed request, the business fields, the signature."""

    is_success: bool
    request: Sequence[tuple[str, str]] = ()
    fields: dict[str, str] = field(default_factory=dict)  # children of response/alipay
    error: str | None = None  # top-level error when is_success is F
    detail: str | None = None  # top-level detail_error_des when is_success is F
    sign: str | None = None
    sign_type: str | None = None

    def __post_init__(self) -> None:
        # An empty element would be signed by some clients (melitigo/AlipaySDK signs every child) and
        # skipped by others (Yurunsoft/PaySDK drops empty values): never send one.
        self.fields = {k: v for k, v in self.fields.items() if v not in (None, "")}

    def signed_fields(self) -> dict[str, str]:
        """The fields the response signature covers (see ``signing``).

        An accepted request (``is_success=T``): the children of ``<response><alipay>`` and nothing else,
        as the public MAPI clients verify (melitigo/AlipaySDK ``AlipayResponse.getPreSignString``,
        Yurunsoft/PaySDK ``verifySync``). A refusal has no business fields; its string is
        ``error=<value>``, as melitigo/AlipaySDK builds it for a response without ``<response>``.
        """
        if self.fields:
            return dict(self.fields)
        return {"error": self.error or ""}

    def to_xml(self, charset: str) -> bytes:
        """Render the envelope in ``charset`` (characters it lacks become character references)."""
        parts = [f'<?xml version="1.0" encoding="{charset_label(charset)}"?>', "<alipay>"]
        parts.append(f"<is_success>{'T' if self.is_success else 'F'}</is_success>")
        if self.error:
            parts.append(f"<error>{_text(self.error)}</error>")
        if self.detail:
            parts.append(f"<detail_error_des>{_text(self.detail)}</detail_error_des>")
        if self.request:
            parts.append("<request>")
            parts.extend(f"<param name={_attr(k)}>{_text(v)}</param>" for k, v in self.request)
            parts.append("</request>")
        if self.fields:
            parts.append("<response><alipay>")
            parts.extend(f"<{k}>{_text(v)}</{k}>" for k, v in sorted(self.fields.items()))
            parts.append("</alipay></response>")
        if self.sign:
            parts.append(f"<sign>{_text(self.sign)}</sign>")
            parts.append(f"<sign_type>{_text(self.sign_type or '')}</sign_type>")
        parts.append("</alipay>")
        return "".join(parts).encode(charset, errors="xmlcharrefreplace")

    @classmethod
    def from_xml(cls, data: bytes) -> Envelope:
        """Parse a MAPI response envelope (the client's side)."""
        # Expat cannot read GBK, which real MAPI responses declare: decode first, then parse the text.
        m = re.match(rb'<\?xml[^>]*encoding="([A-Za-z0-9_-]+)"[^>]*\?>', data)
        codec = CHARSETS.get(m.group(1).decode().upper(), m.group(1).decode()) if m else "utf-8"
        text = data[m.end() :].decode(codec) if m else data.decode("utf-8")
        root = ET.fromstring(text)  # noqa: S314 - the gateway's own response, bounded in size
        if root.tag != "alipay":
            raise ValueError("not a MAPI response: the root element is not <alipay>")
        req = root.find("request")
        resp = root.find("response/alipay")
        return cls(
            is_success=(root.findtext("is_success") or "") == "T",
            request=[(p.get("name", ""), p.text or "") for p in (req if req is not None else [])],
            fields={c.tag: c.text or "" for c in (resp if resp is not None else [])},
            error=root.findtext("error"),
            detail=root.findtext("detail_error_des"),
            sign=root.findtext("sign"),
            sign_type=root.findtext("sign_type"),
        )


def charset_label(codec: str) -> str:
    """The ``_input_charset`` spelling of a Python codec name."""
    return {v: k for k, v in CHARSETS.items()}.get(codec, codec.upper())


def form_body(params: Mapping[str, str], charset: str = "utf-8") -> bytes:
    """URL-encode parameters in ``charset`` (the merchant's side)."""
    from urllib.parse import urlencode

    return urlencode(list(params.items()), encoding=charset).encode("ascii")
