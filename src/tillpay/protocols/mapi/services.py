"""The MAPI service names (the ``service`` parameter of ``/gateway.do``), shared by the gateway and the
client library so both always agree."""

from __future__ import annotations

PAY = "alipay.acquire.overseas.spot.pay"
QUERY = "alipay.acquire.overseas.query"
CANCEL = "alipay.acquire.cancel"
REFUND = "alipay.acquire.overseas.spot.refund"
REFUND_QUERY = "alipay.acquire.refund.query"
PRECREATE = "alipay.acquire.precreate"
MAINTAIN = "alipay.overseas.secmerchant.offline.maintain"
QUERY_STATUS = "alipay.overseas.secmerchant.maintain.queryStatus"
