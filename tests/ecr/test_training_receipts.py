"""Training receipts: every kind, in every language, on 42- and 32-column paper, as text and as ESC/POS,
first and reprinted, carries the training mark as its first and its last line and still fits its paper;
a real receipt carries none."""

from __future__ import annotations

import pytest
from test_receipt_width import KINDS, LANGUAGES, TRADE_NO, receipt
from wcwidth import wcswidth

from tillpay.ecr.i18n import t
from tillpay.ecr.receipts import render_escpos, render_text, training_mark


@pytest.mark.parametrize("columns", [42, 32])
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_training_receipt_is_marked_at_the_top_and_the_bottom(
    kind: str, lang: str, columns: int
) -> None:
    data = receipt(kind, lang) | {"training": True}
    word = t(lang, "training_mark")
    mark = training_mark(data, columns)
    assert mark and word in "".join(line.strip() for line in mark).replace("*** ", "").replace(" ***", "")
    for copy in (False, True):
        lines = render_text(data, copy=copy, width=columns).rstrip("\n").split("\n")
        assert lines[: len(mark)] == mark and lines[-len(mark) :] == mark
        assert not [line for line in lines if wcswidth(line) > columns]
        assert lines.count("=" * columns) == 1
    real = render_text(receipt(kind, lang), width=columns)
    assert word not in real and "***" not in real.replace(f"*** {t(lang, 'copy')} ***", "")


@pytest.mark.parametrize("columns", [42, 32])
@pytest.mark.parametrize("kind", KINDS)
def test_the_escpos_training_receipt_is_marked_before_its_header_and_after_its_qr_code(
    kind: str, columns: int
) -> None:
    data = receipt(kind, "en") | {"training": True}
    out = render_escpos(data, width=columns)
    mark = b"*** TRAINING - NOT VALID ***"
    first, last = out.find(mark), out.rfind(mark)
    assert 0 <= first < last and out.count(mark) == 2
    assert first < out.find(b"STORE-SHANGHAI")  # above the header (the store line)
    if kind == "sale":
        assert last > out.rfind(TRADE_NO.encode())  # below the QR code and its note
    assert out.rfind(b"\x1dV") > last  # and the cut after it
    assert mark not in render_escpos(receipt(kind, "en"), width=columns)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_escpos_training_receipt_has_its_mark_in_every_language(lang: str) -> None:
    data = receipt("refund", lang) | {"training": True}
    plain = render_escpos(receipt("refund", lang), width=32)
    marked = render_escpos(data, width=32)
    # Two mark lines more than the real slip, each framed by the stars.
    assert marked.count(b"*** ") == plain.count(b"*** ") + 2 and len(marked) > len(plain)
