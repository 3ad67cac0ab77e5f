"""``result_code`` as each MAPI service's own response model spells it (reference §7): ``UNKNOW`` in the
spot.pay and spot.refund models, ``UNKNOWN`` in the cancel and precreate models (alipay-sdk-java-all
``AlipayAcquireCancelResponse``, ``AlipayAcquirePrecreateResponse``), ``FAIL`` on the query page and
``FAILED`` in the pay model."""

from __future__ import annotations

import pytest

from tillpay.domain.errors import Code
from tillpay.protocols.mapi.codes import result_code

SPELLINGS = [
    ("alipay.acquire.overseas.spot.pay", "FAILED", "UNKNOW"),
    ("alipay.acquire.overseas.spot.refund", "FAILED", "UNKNOW"),
    ("alipay.acquire.overseas.query", "FAIL", "UNKNOW"),
    ("alipay.acquire.cancel", "FAIL", "UNKNOWN"),
    ("alipay.acquire.precreate", "FAIL", "UNKNOWN"),
    ("alipay.overseas.secmerchant.offline.maintain", "FAIL", "UNKNOW"),
    ("alipay.overseas.secmerchant.maintain.queryStatus", "FAIL", "UNKNOW"),
]


@pytest.mark.parametrize(("service", "failed", "unknown"), SPELLINGS)
def test_each_service_spells_failed_and_unknown_as_its_model(service: str, failed: str, unknown: str) -> None:
    assert result_code(None, service) == "SUCCESS"
    assert result_code(Code.TRADE_NOT_EXIST, service) == failed
    assert result_code(Code.BUYER_BALANCE_NOT_ENOUGH, service) == failed
    assert result_code(Code.SYSTEM_ERROR, service) == unknown
    assert result_code(Code.WAIT_BUYER_CONFIRM, service) == unknown
