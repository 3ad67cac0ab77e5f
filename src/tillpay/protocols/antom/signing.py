"""Antom's header signatures (reference §2.2): what is signed, and the ``Signature`` header.

String to sign: ``"<METHOD> <path>\\n<client-id>.<request-time>.<body>"``; SHA256withRSA (``RSA256``),
PKCS#1 v1.5, Base64, then URL-encoded in the header ``algorithm=RSA256,keyVersion=1,signature=...``.
Requests are verified with the merchant's key of that ``keyVersion``; responses and notifications are
signed with Tillpay's key for the merchant.
"""

from __future__ import annotations

from urllib.parse import quote_plus, unquote_plus

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError

ALGORITHM = "RSA256"


def content(method: str, path: str, client_id: str, time: str, body: str) -> bytes:
    """The bytes an Antom signature covers."""
    return f"{method} {path}\n{client_id}.{time}.{body}".encode()


def parse_header(value: str) -> tuple[str, int | None, str]:
    """``algorithm=RSA256, keyVersion=1, signature=...`` → (algorithm, key version or None, Base64 signature)."""
    parts: dict[str, str] = {}
    for item in value.split(","):
        k, sep, v = item.strip().partition("=")
        if sep:
            parts[k.strip()] = v.strip()
    sig = parts.get("signature")
    if not sig:
        raise TillpayError(Code.ILLEGAL_SIGN, "the signature header has no signature=")
    algorithm = parts.get("algorithm", ALGORITHM)
    version: int | None = None
    if "keyVersion" in parts:
        if not parts["keyVersion"].isdigit() or len(parts["keyVersion"]) > 6:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, "keyVersion must be a number")
        version = int(parts["keyVersion"])
    return algorithm, version, unquote_plus(sig)


def header(signature_b64: str, key_version: int = 1) -> str:
    """The ``signature`` header value for a Base64 signature."""
    return f"algorithm={ALGORITHM},keyVersion={key_version},signature={quote_plus(signature_b64)}"


def sign(data: bytes, private_key_pem: str) -> str:
    """Base64 SHA256withRSA of ``data``."""
    return signing.rsa_sign(data, signing.load_private_key(private_key_pem), "RSA2")


def verify(data: bytes, signature_b64: str, public_key_pem: str) -> bool:
    """Whether ``signature_b64`` is a SHA256withRSA signature of ``data`` by ``public_key_pem``."""
    return signing.rsa_verify(data, signature_b64, signing.load_public_key(public_key_pem), "RSA2")
