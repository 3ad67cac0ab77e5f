"""Tests for tillpay.signing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import param_dicts, param_keys, param_values
from tillpay.signing import (
    KeyFormatError,
    SignAlgorithm,
    canonical_query,
    generate_private_key,
    load_private_key,
    load_public_key,
    md5_sign,
    md5_verify,
    private_key_b64,
    private_key_pem,
    public_key_b64,
    public_key_pem,
    rsa_sign,
    rsa_verify,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "signing.json").read_text(encoding="utf-8")
)
TEST_KEY = load_private_key(VECTORS["test_private_key_pem_pkcs1"])
TEST_PUBLIC = load_public_key(VECTORS["test_public_key_pem"])


@pytest.fixture(scope="module")
def other_key() -> RSAPrivateKey:
    return generate_private_key()


def test_vectors_exclude_sign_fields_and_empty_values() -> None:
    first = VECTORS["md5"][0]
    assert {"sign", "sign_type", "empty_value"} <= set(first["params"])
    assert not {pair.split("=", 1)[0] for pair in first["canonical"].split("&")} & {"sign", "sign_type"}
    assert "empty_value" not in first["canonical"]
    assert {v["charset"] for v in VECTORS["md5"]} == {"utf-8", "gbk"}
    assert {v["algorithm"] for v in VECTORS["rsa"]} == {"RSA", "RSA2"}


@pytest.mark.parametrize("vector", VECTORS["md5"], ids=lambda v: v["description"])
def test_md5_vectors_produce_the_expected_canonical_string_and_signature(vector: dict[str, Any]) -> None:
    canonical = canonical_query(vector["params"])
    assert canonical == vector["canonical"]
    assert md5_sign(canonical, vector["key"], vector["charset"]) == vector["sign"]
    assert md5_verify(canonical, vector["key"], vector["sign"], vector["charset"])
    assert md5_verify(canonical, vector["key"], vector["sign"].upper(), vector["charset"])


def test_md5_of_chinese_text_depends_on_the_charset() -> None:
    utf8 = next(v for v in VECTORS["md5"] if v["charset"] == "utf-8" and "subject" in v["params"])
    gbk = next(v for v in VECTORS["md5"] if v["charset"] == "gbk")
    canonical = "subject=咖啡"
    assert md5_sign(canonical, "k", "utf-8") != md5_sign(canonical, "k", "gbk")
    assert not md5_verify(gbk["canonical"], gbk["key"], gbk["sign"], "utf-8")
    assert utf8["sign"] != gbk["sign"]


def test_md5_sign_appends_the_key_without_a_separator() -> None:
    # md5("abc") from RFC 1321's test suite.
    assert md5_sign("a", "bc") == "900150983cd24fb0d6963f7d28e17f72"


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "900150983cd24fb0d6963f7d28e17f7",
        "900150983cd24fb0d6963f7d28e17f73",
        "９00150983cd24fb0d6963f7d28e17f72",
    ],
)
def test_md5_verify_rejects_wrong_signatures_without_raising(signature: str) -> None:
    assert not md5_verify("a", "bc", signature)


def test_canonical_query_sorts_by_code_point_and_leaves_values_raw() -> None:
    params = {"b": "2", "a": "x y&z=1", "B": "upper", "a_b": "3", "sign": "s", "sign_type": "MD5"}
    assert canonical_query(params) == "B=upper&a=x y&z=1&a_b=3&b=2"


def test_canonical_query_skips_none_and_empty_values() -> None:
    assert canonical_query({"a": "1", "b": "", "c": None, "d": "0"}) == "a=1&d=0"


def test_canonical_query_honours_a_custom_exclusion_list() -> None:
    assert (
        canonical_query({"sign": "s", "sign_type": "RSA", "x": "1"}, exclude=("sign",)) == "sign_type=RSA&x=1"
    )


@given(params=param_dicts, key=param_keys)
def test_canonical_query_omits_excluded_and_empty_parameters(params: dict[str, str], key: str) -> None:
    params = {**params, "sign": "abc", "sign_type": "MD5", key: ""}
    pairs = canonical_query(params).split("&") if canonical_query(params) else []
    assert [p.split("=", 1)[0] for p in pairs] == sorted(
        k for k, v in params.items() if v and k not in {"sign", "sign_type"}
    )


@given(params=param_dicts, key=param_keys, value=param_values)
def test_changing_any_signed_value_invalidates_an_md5_signature(
    params: dict[str, str], key: str, value: str
) -> None:
    assume(key not in {"sign", "sign_type"} and value != "" and params.get(key) != value)
    secret = "760bdzec6y9goq7ctyx96ezkz78287de"
    signature = md5_sign(canonical_query(params), secret)
    assert md5_verify(canonical_query(params), secret, signature)
    assert not md5_verify(canonical_query({**params, key: value}), secret, signature)


@pytest.mark.parametrize("vector", VECTORS["rsa"], ids=lambda v: v["description"])
def test_rsa_vectors_produce_the_expected_signature(vector: dict[str, Any]) -> None:
    canonical = canonical_query(vector["params"])
    assert canonical == vector["canonical"]
    content = canonical.encode(vector["charset"])
    assert rsa_sign(content, TEST_KEY, vector["algorithm"]) == vector["sign"]
    assert rsa_verify(content, vector["sign"], TEST_PUBLIC, vector["algorithm"])


@pytest.mark.parametrize("vector", VECTORS["rsa"], ids=lambda v: v["description"])
def test_rsa_verify_rejects_tampered_content_and_signatures(vector: dict[str, Any]) -> None:
    content = vector["canonical"].encode("utf-8")
    algorithm = vector["algorithm"]
    raw = bytearray(base64.b64decode(vector["sign"]))
    raw[len(raw) // 2] ^= 0x01
    assert not rsa_verify(content + b"x", vector["sign"], TEST_PUBLIC, algorithm)
    assert not rsa_verify(content, base64.b64encode(bytes(raw)).decode(), TEST_PUBLIC, algorithm)
    other: SignAlgorithm = "RSA2" if algorithm == "RSA" else "RSA"
    assert not rsa_verify(content, vector["sign"], TEST_PUBLIC, other)


def test_rsa_verify_rejects_a_signature_from_another_key(other_key: RSAPrivateKey) -> None:
    signature = rsa_sign(b"content", other_key, "RSA2")
    assert rsa_verify(b"content", signature, other_key.public_key(), "RSA2")
    assert not rsa_verify(b"content", signature, TEST_PUBLIC, "RSA2")


@pytest.mark.parametrize("garbage", ["", "not base64!!", "AAAA", "ÿÿÿÿ", "QUJD\nREVG", "QUJDRA=", "%%%"])
def test_rsa_verify_returns_false_for_garbage_instead_of_raising(garbage: str) -> None:
    assert not rsa_verify(b"content", garbage, TEST_PUBLIC, "RSA2")


def test_rsa_signatures_are_single_line_standard_base64() -> None:
    signature = rsa_sign(b"content" * 100, TEST_KEY, "RSA2")
    assert "\n" not in signature
    assert base64.b64encode(base64.b64decode(signature, validate=True)).decode() == signature


def test_unknown_algorithms_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        rsa_sign(b"content", TEST_KEY, "RSA3")  # type: ignore[arg-type]


@pytest.mark.parametrize("pkcs1", [False, True])
def test_private_keys_round_trip_through_pem_and_bare_bodies(pkcs1: bool, other_key: RSAPrivateKey) -> None:
    pem = private_key_pem(other_key, pkcs1=pkcs1)
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----" if pkcs1 else "-----BEGIN PRIVATE KEY-----")
    body = private_key_b64(other_key, pkcs1=pkcs1)
    assert "\n" not in body
    expected = other_key.private_numbers()
    assert load_private_key(pem).private_numbers() == expected
    assert load_private_key(body).private_numbers() == expected
    wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    assert load_private_key(wrapped + "\n").private_numbers() == expected


def test_public_keys_round_trip_through_spki_and_pkcs1_forms(other_key: RSAPrivateKey) -> None:
    public = other_key.public_key()
    expected = public.public_numbers()
    pkcs1_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()
    pkcs1_der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert public_key_pem(public).startswith("-----BEGIN PUBLIC KEY-----")
    assert "\n" not in public_key_b64(public)
    for text in (
        public_key_pem(public),
        public_key_b64(public),
        pkcs1_pem,
        base64.b64encode(pkcs1_der).decode(),
    ):
        assert load_public_key(text).public_numbers() == expected


def test_key_loading_is_cached_per_text() -> None:
    text = VECTORS["test_public_key_pem"]
    assert load_public_key(text) is load_public_key(text)
    private = VECTORS["test_private_key_pem_pkcs1"]
    # the same text twice in a row: other tests may have pushed the import-time load out of the cache
    assert load_private_key(private) is load_private_key(private)
    assert load_private_key(private).private_numbers() == TEST_KEY.private_numbers()


@pytest.mark.parametrize(
    "text",
    ["", "   ", "not a key", "QUJDREVG", "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n"],
)
def test_unusable_private_key_text_raises_key_format_error(text: str) -> None:
    with pytest.raises(KeyFormatError):
        load_private_key(text)


@pytest.mark.parametrize(
    "text", ["", "not a key", "QUJDREVG", "-----BEGIN PUBLIC KEY-----\nQUJD\n-----END PUBLIC KEY-----"]
)
def test_unusable_public_key_text_raises_key_format_error(text: str) -> None:
    with pytest.raises(KeyFormatError):
        load_public_key(text)


def test_non_rsa_keys_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        ec_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(KeyFormatError):
        load_private_key(pem)
    with pytest.raises(KeyFormatError):
        load_public_key(public_pem)


def test_encrypted_private_keys_are_refused(other_key: RSAPrivateKey) -> None:
    pem = other_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"password"),
    ).decode()
    with pytest.raises(KeyFormatError):
        load_private_key(pem)


@given(content=st.binary(max_size=200))
def test_rsa2_signatures_verify_and_fail_on_any_appended_byte(content: bytes) -> None:
    signature = rsa_sign(content, TEST_KEY, "RSA2")
    assert rsa_verify(content, signature, TEST_PUBLIC, "RSA2")
    assert not rsa_verify(content + b"\x00", signature, TEST_PUBLIC, "RSA2")
