"""Secondary merchants and their stores: the field rules, and what a pay naming one records.

An acquirer or ISV (a Tillpay merchant, the MAPI ``partner``) sells for secondary merchants, each with
stores. Alipay identifies a store by partner + ``secondary_merchant_id`` + ``store_id``
(``barcode_cn/implementing_apis``). The rules here are the lengths and shapes of Alipay's pages
(``global/offline_maintain``, ``hkapi/offline_querystatus``) where they give them; the rest are marked
*guessed* in ``docs/secondary-merchants.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from tillpay.domain.errors import Code, TillpayError

#: "The ID can contain letters, numbers, and underscores" (``global/offline_maintain``).
SECONDARY_MERCHANT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
#: The store id's characters are not stated for ``offline_maintain``; the secondary merchant id's rule
#: plus ``-`` and ``.`` (guessed), which the ids tills already send (``stores.ID_RE``) mostly fit.
STORE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: A merchant category code: four digits (ISO 18245; ``store_industry`` 5499, ``secondary_merchant_industry``
#: 5812 in Alipay's samples).
MCC = re.compile(r"\d{4}")
COUNTRY = re.compile(r"[A-Z]{2}")  # "A 2-letter country code" (ISO 3166-1 alpha-2)
MERCHANT_TYPES = ("INDIVIDUAL", "ENTERPRISE")  # melitigo/AlipaySDK offline maintain request

#: ``extend_info`` keys of spot.pay and their maximum lengths. The id, name and store lengths are the
#: registration's (``offline_maintain``: id 64, name 128, store id 64, store name 256); terminal_id and
#: sys_service_provider_id are guessed at 64.
EXTEND_INFO_LENGTHS = {
    "secondary_merchant_id": 64,
    "secondary_merchant_name": 128,
    "secondary_merchant_industry": 4,
    "store_id": 64,
    "store_name": 256,
    "terminal_id": 64,
    "sys_service_provider_id": 64,
}


def _bad(detail: str) -> TillpayError:
    return TillpayError(Code.ILLEGAL_ARGUMENT, detail)


@dataclass(frozen=True, slots=True)
class SecondaryRef:
    """What a pay says about where it happened: the secondary merchant and its store."""

    secondary_merchant_id: str | None = None
    secondary_merchant_name: str | None = None
    secondary_merchant_industry: str | None = None
    store_id: str | None = None
    store_name: str | None = None
    terminal_id: str | None = None
    sys_service_provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class Registered:
    """What is registered about a pay's secondary merchant and its store (store fields None: no such store)."""

    merchant_name: str | None
    merchant_active: bool | None
    store_name: str | None
    store_industry: str | None
    store_active: bool | None


def parse_extend_info(value: object) -> SecondaryRef:
    """The parts of a decoded ``extend_info`` JSON value Tillpay uses, checked; ILLEGAL_ARGUMENT if bad."""
    # Keys Tillpay does not use (the AOP class lists merchant_name, mcc, region_code...) are accepted and
    # ignored, so a till that sends them still pays.
    if not isinstance(value, dict):
        raise _bad("extend_info must be a JSON object")
    found: dict[str, str] = {}
    for key, limit in EXTEND_INFO_LENGTHS.items():
        raw = value.get(key)
        if raw is None:
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise _bad(f"extend_info.{key} must be a string")
        text = str(raw).strip()
        if not text:
            continue
        if len(text) > limit:
            raise _bad(f"extend_info.{key} is longer than {limit} characters")
        found[key] = text
    industry = found.get("secondary_merchant_industry")
    if industry is not None and not MCC.fullmatch(industry):
        raise _bad("extend_info.secondary_merchant_industry must be a 4-digit MCC")
    smid = found.get("secondary_merchant_id")
    if smid is not None and not SECONDARY_MERCHANT_ID.fullmatch(smid):
        raise _bad("extend_info.secondary_merchant_id may contain only letters, digits and underscores")
    if smid is None and ("secondary_merchant_name" in found or industry is not None):
        raise _bad("extend_info names a secondary merchant without secondary_merchant_id")
    return SecondaryRef(**found)


