"""What the wire dialects share: form decoding, Beijing time and the currency lookup.

MAPI and Open Platform both take ``application/x-www-form-urlencoded`` parameters whose charset is named
by a parameter of the request itself, so the bytes are split first and decoded once the charset is
known. Alipay writes its times in Beijing time (GMT+8) whatever the merchant's zone; Antom writes ISO
8601 with an offset and epoch milliseconds. A currency Tillpay does not know is ``CURRENCY_NOT_SUPPORT``
in every dialect (each maps that code to its own in its ``codes.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote_to_bytes

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import (
    InvalidAmount,
    UnknownCurrency,
    parse_amount,
    unsupported_currency,
)

# ------------------------------------------------------------------------------------------- forms


def form_pairs(query: bytes, body: bytes, max_bytes: int) -> list[tuple[bytes, bytes]]:
    """The query's and then the body's ``name=value`` pairs, still bytes (the charset comes later).

    A request above ``max_bytes`` (query and body together) is refused.
    """
    if len(query) + len(body) > max_bytes:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "the request is too large")
    return split_form(query) + split_form(body)


def unquote_form(part: bytes) -> bytes:
    """One form name or value unquoted (``+`` is a space, ``%XX`` a byte), not decoded."""
    # Most names and many values hold neither: skip the work (this runs ~70 times a request).
    if b"+" in part:
        part = part.replace(b"+", b" ")
    return unquote_to_bytes(part) if b"%" in part else part


def split_form(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split form bytes into ``name=value`` pairs, unquoted but not decoded."""
    out = []
    for part in data.split(b"&"):
        if part:
            key, _, value = part.partition(b"=")
            out.append((unquote_form(key), unquote_form(value)))
    return out


def form_keys(data: bytes) -> list[bytes]:
    """The names of the form's ``name=value`` pairs, unquoted but not decoded (values left alone)."""
    return [unquote_form(part.partition(b"=")[0]) for part in data.split(b"&") if part]


#: Called for a parameter given a second time with (name, first value, second value): True to keep the
#: first and go on, False to refuse the request; or raise a more specific error.
Repeated = Callable[[str, str, str], bool]


def decode_form(
    pairs: list[tuple[bytes, bytes]], codec: str, repeated: Repeated | None = None
) -> dict[str, str]:
    """Decode the pairs (names ASCII, values in ``codec``), in arrival order.

    Undecodable bytes (ILLEGAL_CHARSET) or a parameter given twice (ILLEGAL_ARGUMENT) is refused, since
    a signature over ambiguous input means nothing.
    """
    params: dict[str, str] = {}
    for k, v in pairs:
        try:
            key, value = k.decode("ascii"), v.decode(codec)
        except UnicodeDecodeError:
            raise TillpayError(Code.ILLEGAL_CHARSET, f"the request cannot be decoded as {codec}") from None
        if key in params:
            if repeated is not None and repeated(key, params[key], value):
                continue
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {key!r} is given twice")
        params[key] = value
    return params


# -------------------------------------------------------------------------------------------- time

#: Alipay reports times in Beijing time (GMT+8), whatever the merchant's zone.
BEIJING = timezone(timedelta(hours=8), "GMT+8")


def as_beijing_compact(dt: datetime) -> str:
    """``yyyyMMddHHmmss`` in Beijing time (MAPI's ``alipay_pay_time``, ``refund_time``)."""
    return dt.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def as_beijing_text(dt: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (MAPI notifications; Open Platform's ``gmt_payment``)."""
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def as_beijing_iso(dt: datetime) -> str:
    """ISO 8601 with offset, seconds precision, e.g. ``2026-11-26T10:00:00+08:00`` (Antom).

    Antom shows times in ISO 8601 with an offset; Tillpay uses GMT+8 like Alipay's examples.
    """
    return dt.astimezone(BEIJING).isoformat(timespec="seconds")


def as_epoch_ms(dt: datetime) -> str:
    """Milliseconds since the epoch, as Antom's ``request-time``/``response-time`` headers carry time
    (``1685599933871``, reference §7, ``ams_zh-cn/api_fund``)."""
    return str(int(dt.timestamp() * 1000))


# ------------------------------------------------------------------------------------------- money


def amount(text: str, currency: str, name: str) -> int:
    """Parameter ``name``'s amount text in minor units of ``currency``.

    CURRENCY_NOT_SUPPORT for an unknown currency, ILLEGAL_ARGUMENT for text that is not an amount.
    """
    try:
        return parse_amount(text, currency)
    except UnknownCurrency:
        raise unsupported_currency(currency) from None
    except InvalidAmount as e:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{name} {text!r}: {e}") from None
