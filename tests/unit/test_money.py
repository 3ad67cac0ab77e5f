"""Tests for tillpay.domain.money."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import any_minor, currencies, minor_amounts, money_texts, signed_minor_amounts
from tillpay.domain.money import (
    CURRENCY_EXPONENTS,
    MAX_MINOR,
    CurrencyMismatch,
    InvalidAmount,
    Money,
    UnknownCurrency,
    allocate,
    convert,
    exponent,
    format_amount,
    parse_amount,
)


def test_exponents_follow_iso_4217_for_zero_and_three_decimal_currencies() -> None:
    assert {c for c, e in CURRENCY_EXPONENTS.items() if e == 0} == {"JPY", "KRW", "VND"}
    assert {c for c, e in CURRENCY_EXPONENTS.items() if e == 3} == {"KWD", "BHD"}
    assert exponent("CNY") == 2
    assert exponent("IDR") == 2
    assert exponent("TWD") == 2


def test_exponent_table_cannot_be_mutated() -> None:
    with pytest.raises(TypeError):
        CURRENCY_EXPONENTS["XXX"] = 2  # type: ignore[index]


@pytest.mark.parametrize("code", ["usd", "Usd", "US", "USDD", " USD", "USD\n", "XXX", "", "ＵＳＤ"])
def test_exponent_rejects_anything_but_a_supported_uppercase_code(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        exponent(code)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("39.25", "USD", 3925),
        ("1.5", "USD", 150),
        ("0", "USD", 0),
        ("0.01", "CNY", 1),
        ("007", "USD", 700),
        ("100", "JPY", 100),
        ("12345", "KRW", 12345),
        ("1.234", "KWD", 1234),
        ("1.2", "BHD", 1200),
        ("92233720368547758.07", "USD", MAX_MINOR),
        ("9223372036854775807", "JPY", MAX_MINOR),
    ],
)
def test_parse_amount_converts_major_unit_text_to_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "reason"),
    [
        ("", "USD", "format"),
        ("-1", "USD", "format"),
        ("+1", "USD", "format"),
        ("1e3", "USD", "format"),
        (" 1", "USD", "format"),
        ("1 ", "USD", "format"),
        ("1\n", "USD", "format"),
        (".5", "USD", "format"),
        ("1.", "USD", "format"),
        ("1,000", "USD", "format"),
        ("1_000", "USD", "format"),
        ("1.2.3", "USD", "format"),
        ("١٢", "USD", "format"),
        ("５", "USD", "format"),
        ("NaN", "USD", "format"),
        ("Infinity", "USD", "format"),
        ("1.001", "USD", "precision"),
        ("1.5", "JPY", "precision"),
        ("100.0", "JPY", "precision"),
        ("100.00", "JPY", "precision"),
        ("1.0", "KRW", "precision"),
        ("1.0001", "KWD", "precision"),
        ("123456789012345678901", "JPY", "length"),
        ("99999999999999999999", "USD", "range"),
        ("9223372036854775808", "JPY", "range"),
        ("92233720368547758.08", "USD", "range"),
    ],
)
def test_parse_amount_rejects_non_canonical_text_with_a_reason(text: str, currency: str, reason: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(text, currency)
    assert info.value.reason == reason


def test_parse_amount_rejects_an_unknown_currency_before_looking_at_the_text() -> None:
    with pytest.raises(UnknownCurrency):
        parse_amount("1.00", "usd")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (3925, "USD", "39.25"),
        (100, "JPY", "100"),
        (-5, "USD", "-0.05"),
        (0, "USD", "0.00"),
        (5, "KWD", "0.005"),
        (1234, "KWD", "1.234"),
        (-100, "JPY", "-100"),
        (MAX_MINOR, "USD", "92233720368547758.07"),
    ],
)
def test_format_amount_renders_canonical_wire_text(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_format_amount_refuses_non_integer_minor_units() -> None:
    with pytest.raises(TypeError):
        format_amount(39.25, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_amount(True, "USD")


@given(minor=st.integers(min_value=0, max_value=MAX_MINOR), currency=currencies)
def test_parsing_formatted_text_returns_the_original_amount(minor: int, currency: str) -> None:
    assert parse_amount(format_amount(minor, currency), currency) == minor


@given(minor=any_minor, currency=currencies)
def test_negative_amounts_format_as_the_positive_text_with_a_minus(minor: int, currency: str) -> None:
    text = format_amount(-abs(minor), currency)
    assert text == ("-" if minor else "") + format_amount(abs(minor), currency)


@given(money_texts())
def test_parse_amount_accepts_fewer_fraction_digits_than_the_exponent(case: tuple[str, str, int]) -> None:
    text, currency, minor = case
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("minor", "source", "target", "rate", "expected"),
    [
        (100, "USD", "CNY", Decimal("7.1234"), 712),
        (100, "USD", "CNY", Decimal("7.125"), 713),
        (50, "USD", "USD", Decimal("0.01"), 1),
        (49, "USD", "USD", Decimal("0.01"), 0),
        (-50, "USD", "USD", Decimal("0.01"), -1),
        (1000, "JPY", "USD", Decimal("0.0067"), 670),
        (150, "USD", "JPY", Decimal("149.5"), 224),
        (1, "USD", "JPY", Decimal("150"), 2),
        (1000, "USD", "KWD", Decimal("0.30705"), 3071),
        (10**18, "USD", "CNY", Decimal("7.123456789012345678901234567891"), 7123456789012345679),
    ],
)
def test_convert_rounds_half_up_to_the_target_minor_unit(
    minor: int, source: str, target: str, rate: Decimal, expected: int
) -> None:
    assert convert(minor, source, target, rate) == expected


def _half_up(value: Fraction) -> int:
    magnitude = abs(value)
    rounded = int(magnitude + Fraction(1, 2))
    return rounded if value >= 0 else -rounded


@given(
    minor=signed_minor_amounts,
    source=currencies,
    target=currencies,
    rate=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(100000), places=8),
)
def test_convert_matches_exact_rational_arithmetic(
    minor: int, source: str, target: str, rate: Decimal
) -> None:
    exact = Fraction(minor) * Fraction(rate) * Fraction(10) ** (exponent(target) - exponent(source))
    assert convert(minor, source, target, rate) == _half_up(exact)


@given(minor=signed_minor_amounts, currency=currencies)
def test_converting_at_rate_one_within_a_currency_changes_nothing(minor: int, currency: str) -> None:
    assert convert(minor, currency, currency, Decimal(1)) == minor


@pytest.mark.parametrize("rate", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")])
def test_convert_rejects_rates_that_are_not_positive_and_finite(rate: Decimal) -> None:
    with pytest.raises(ValueError):
        convert(100, "USD", "CNY", rate)


def test_convert_refuses_a_float_rate() -> None:
    with pytest.raises(TypeError):
        convert(100, "USD", "CNY", 7.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("total", "weights", "parts"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (7, [2, 1], [5, 2]),
        (5, [0, 1], [0, 5]),
        (0, [3, 4], [0, 0]),
        (1, [1, 1, 1, 1], [1, 0, 0, 0]),
        (10, [1, 2, 2], [2, 4, 4]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (9, [1], [9]),
    ],
)
def test_allocate_splits_proportionally_with_remainders_to_the_earliest_largest(
    total: int, weights: list[int], parts: list[int]
) -> None:
    assert allocate(total, weights) == parts


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_allocate_rejects_empty_negative_or_all_zero_weights(weights: list[int]) -> None:
    with pytest.raises(ValueError):
        allocate(100, weights)


@given(
    total=signed_minor_amounts,
    weights=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=20).filter(any),
)
def test_allocated_parts_sum_to_the_total_and_stay_within_one_of_the_exact_share(
    total: int, weights: list[int]
) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        share = Fraction(total * weight, sum(weights))
        assert abs(part - share) < 1
        if weight == 0:
            assert part == 0


def test_money_prints_amount_and_currency() -> None:
    assert str(Money(3925, "USD")) == "39.25 USD"
    assert str(Money(100, "JPY")) == "100 JPY"
    assert Money(3925, "USD").format() == "39.25"


def test_money_parse_reads_wire_text() -> None:
    assert Money.parse("39.25", "USD") == Money(3925, "USD")
    with pytest.raises(InvalidAmount):
        Money.parse("1.5", "JPY")


def test_money_adds_and_subtracts_within_one_currency() -> None:
    assert Money(100, "USD") + Money(25, "USD") == Money(125, "USD")
    assert Money(100, "USD") - Money(125, "USD") == Money(-25, "USD")


def test_money_refuses_arithmetic_across_currencies() -> None:
    with pytest.raises(CurrencyMismatch):
        _ = Money(100, "USD") + Money(100, "CNY")
    with pytest.raises(ValueError):
        _ = Money(100, "USD") - Money(100, "CNY")


def test_money_refuses_arithmetic_with_plain_numbers() -> None:
    with pytest.raises(TypeError):
        _ = Money(100, "USD") + 1  # type: ignore[operator]


def test_money_rejects_float_amounts_and_unknown_currencies() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrency):
        Money(100, "usd")


def test_money_is_immutable() -> None:
    money = Money(100, "USD")
    with pytest.raises(dataclasses.FrozenInstanceError):
        money.amount = 5  # type: ignore[misc]


@given(a=minor_amounts, b=minor_amounts, currency=currencies)
def test_money_subtraction_undoes_addition(a: int, b: int, currency: str) -> None:
    assert (Money(a, currency) + Money(b, currency)) - Money(b, currency) == Money(a, currency)