def resolve(given: SecondaryRef, reg: Registered | None) -> SecondaryRef:
    """What a pay records: what it sent, completed from the registration; ILLEGAL_ARGUMENT if disabled."""
    # An unregistered secondary merchant is recorded as sent: registration is an optional service.
    if reg is None or given.secondary_merchant_id is None:
        return given
    if reg.merchant_active is False:
        raise _bad(f"secondary merchant {given.secondary_merchant_id} is disabled")
    if reg.store_active is False:
        raise _bad(f"store {given.store_id} of secondary merchant {given.secondary_merchant_id} is disabled")
    return replace(
        given,
        secondary_merchant_name=given.secondary_merchant_name or reg.merchant_name,
        secondary_merchant_industry=given.secondary_merchant_industry or reg.store_industry,
        store_name=given.store_name or reg.store_name,
    )


# -------------------------------------------------------------------------------- the registration

#: Every business field of ``offline_maintain`` with its maximum length and whether it is required.
#: Confirmed lengths (``global/offline_maintain``): secondary_merchant_name 128, secondary_merchant_id 64,
#: store_id 64, store_name 256, store_country 2. The fields come from that page and from
#: melitigo/AlipaySDK ``AlipayOverseasSecmerchantOfflineMaintainRequest``; every other length, and
#: store_address and store_industry being required, is guessed.
REGISTRATION_FIELDS: dict[str, tuple[int, bool]] = {
    "secondary_merchant_name": (128, True),
    "secondary_merchant_id": (64, True),
    "store_id": (64, True),
    "store_name": (256, True),
    "store_country": (2, True),
    "store_address": (256, True),
    "store_industry": (4, True),
    "internal_store_photo": (512, False),
    "external_storefront_photo": (512, False),
    "extend_params": (4096, False),
    "secondary_merchant_type": (16, False),
    "registration_no": (64, False),
    "register_country": (2, False),
    "register_address": (256, False),
    "shareholder_name": (64, False),
    "shareholder_id": (64, False),
    "representative_name": (64, False),
    "representative_id": (64, False),
    "settlement_no": (64, False),
    "contact_no": (64, False),
    "contact_email": (128, False),
    "cs_no": (64, False),
    "cs_email": (128, False),
}
#: Taxis and limousines: the store is a car and ``extend_params`` lists its drivers (``hkapi/offline_maintain``).
TAXI_MCC = "4121"
_URL = re.compile(r"https?://[^\s\"<>]+")
_EMAIL = re.compile(r"[^@\s\"<>]+@[^@\s\"<>]+")
_PHONE = re.compile(r"[+\-0-9 ()]{1,64}")
_DRIVER_ID = re.compile(r"[A-Za-z0-9]{1,64}")


