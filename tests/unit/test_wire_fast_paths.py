"""The forms and XML fast paths give exactly what the general code gives, for any input.

``split_form``/``form_keys`` skip unquoting where there is nothing to unquote, and the MAPI envelope's
``_text``/``_attr`` skip escaping where there is nothing to escape; both are checked against the
standard library's own functions over arbitrary bytes and text.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes
from xml.sax.saxutils import escape, quoteattr

from hypothesis import given
from hypothesis import strategies as st

from tillpay.protocols import common
from tillpay.protocols.mapi import wire

#: Bytes with the form's own characters often in them.
form_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"&", b"=", b"+", b"%", b"%2", b"%41", b"%zz", b"a", b"\xe4"]), st.binary(max_size=4)
    ),
    max_size=30,
).map(b"".join)
#: Text with markup, quotes, whitespace, controls and surrogates often in it.
xml_text = st.lists(
    st.one_of(st.sampled_from(list("&<>\"'\t\n\r\x00\x1f\x7f\ud800\ufffe\uffff a中")), st.text(max_size=4)),
    max_size=30,
).map("".join)


def reference_split(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for part in data.split(b"&"):
        if part:
            key, _, value = part.partition(b"=")
            out.append(
                (unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" ")))
            )
    return out


@given(form_bytes)
def test_split_form_matches_unquoting_every_part(data: bytes) -> None:
    assert common.split_form(data) == reference_split(data)
    assert common.form_keys(data) == [k for k, _ in reference_split(data)]


@given(xml_text)
def test_text_and_attribute_escaping_match_the_standard_library(value: str) -> None:
    cleaned = wire.FORBIDDEN.sub("\ufffd", value)
    assert wire._text(value) == escape(cleaned)
    assert wire._attr(value) == quoteattr(cleaned)


def test_the_fast_paths_leave_plain_values_alone() -> None:
    assert wire._text("TRADE_SUCCESS") == "TRADE_SUCCESS"
    assert wire._attr("out_trade_no") == '"out_trade_no"'
    assert common.split_form(b"a=1&b=x+y&c=%41") == [(b"a", b"1"), (b"b", b"x y"), (b"c", b"A")]
