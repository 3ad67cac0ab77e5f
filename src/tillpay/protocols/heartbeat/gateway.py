"""The terminal heartbeat endpoint, in the shape of Alipay's global heartbeat interface.

Source: ``AD:global/heartbeat`` (https://docs.antom.com/ac/global/heartbeat, the same page as
global.alipay.com/docs/ac/global/heartbeat), read through the public copies of the page; the page's
tail (the last HeartBeatInfo fields, its enumerations, "Digest generation" and the response) was not
readable, so those parts are guesses, each marked below and in docs/heartbeat.md.

- ``POST /monitor/api/heartbeat/isv``, JSON body ``{"heartBeat": [HeartBeatInfo, ...]}`` [page].
- Request head ``version`` (default ``1.0.1``), ``isvId``, ``reqTime`` (RFC 3339 with milliseconds and
  offset), ``digest`` (String(64): "the value after SHA256 hash for the request body and salt") [page].
  That the head travels as HTTP headers (not a JSON ``head`` object) follows reference §7 [guess].
- ``digest`` = lower-case hex SHA-256 of the body bytes followed by the salt: 64 characters fits hex,
  not base64; the order "body and salt" as the page words it [guess; either hex case is accepted].
- Tillpay's ISV account is the merchant's partner id and its salt is the merchant's MD5 key (the
  secret Alipay-style merchants already share with their tills; no second secret to hand out).
- The answer: Antom's ``result`` object, HTTP 200 on success [guess: the page's response section was
  not readable]. A refusal records nothing and answers HTTP 400/401/413 with ``resultStatus`` F.

A wrong digest and an unknown ``isvId`` get the same answer (after a lookup and a hash either way), so
the endpoint does not tell anyone which partner ids exist.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.heartbeat import Beat
from tillpay.protocols import freshness
from tillpay.services import heartbeats
from tillpay.services.platform import Platform

log = structlog.get_logger("tillpay.heartbeat")

PATH = "/monitor/api/heartbeat/isv"
#: Largest body accepted (bytes): 100 terminals of a few hundred bytes each fit with room to spare.
MAX_BODY = 64 * 1024
#: Most HeartBeatInfo entries in one request (an ISV server may report many terminals at once).
MAX_BEATS = 100

_PARTNER_RE = re.compile(r"^2088\d{12}$")
_ID_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")  # the Stores page's rule for store and terminal ids
_WORD_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")
#: HeartBeatInfo fields Tillpay keeps (wire name -> Beat field, longest value). Other fields are
#: accepted and ignored: the page's full list could not be read.
_FIELDS = {
    "storeId": ("store_id", 64),
    "secondaryMerchantId": ("secondary_merchant_id", 64),
    "equipmentType": ("equipment_type", 32),
    "networkType": ("network_type", 16),
    "action": ("action", 32),
    "sceneCode": ("scene_code", 64),
}
#: Compared against when the isvId is unknown, so that case costs what a wrong digest costs.
_NO_SALT = "tillpay-heartbeat-unknown-isv-0000"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status and JSON body."""

    status: int
    body: bytes


def _answer(status: int, code: str, result_status: str, message: str) -> Answer:
    result = {"resultCode": code, "resultStatus": result_status, "resultMessage": message}
    return Answer(status, json.dumps({"result": result}, separators=(",", ":")).encode())


OK = _answer(200, "SUCCESS", "S", "success")
#: The same answer for a wrong digest and an unknown isvId.
BAD_DIGEST = _answer(401, "INVALID_SIGNATURE", "F", "the digest does not verify for this isvId")
TOO_LARGE = _answer(413, "PARAM_ILLEGAL", "F", f"the body is larger than {MAX_BODY} bytes")


def param_illegal(message: str) -> Answer:
    """A malformed request (HTTP 400)."""
    return _answer(400, "PARAM_ILLEGAL", "F", message)