@dataclass(frozen=True, slots=True)
class Registration:
    """One ``offline_maintain`` request's business fields: a secondary merchant and one of its stores."""

    secondary_merchant_id: str
    secondary_merchant_name: str
    store_id: str
    store_name: str
    store_country: str
    store_address: str
    store_industry: str
    internal_store_photo: str | None = None
    external_storefront_photo: str | None = None
    extend_params: str | None = None
    secondary_merchant_type: str | None = None
    registration_no: str | None = None
    register_country: str | None = None
    register_address: str | None = None
    shareholder_name: str | None = None
    shareholder_id: str | None = None
    representative_name: str | None = None
    representative_id: str | None = None
    settlement_no: str | None = None
    contact_no: str | None = None
    contact_email: str | None = None
    cs_no: str | None = None
    cs_email: str | None = None

    @classmethod
    def parse(cls, fields: dict[str, str]) -> Registration:
        """A registration from request fields, every one checked; ILLEGAL_ARGUMENT names the first bad one."""
        values: dict[str, str | None] = {}
        for name, (limit, required) in REGISTRATION_FIELDS.items():
            text = (fields.get(name) or "").strip()
            if not text:
                if required:
                    raise _bad(f"parameter {name!r} is missing")
                values[name] = None
                continue
            if len(text) > limit:
                raise _bad(f"parameter {name!r} is longer than {limit}")
            values[name] = text
        reg = cls(**values)  # type: ignore[arg-type]  # the required ones were checked above
        reg.check()
        return reg

    def check(self) -> None:
        """The shapes Alipay's pages give (ILLEGAL_ARGUMENT for the first that does not fit)."""
        if not SECONDARY_MERCHANT_ID.fullmatch(self.secondary_merchant_id):
            raise _bad("secondary_merchant_id may contain only letters, digits and underscores (1-64)")
        if not STORE_ID.fullmatch(self.store_id):
            raise _bad("store_id may contain only letters, digits, '_', '-' and '.' (1-64)")
        if not COUNTRY.fullmatch(self.store_country):
            raise _bad("store_country must be a 2-letter ISO 3166 country code in capitals, e.g. US")
        if self.register_country is not None and not COUNTRY.fullmatch(self.register_country):
            raise _bad("register_country must be a 2-letter ISO 3166 country code in capitals")
        if not MCC.fullmatch(self.store_industry):
            raise _bad("store_industry must be a 4-digit MCC, e.g. 5499")
        if self.secondary_merchant_type is not None and self.secondary_merchant_type not in MERCHANT_TYPES:
            raise _bad("secondary_merchant_type must be INDIVIDUAL or ENTERPRISE")
        for name in ("internal_store_photo", "external_storefront_photo"):
            url = getattr(self, name)
            if url is not None and not _URL.fullmatch(url):
                raise _bad(f"{name} must be an http(s) URL")
        for name in ("contact_email", "cs_email"):
            email = getattr(self, name)
            if email is not None and not _EMAIL.fullmatch(email):
                raise _bad(f"{name} is not an email address")
        for name in ("contact_no", "cs_no"):
            phone = getattr(self, name)
            if phone is not None and not _PHONE.fullmatch(phone):
                raise _bad(f"{name} may contain only digits, spaces and + - ( )")
        if self.store_industry == TAXI_MCC and self.extend_params is None:
            raise _bad("extend_params (the taxi's drivers) is required when store_industry is 4121")
        if self.extend_params is not None:
            _check_drivers(self.extend_params)


def _check_drivers(text: str) -> None:
    """``extend_params``: up to 10 drivers, each ``operation_id`` (letters and digits, 64),
    ``contact_person`` (64) and optionally ``contact_way`` (256; ``+``, ``-``, digits, spaces)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise _bad("extend_params is not JSON") from None
    drivers = value if isinstance(value, list) else [value]
    if not 1 <= len(drivers) <= 10:
        raise _bad("extend_params lists 1 to 10 drivers")
    seen: set[str] = set()
    for d in drivers:
        if not isinstance(d, dict):
            raise _bad("each driver in extend_params must be a JSON object")
        op_id, person, way = d.get("operation_id"), d.get("contact_person"), d.get("contact_way")
        if not isinstance(op_id, str) or not _DRIVER_ID.fullmatch(op_id):
            raise _bad("extend_params: operation_id is 1-64 letters and digits")
        if op_id in seen:
            raise _bad(f"extend_params: operation_id {op_id} is given twice")
        seen.add(op_id)
        if not isinstance(person, str) or not person.strip() or len(person) > 64:
            raise _bad("extend_params: contact_person is required, at most 64 characters")
        if way is not None and (
            not isinstance(way, str) or len(way) > 256 or not re.fullmatch(r"[+\-0-9 ]+", way)
        ):
            raise _bad("extend_params: contact_way may contain only +, -, digits and spaces")
