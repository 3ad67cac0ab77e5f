"""Shared Hypothesis strategies for tillpay tests."""

from __future__ import annotations

from hypothesis import strategies as st

from tillpay.domain.money import CURRENCY_EXPONENTS, MAX_MINOR
from tillpay.domain.paycode import MAX_DEVICE_NO, SLOTS

# Unix seconds from the epoch to year 2200: covers every realistic clock, including skewed ones.
MAX_UNIX_SECONDS = 7_258_118_400

currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
# Amounts comfortably inside any real payment, with room left for sums in tests.
minor_amounts = st.integers(min_value=0, max_value=10**15)
signed_minor_amounts = st.integers(min_value=-(10**15), max_value=10**15)
any_minor = st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR)

paycode_secrets = st.one_of(st.binary(min_size=20, max_size=20), st.binary(min_size=32, max_size=32))
device_numbers = st.integers(min_value=0, max_value=MAX_DEVICE_NO)
slots = st.integers(min_value=0, max_value=SLOTS - 1)
unix_seconds = st.integers(min_value=0, max_value=MAX_UNIX_SECONDS)

# Parameter names as protocols use them: ASCII identifiers, never "sign"/"sign_type" unless chosen.
param_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
param_values = st.text(st.characters(codec="utf-8", exclude_characters="&="), max_size=30)
param_dicts = st.dictionaries(param_keys, param_values, max_size=12)


@st.composite
def money_texts(draw: st.DrawFn, currency: str | None = None) -> tuple[str, str, int]:
    """Draw (text, currency, minor) where text is a valid canonical-or-shorter amount for currency."""
    code = currency if currency is not None else draw(currencies)
    exp = CURRENCY_EXPONENTS[code]
    whole = draw(st.integers(min_value=0, max_value=10**12))
    frac_digits = draw(st.integers(min_value=0, max_value=exp))
    frac = draw(st.integers(min_value=0, max_value=10**frac_digits - 1)) if frac_digits else 0
    text = f"{whole}.{frac:0{frac_digits}d}" if frac_digits else str(whole)
    minor = whole * 10**exp + frac * 10 ** (exp - frac_digits)
    return text, code, minor
