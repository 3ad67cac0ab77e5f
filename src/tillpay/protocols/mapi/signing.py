"""MAPI signatures for requests, responses and notifications, in one place.

Requests (confirmed): every parameter except ``sign`` and ``sign_type``, empty ones dropped, sorted by
name, joined ``k=v&...`` with raw values, encoded in ``_input_charset``; MD5 appends the merchant's key
and hashes, RSA is SHA1withRSA and RSA2 SHA256withRSA with the merchant's private key, Base64.

Responses (as the public MAPI clients verify them: melitigo/AlipaySDK
``AlipayResponse.getPreSignString``, Yurunsoft/PaySDK ``SDK::verifySync``, and a Python production client
that verifies ``obj['alipay']['response']['alipay']``): the same rule over the children of
``<response><alipay>`` only. ``is_success``, ``error``, ``sign``, ``sign_type`` and the ``<request>`` echo
are not covered. A refusal (``is_success=F``) has no ``<response>``; Tillpay signs ``error=<value>``
there, the string melitigo/AlipaySDK builds for such a response (the clients do not verify refusals;
this is Tillpay's choice). RSA and RSA2 responses are signed with Tillpay's key for the merchant, MD5
responses with the merchant's MD5 key.

Notifications: the request rule over every posted field except ``sign`` and ``sign_type``, as the
classic notify verification (and Yurunsoft/PaySDK ``verifyCallback``) checks them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError

SIGN_TYPES = ("MD5", "RSA", "RSA2")


def content(params: Mapping[str, str]) -> str:
    """The string a MAPI signature covers."""
    return signing.canonical_query(params)


def verify_request(
    params: Mapping[str, str],
    *,
    md5_key: str,
    public_key_pem: str | None,
    charset: str,
    previous_md5_keys: Sequence[str] = (),
    allowed: Collection[str] | None = None,
) -> str:
    """Check a request's ``sign``; raise ILLEGAL_SIGN_TYPE, HAS_NO_PUBLICKEY or ILLEGAL_SIGN.

    ``allowed``: the merchant's sign types (None: all). ``previous_md5_keys``: MD5 keys still in their
    grace period after a rotation. Returns the MD5 key that verified ("" for RSA), to answer with it.
    """
    sign_type = params.get("sign_type", "")
    sign = params.get("sign", "")
    if sign_type not in SIGN_TYPES:
        raise TillpayError(Code.ILLEGAL_SIGN_TYPE, "sign_type must be MD5, RSA or RSA2 (uppercase)")
    if allowed is not None and sign_type not in allowed:
        raise TillpayError(Code.ILLEGAL_SIGN_TYPE, f"this merchant may not sign with {sign_type}")
    if not sign:
        raise TillpayError(Code.ILLEGAL_SIGN, "the sign parameter is missing")
    text = content(params)
    if sign_type == "MD5":
        for key in (md5_key, *previous_md5_keys):
            if signing.md5_verify(text, key, sign, charset):
                return key
        ok = False
    else:
        if not public_key_pem:
            raise TillpayError(Code.HAS_NO_PUBLICKEY)
        ok = signing.rsa_verify(
            text.encode(charset),
            sign,
            signing.load_public_key(public_key_pem),
            sign_type,  # type: ignore[arg-type]
        )
    if not ok:
        raise TillpayError(Code.ILLEGAL_SIGN, f"the {sign_type} signature does not verify")
    return ""


def sign(
    fields: Mapping[str, str], *, sign_type: str, md5_key: str, private_key_pem: str, charset: str
) -> str:
    """Sign fields (response or notification) with the merchant's MD5 key or Tillpay's RSA key."""
    text = content(fields)
    if sign_type == "MD5":
        return signing.md5_sign(text, md5_key, charset)
    if sign_type not in ("RSA", "RSA2"):
        raise ValueError(f"cannot sign with {sign_type!r}")
    return signing.rsa_sign(
        text.encode(charset),
        signing.load_private_key(private_key_pem),
        sign_type,  # type: ignore[arg-type]
    )


def sign_request(
    params: Mapping[str, str],
    *,
    sign_type: str,
    md5_key: str = "",
    private_key_pem: str = "",
    charset: str = "utf-8",
) -> str:
    """Sign a request as a merchant does (used by the client library and the tests)."""
    return sign(
        params, sign_type=sign_type, md5_key=md5_key, private_key_pem=private_key_pem, charset=charset
    )


def verify_response(
    fields: Mapping[str, str],
    signature: str,
    *,
    sign_type: str,
    md5_key: str,
    public_key_pem: str,
    charset: str,
) -> bool:
    """Check a response's or notification's ``sign`` as a merchant does."""
    text = content(fields)
    if sign_type == "MD5":
        return signing.md5_verify(text, md5_key, signature, charset)
    if sign_type not in ("RSA", "RSA2"):
        return False
    return signing.rsa_verify(
        text.encode(charset),
        signature,
        signing.load_public_key(public_key_pem),
        sign_type,  # type: ignore[arg-type]
    )
