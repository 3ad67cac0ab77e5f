"""Protocol-independent signing primitives: canonical query strings, MD5 and RSA/RSA2 signatures, keys."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = [
    "SIGN_EXCLUDED",
    "KeyFormatError",
    "SignAlgorithm",
    "canonical_query",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "md5_sign",
    "md5_verify",
    "private_key_b64",
    "private_key_pem",
    "public_key_b64",
    "public_key_pem",
    "rsa_sign",
    "rsa_verify",
    "salted_sha256",
    "salted_sha256_verify",
]

# RSA = SHA1withRSA, RSA2 = SHA256withRSA, both PKCS#1 v1.5 as Alipay defines them.
SignAlgorithm = Literal["RSA", "RSA2"]

SIGN_EXCLUDED: Final[tuple[str, ...]] = ("sign", "sign_type")

# Keys are parsed once per distinct text; a handful of merchants/apps per process is the norm.
_KEY_CACHE_SIZE: Final = 256


class KeyFormatError(ValueError):
    """The text is not a usable RSA key in PEM or bare base64 DER form."""


def canonical_query(params: Mapping[str, str | None], exclude: Collection[str] = SIGN_EXCLUDED) -> str:
    """Return Alipay's string-to-sign: sorted non-empty k=v pairs joined by "&", values not URL-encoded."""
    return "&".join(
        f"{key}={value}"
        for key, value in sorted(params.items())
        if key not in exclude and value is not None and value != ""
    )


#: A value holding ``&name=`` could be split there: ``memo=a&notify_url=X`` is both one ``memo`` and a
#: ``memo`` plus a ``notify_url``. Without such a value the pairs of a canonical string can only be read
#: one way (each pair starts after ``&`` with a name and its first ``=``), so no two requests share it.
_PAIR_BOUNDARY = re.compile(r"&[^&=]*=")
AMBIGUOUS_DETAIL = (
    "a value contains '&name=', which would let the signed string be read as another request; "
    "names may not contain '&' or '='"
)


def ambiguous(name: str, value: str) -> bool:
    """Whether a parameter would make the canonical string readable as a different request.

    JSON-valued parameters that the gateway parses whole are exempt (the caller decides): a split inside
    a JSON text leaves a prefix that is not JSON, and a JSON text with ``&k=v`` after it is not JSON.
    """
    return "&" in name or "=" in name or _PAIR_BOUNDARY.search(value) is not None


def md5_sign(content: str, key: str, charset: str = "utf-8") -> str:
    """Return the lowercase hex MD5 of content with the key appended directly (MAPI MD5 signing)."""
    return hashlib.md5((content + key).encode(charset)).hexdigest()


def md5_verify(content: str, key: str, signature: str, charset: str = "utf-8") -> bool:
    """Check an MD5 signature in constant time, ignoring hex letter case."""
    expected = md5_sign(content, key, charset).encode("ascii")
    # Bytes, because compare_digest raises on non-ASCII str and the signature is untrusted input.
    return hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace"))


def salted_sha256(body: bytes, salt: str) -> str:
    """Lower-case hex SHA-256 of ``body`` followed by ``salt`` (UTF-8): the heartbeat's ``digest``."""
    return hashlib.sha256(body + salt.encode("utf-8")).hexdigest()


def salted_sha256_verify(body: bytes, salt: str, digest: str) -> bool:
    """Whether ``digest`` is :func:`salted_sha256` of ``body`` and ``salt`` (hex in either case)."""
    # Bytes, not str: compare_digest refuses non-ASCII text, and the header is the sender's to choose.
    given = digest.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(salted_sha256(body, salt).encode("ascii"), given)


def _hash_for(algorithm: SignAlgorithm) -> hashes.HashAlgorithm:
    if algorithm == "RSA":
        return hashes.SHA1()  # noqa: S303 - SHA1withRSA is the protocol's legacy "RSA" sign_type
    if algorithm == "RSA2":
        return hashes.SHA256()
    raise ValueError(f"unknown sign algorithm: {algorithm!r}")


