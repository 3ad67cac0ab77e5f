"""Tests for tillpay.domain.paycode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.hotp import HOTP
from hypothesis import given

from strategies import device_numbers, paycode_secrets, slots, unix_seconds
from tillpay.domain.paycode import (
    LENGTH,
    PREFIX,
    TIME_STEP,
    MalformedCode,
    ParsedCode,
    generate,
    looks_like_alipay_code,
    match_step,
    parse,
    step_at,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "paycode.json").read_text(encoding="utf-8")
)["vectors"]

RFC4226_SECRET = b"12345678901234567890"
# RFC 4226 appendix D, truncated 31-bit "Decimal" values for counters 0..9.
RFC4226_TRUNCATED = [
    1284755224,
    1094287082,
    137359152,
    1726969429,
    1640338314,
    868254676,
    1918287922,
    82162583,
    673399871,
    645520489,
]


def _vector_id(vector: dict[str, Any]) -> str:
    return f"{vector['secret_hex'][:8]}-{vector['device_no']}-{vector['unix_seconds']}-{vector['slot']}"


def test_vector_file_covers_the_required_secrets_devices_and_slots() -> None:
    assert len(VECTORS) >= 12
    assert {len(bytes.fromhex(v["secret_hex"])) for v in VECTORS} == {20, 32}
    assert {0, 1, 12345678, 99999999} <= {v["device_no"] for v in VECTORS}
    assert RFC4226_SECRET.hex() in {v["secret_hex"] for v in VECTORS}
    assert len({v["slot"] for v in VECTORS}) == 10


@pytest.mark.parametrize("vector", VECTORS, ids=_vector_id)
def test_generate_reproduces_each_published_vector(vector: dict[str, Any]) -> None:
    secret = bytes.fromhex(vector["secret_hex"])
    code = generate(secret, vector["device_no"], vector["unix_seconds"], vector["slot"])
    assert code == vector["code"]
    assert vector["step"] == step_at(vector["unix_seconds"])
    assert vector["counter"] == vector["step"] * 10 + vector["slot"]
    assert code.endswith(vector["otp"])


@pytest.mark.parametrize("vector", VECTORS, ids=_vector_id)
def test_each_published_vector_is_accepted_at_its_own_time(vector: dict[str, Any]) -> None:
    parsed = parse(vector["code"])
    assert parsed == ParsedCode(vector["device_no"], vector["slot"], vector["otp"])
    secret = bytes.fromhex(vector["secret_hex"])
    assert match_step(secret, parsed, vector["unix_seconds"]) == vector["step"]


@pytest.mark.parametrize("slot", range(10))
def test_otp_is_the_rfc_4226_hotp_value_modulo_ten_million(slot: int) -> None:
    # Step 0 with slot n is counter n, so these are exactly RFC 4226's appendix D counters.
    code = generate(RFC4226_SECRET, 0, 0, slot)
    assert code[-7:] == f"{RFC4226_TRUNCATED[slot] % 10**7:07d}"


@given(secret=paycode_secrets, device_no=device_numbers, now=unix_seconds, slot=slots)
def test_otp_agrees_with_an_independent_hotp_implementation(
    secret: bytes, device_no: int, now: int, slot: int
) -> None:
    hotp = HOTP(secret, 7, SHA1())  # noqa: S303 - RFC 4226 HOTP is defined over HMAC-SHA1
    expected = hotp.generate(step_at(now) * 10 + slot).decode()
    assert generate(secret, device_no, now, slot)[-7:] == expected


@given(secret=paycode_secrets, device_no=device_numbers, now=unix_seconds, slot=slots)
def test_generated_codes_parse_back_to_their_device_and_slot(
    secret: bytes, device_no: int, now: int, slot: int
) -> None:
    code = generate(secret, device_no, now, slot)
    parsed = parse(code)
    assert (parsed.device_no, parsed.slot) == (device_no, slot)
    assert code == f"{PREFIX}{device_no:08d}{slot}{parsed.otp}"


@given(secret=paycode_secrets, device_no=device_numbers, now=unix_seconds, slot=slots)
def test_generated_codes_are_18_digits_starting_28_and_look_like_alipay_codes(
    secret: bytes, device_no: int, now: int, slot: int
) -> None:
    code = generate(secret, device_no, now, slot)
    assert len(code) == LENGTH
    assert code.isascii()
    assert code.isdigit()
    assert code.startswith("28")
    assert looks_like_alipay_code(code)


@given(secret=paycode_secrets, device_no=device_numbers, now=unix_seconds, slot=slots)
def test_a_fresh_code_matches_the_current_step(secret: bytes, device_no: int, now: int, slot: int) -> None:
    parsed = parse(generate(secret, device_no, now, slot))
    assert match_step(secret, parsed, now) == step_at(now)


def test_step_is_the_minute_since_the_epoch() -> None:
    assert TIME_STEP == 60
    assert step_at(0) == 0
    assert step_at(59) == 0
    assert step_at(60) == 1
    assert step_at(1_700_000_000) == 28_333_333


SECRET = bytes(range(20))
ISSUED_AT = 1_700_000_000


@pytest.mark.parametrize("minutes_later", [-1, 0, 1, 2])
def test_codes_are_accepted_from_one_step_early_to_two_steps_late(minutes_later: int) -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    now = ISSUED_AT + minutes_later * TIME_STEP
    assert match_step(SECRET, parsed, now) == step_at(ISSUED_AT)


@pytest.mark.parametrize("minutes_later", [-3, -2, 3, 4, 60])
def test_codes_outside_the_window_are_rejected(minutes_later: int) -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    assert match_step(SECRET, parsed, ISSUED_AT + minutes_later * TIME_STEP) is None


def test_a_wider_window_accepts_an_older_code() -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    late = ISSUED_AT + 5 * TIME_STEP
    assert match_step(SECRET, parsed, late) is None
    assert match_step(SECRET, parsed, late, back=5) == step_at(ISSUED_AT)


def test_a_zero_window_accepts_only_the_current_step() -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    assert match_step(SECRET, parsed, ISSUED_AT, back=0, forward=0) == step_at(ISSUED_AT)
    assert match_step(SECRET, parsed, ISSUED_AT + TIME_STEP, back=0, forward=0) is None


def test_a_code_from_another_secret_is_rejected() -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    assert match_step(bytes(20), parsed, ISSUED_AT) is None


def test_changing_the_slot_of_a_code_invalidates_it() -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    assert match_step(SECRET, ParsedCode(parsed.device_no, 4, parsed.otp), ISSUED_AT) is None


def test_a_hand_built_code_with_non_ascii_otp_is_rejected_without_error() -> None:
    assert match_step(SECRET, ParsedCode(7, 3, "１２３４５６７"), ISSUED_AT) is None


def test_match_step_refuses_a_negative_window() -> None:
    parsed = parse(generate(SECRET, 7, ISSUED_AT, 3))
    with pytest.raises(ValueError):
        match_step(SECRET, parsed, ISSUED_AT, back=-1)


def test_parse_extracts_device_slot_and_otp() -> None:
    assert parse("281234567890123456") == ParsedCode(device_no=12345678, slot=9, otp="0123456")
    assert parse("280000000000000000") == ParsedCode(device_no=0, slot=0, otp="0000000")


@pytest.mark.parametrize(
    "code",
    [
        "",
        "28123456789012345",
        "2812345678901234567",
        "271234567890123456",
        "251234567890123456",
        "28123456789012345a",
        " 28123456789012345",
        "28123456789012345\n",
        "28１２３４５６７８９０１２３４５６",
        "２８1234567890123456",
    ],
)
def test_parse_rejects_anything_but_18_ascii_digits_starting_28(code: str) -> None:
    with pytest.raises(MalformedCode):
        parse(code)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(MalformedCode):
        parse(281234567890123456)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("2" + "5" + "0" * 14, True),
        ("30" + "0" * 22, True),
        ("281234567890123456", True),
        ("25" + "0" * 13, False),
        ("30" + "0" * 23, False),
        ("24" + "0" * 16, False),
        ("31" + "0" * 16, False),
        ("28" + "0" * 15 + "x", False),
        ("２８" + "0" * 16, False),
        ("", False),
    ],
)
def test_looks_like_alipay_code_accepts_16_to_24_digits_starting_25_to_30(code: str, expected: bool) -> None:
    assert looks_like_alipay_code(code) is expected


@pytest.mark.parametrize(
    ("device_no", "slot"),
    [(-1, 0), (100_000_000, 0), (0, -1), (0, 10)],
)
def test_generate_rejects_out_of_range_device_numbers_and_slots(device_no: int, slot: int) -> None:
    with pytest.raises(ValueError):
        generate(SECRET, device_no, ISSUED_AT, slot)


def test_generate_rejects_an_empty_secret() -> None:
    with pytest.raises(ValueError):
        generate(b"", 0, ISSUED_AT)


def test_generate_rejects_times_before_the_epoch() -> None:
    with pytest.raises(ValueError):
        generate(SECRET, 0, -60)
