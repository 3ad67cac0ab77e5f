"""The Retail Store's optional MAPI services: secondary merchant and store registration, its status, and
the ``extend_info`` of a pay that names them.

Sources (``docs/secondary-merchants.md`` lists every field): Alipay's pages ``global/offline_maintain``,
``hkapi/offline_maintain``, ``hkapi/offline_querystatus`` and ``global/online_querystatus_cn``; the public
client melitigo/AlipaySDK (``AlipayOverseasSecmerchantOfflineMaintainRequest``,
``AlipayOverseasSecmerchantMaintainQueryStatusOfflineRequest`` and their samples); for ``extend_info``,
Yurunsoft/PaySDK ``AlipayCrossBorder/InStore/BarcodePay/ExtendInfo.php``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.secmerchant import REGISTRATION_FIELDS, Registration, SecondaryRef, parse_extend_info
from tillpay.protocols import common
from tillpay.protocols.mapi.services import MAINTAIN, QUERY_STATUS
from tillpay.services import secmerchants
from tillpay.services.platform import Merchant, Platform

#: "yyyy-MM-dd HH:mm:ss" in GMT+8 (``global/offline_maintain``, ``hkapi/offline_querystatus``).
_TIMESTAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
#: "By default, the request expires in 30 minutes." A timestamp as far ahead is refused too (guessed:
#: a till's clock that is that far off would sign requests that replay later).
TIMESTAMP_WINDOW = timedelta(minutes=30)
#: ``payment_method`` of ``queryStatus``: "the value is INSTORE_PAYMENT for offline payments".
INSTORE_PAYMENT = "INSTORE_PAYMENT"
#: ``queryStatus`` ``status``: ``FAILED`` (with ``reject_reason``) is on Alipay's page; ``APPROVED`` for a
#: registration that stands is guessed.
APPROVED, FAILED = "APPROVED", "FAILED"

__all__ = ["HANDLERS", "SecondaryRef", "extend_info", "specs"]

Spec = TypeVar("Spec")


def specs(param: Callable[..., Spec], common: dict[str, Spec]) -> dict[str, dict[str, Spec]]:
    """The parameter tables of the two services, built with the gateway's parameter type."""
    base = {**common, "_input_charset": param(True, 8), "timestamp": param(True, 19, _TIMESTAMP)}
    maintain = {
        name: param(required, limit, None, name == "extend_params")
        for name, (limit, required) in REGISTRATION_FIELDS.items()
    }
    return {
        MAINTAIN: {**base, **maintain},
        QUERY_STATUS: {
            **base,
            "secondary_merchant_id": param(True, 64),
            "store_id": param(True, 64),
            "payment_method": param(True, 16, INSTORE_PAYMENT),
        },
    }


def extend_info(text: str) -> SecondaryRef:
    """spot.pay's ``extend_info``: a JSON object; ILLEGAL_ARGUMENT if it is not, or a value is bad."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # too deep is malformed too
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "extend_info is not JSON") from None
    return parse_extend_info(value)


def _check_timestamp(p: Platform, text: str) -> None:
    try:
        sent = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=common.BEIJING)
    except ValueError:
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT, "timestamp must be yyyy-MM-dd HH:mm:ss in GMT+8 (Beijing time)"
        ) from None
    if abs(p.now() - sent) > TIMESTAMP_WINDOW:
        raise TillpayError(
            Code.ILLEGAL_ARGUMENT,
            "timestamp is more than 30 minutes away from the gateway's clock (GMT+8, yyyy-MM-dd HH:mm:ss)",
        )


async def _maintain(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    _check_timestamp(p, q["timestamp"])
    reg = Registration.parse(q)
    done = await secmerchants.maintain(p, m.id, reg)
    return {
        "result_code": "SUCCESS",
        "secondary_merchant_id": done.status.secondary_merchant_id,
        "store_id": done.status.store_id,
    }


async def _query_status(p: Platform, m: Merchant, q: dict[str, str], sign_type: str) -> dict[str, str]:
    _check_timestamp(p, q["timestamp"])
    status = await secmerchants.query_status(p, m.id, q["secondary_merchant_id"], q["store_id"])
    fields = {
        "result_code": "SUCCESS",
        "secondary_merchant_id": status.secondary_merchant_id,
        "store_id": status.store_id,
        "payment_method": INSTORE_PAYMENT,
        "status": APPROVED if status.active else FAILED,
    }
    if not status.active:
        fields["reject_reason"] = status.reject_reason or "disabled by the acquirer's operator"
    return fields


HANDLERS: dict[str, Callable[[Platform, Merchant, dict[str, str], str], Awaitable[dict[str, str]]]] = {
    MAINTAIN: _maintain,
    QUERY_STATUS: _query_status,
}
