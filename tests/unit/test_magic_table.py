"""The magic code table (domain/magic.py): its codes, and docs/sandbox.md kept the same as it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tillpay.domain import magic, paycode
from tillpay.domain.errors import Code
from tillpay.domain.magic import TABLE, Magic, code_for, lookup
from tillpay.protocols.antom.codes import antom_result
from tillpay.protocols.mapi.codes import mapi_error
from tillpay.protocols.openapi.codes import open_code
from tillpay.services.platform import Ids

DOC = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"


def test_every_outcome_has_one_row_and_one_number() -> None:
    assert [row.outcome for row in TABLE] == list(Magic)
    assert len({row.number for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.outcome.value)
def test_each_code_is_a_well_formed_payment_code_no_device_can_have(row: magic.MagicCode) -> None:
    parsed = paycode.parse(row.example)
    assert parsed.device_no == row.number < magic.MIN_REAL_DEVICE_NO
    assert paycode.looks_like_alipay_code(row.example)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.outcome.value)
def test_a_code_reads_back_as_its_row_and_n_whatever_its_free_digits(row: magic.MagicCode) -> None:
    for n in (0, 7, 99):
        code = code_for(row.outcome, n)
        looked = lookup(code)
        assert looked is not None and (looked.row, looked.n) == (row, n)
        varied = code[:10] + "9" + "31415" + code[-2:]  # slot and the first five OTP digits changed
        again = lookup(varied)
        assert again is not None and (again.row, again.n) == (row, n)


def test_real_device_numbers_are_never_magic() -> None:
    ids = Ids()
    for _ in range(2000):
        assert ids.device_no() >= magic.MIN_REAL_DEVICE_NO
    real = paycode.generate(b"secret", magic.MIN_REAL_DEVICE_NO, 1_800_000_000)
    assert lookup(real) is None
    assert lookup(paycode.generate(b"secret", 99_999_999, 1_800_000_000, 3)) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "28",
        "280000001400000000",
        "280000000000000000",
        "290000000100000000",
        "28000000010000000",
        "x" * 18,
    ],
)
def test_anything_else_is_not_a_magic_code(text: str) -> None:
    assert lookup(text) is None


def test_n_outside_two_digits_is_refused() -> None:
    with pytest.raises(ValueError):
        code_for(Magic.SLOW_ANSWER, 100)


def test_delays_are_bounded() -> None:
    slow = lookup(code_for(Magic.SLOW_ANSWER, 99))
    late = lookup(code_for(Magic.SUCCESS_AFTER_CANCEL, 0))
    assert slow is not None and late is not None
    assert magic.delay_seconds(slow) == magic.MAX_DELAY_SECONDS == 60
    assert magic.delay_seconds(late) == magic.DEFAULT_ANSWER_DELAY
    plain = lookup(code_for(Magic.CONFIRM_THEN_CONFIRMED, 30))
    assert plain is not None and magic.delay_seconds(plain) == 0


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start) : text.index(end)].strip()


def test_the_documented_table_is_the_codes_table() -> None:
    doc = DOC.read_text()
    table = _between(doc, "a test keeps it the same -->", "<!-- /magic-table -->")
    assert table == magic.markdown_table()


def test_the_documented_dialect_codes_are_the_codes_tables() -> None:
    doc = _between(DOC.read_text(), "by tests/unit/test_magic_table.py -->", "<!-- /dialect-codes -->")
    rows = [line for line in doc.splitlines()[2:] if line.startswith("|")]
    assert len(rows) >= 9
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        code = Code(cells[1])
        mapi = re.match(r"`([A-Z_]+)`", cells[2])
        assert mapi is not None and mapi.group(1) == mapi_error(code)[0], line
        o = open_code(code)
        assert cells[3] == f"`{o.code} {o.sub_code}`", line
        a = antom_result(code)
        assert cells[4] == f"`{a.status} {a.code}`", line


def test_the_documented_amounts_are_the_amounts_table() -> None:
    doc = DOC.read_text()
    table = _between(doc, "(markdown_amounts); a test keeps it the same -->", "<!-- /magic-amounts -->")
    assert table == magic.markdown_amounts()


def test_only_the_listed_amounts_are_magic() -> None:
    assert [magic.lookup_amount(row.minor) for row in magic.QR_AMOUNTS] == list(magic.QR_AMOUNTS)
    for minor in (0, 2, 3, 4, 6, 7, 10, 100, 101, 1250):
        assert magic.lookup_amount(minor) is None
    assert {row.outcome for row in magic.QR_AMOUNTS} <= set(Magic)