def rsa_sign(content: bytes, private_key: RSAPrivateKey, algorithm: SignAlgorithm) -> str:
    """Sign bytes with PKCS#1 v1.5 (SHA1 for RSA, SHA256 for RSA2) and return one-line standard Base64."""
    signature = private_key.sign(content, padding.PKCS1v15(), _hash_for(algorithm))
    return base64.b64encode(signature).decode("ascii")


def rsa_verify(
    content: bytes, signature_b64: str, public_key: RSAPublicKey, algorithm: SignAlgorithm
) -> bool:
    """Verify a Base64 PKCS#1 v1.5 signature, returning False (never raising) for any bad signature input."""
    hash_algorithm = _hash_for(algorithm)
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    try:
        public_key.verify(signature, content, padding.PKCS1v15(), hash_algorithm)
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_private_key(bits: int = 2048) -> RSAPrivateKey:
    """Generate a new RSA private key with public exponent 65537."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _der_from_text(text: str) -> bytes | None:
    """Return DER bytes for a bare base64 body, or None if the text is PEM."""
    if "-----BEGIN" in text:
        return None
    body = "".join(text.split())
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError("key is neither PEM nor a base64 DER body") from exc


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def load_private_key(text: str) -> RSAPrivateKey:
    """Load an unencrypted RSA private key from PEM (PKCS#1 or PKCS#8) or a bare base64 DER body."""
    if not isinstance(text, str) or not text.strip():
        raise KeyFormatError("private key text is empty")
    try:
        der = _der_from_text(text)
        # load_der_private_key accepts both PKCS#8 and PKCS#1 (traditional) DER, which is how
        # bare bodies from Alipay's console are told apart without markers.
        if der is None:
            key = serialization.load_pem_private_key(text.strip().encode("ascii"), password=None)
        else:
            key = serialization.load_der_private_key(der, password=None)
    except KeyFormatError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"cannot load private key: {exc}") from exc
    if not isinstance(key, RSAPrivateKey):
        raise KeyFormatError(f"expected an RSA private key, got {type(key).__name__}")
    return key


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def load_public_key(text: str) -> RSAPublicKey:
    """Load an RSA public key from PEM (SPKI or PKCS#1) or a bare base64 DER body."""
    if not isinstance(text, str) or not text.strip():
        raise KeyFormatError("public key text is empty")
    try:
        der = _der_from_text(text)
        # load_der_public_key accepts both SubjectPublicKeyInfo and PKCS#1 RSAPublicKey DER.
        if der is None:
            key = serialization.load_pem_public_key(text.strip().encode("ascii"))
        else:
            key = serialization.load_der_public_key(der)
    except KeyFormatError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"cannot load public key: {exc}") from exc
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError(f"expected an RSA public key, got {type(key).__name__}")
    return key


def _private_format(pkcs1: bool) -> serialization.PrivateFormat:
    return serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8


def private_key_pem(key: RSAPrivateKey, pkcs1: bool = False) -> str:
    """Serialize a private key as unencrypted PEM, PKCS#8 by default or PKCS#1 if asked."""
    return key.private_bytes(
        serialization.Encoding.PEM, _private_format(pkcs1), serialization.NoEncryption()
    ).decode("ascii")


def private_key_b64(key: RSAPrivateKey, pkcs1: bool = False) -> str:
    """Serialize a private key as a one-line base64 DER body (PKCS#8 by default, PKCS#1 if asked)."""
    der = key.private_bytes(serialization.Encoding.DER, _private_format(pkcs1), serialization.NoEncryption())
    return base64.b64encode(der).decode("ascii")


def public_key_pem(key: RSAPublicKey) -> str:
    """Serialize a public key as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_b64(key: RSAPublicKey) -> str:
    """Serialize a public key as a one-line base64 SubjectPublicKeyInfo DER body."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")