async def handle(p: Platform, headers: Any, body: bytes) -> Answer:
    """Verify, parse and record one heartbeat request; ``headers`` is a case-insensitive mapping."""
    if len(body) > MAX_BODY:
        return TOO_LARGE
    isv_id = str(headers.get("isvid") or "").strip()
    digest = str(headers.get("digest") or "")
    salt = _NO_SALT
    merchant_id: int | None = None
    if _PARTNER_RE.match(isv_id):
        try:
            m = await p.merchant_by_partner(isv_id)
            salt, merchant_id = m.md5_key, m.id
        except TillpayError:
            pass
    if not signing.salted_sha256_verify(body, salt, digest) or merchant_id is None:
        log.info("heartbeat refused", reason="digest", isv_id=isv_id[:32])
        return BAD_DIGEST
    try:
        reported_at = _req_time(str(headers.get("reqtime") or ""))
        beats, signed_at = _beats(body, isv_id)
        if signed_at is not None:
            if not freshness.is_fresh(p, signed_at):
                raise _bad(f"reqTime in the body is outside {freshness.window_text(p)} of the server's clock")
            reported_at = signed_at
        await heartbeats.record(p, merchant_id, beats, reported_at, signed_at)
    except TillpayError as e:
        log.info("heartbeat refused", partner=isv_id, reason=e.detail)
        if e.code is Code.SYSTEM_ERROR:
            return _answer(500, "UNKNOWN_EXCEPTION", "U", e.detail or "try again")
        return param_illegal(e.detail or "illegal parameters")
    log.debug("heartbeat", partner=isv_id, terminals=[b.terminal_id for b in beats])
    return OK


def _bad(message: str) -> TillpayError:
    return TillpayError(Code.ILLEGAL_ARGUMENT, message)


def _req_time(text: str) -> datetime:
    """``reqTime``: RFC 3339 with an offset, e.g. ``2001-07-04T12:08:56.253+05:30`` [page]."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad("reqTime must be an RFC 3339 date-time with an offset") from None
    if when.tzinfo is None:
        raise _bad("reqTime must carry its UTC offset")
    return when


def _beats(body: bytes, isv_id: str) -> tuple[list[Beat], datetime | None]:
    """The entries, and the body's own ``reqTime`` when it has one (Tillpay's addition: the digest covers
    the body only, so a time there is signed and a replayed request can be told from a new one)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad("the body is not JSON") from None
    items = doc.get("heartBeat") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise _bad("heartBeat must be a non-empty list")
    if len(items) > MAX_BEATS:
        raise _bad(f"heartBeat takes at most {MAX_BEATS} entries")
    signed = doc.get("reqTime")
    if signed is not None and not isinstance(signed, str):
        raise _bad("reqTime in the body must be an RFC 3339 date-time with an offset")
    when = _req_time(signed) if signed is not None else None
    return [_beat(i, item, isv_id) for i, item in enumerate(items)], when


def _beat(i: int, item: object, isv_id: str) -> Beat:
    where = f"heartBeat[{i}]"
    if not isinstance(item, dict):
        raise _bad(f"{where} must be an object")
    terminal = item.get("terminalId")
    if not isinstance(terminal, str) or not _ID_RE.match(terminal):
        raise _bad(f"{where}.terminalId is required: 1-64 letters, digits or . _ : / -")
    partner = item.get("partnerId")
    # A partner reports its own terminals only: the digest proves who sent it, not whose tills these are.
    if partner is not None and partner != isv_id:
        raise _bad(f"{where}.partnerId must be the isvId")
    values: dict[str, str | None] = {}
    for wire, (name, longest) in _FIELDS.items():
        v = item.get(wire)
        if v is None or v == "":
            values[name] = None
            continue
        if not isinstance(v, str) or not _WORD_RE.match(v) or len(v) > longest:
            raise _bad(f"{where}.{wire}: at most {longest} letters, digits or . _ : / -")
        values[name] = v
    return Beat(terminal_id=terminal, **values)
