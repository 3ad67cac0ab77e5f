"""Client library for the MAPI dialect: signs, sends, verifies, parses into typed results.

from tillpay.client import MapiClient
client = MapiClient("http://127.0.0.1:8000", partner="2088...", md5_key="...", sign_type="MD5")
result = client.checkout("ORDER-1", code="28...", amount="12.50", currency="USD", subject="Coffee")
print(result.outcome, result.payment.trans_amount_cny)
"""

from tillpay.client._client import (
    CancelResult,
    CheckoutResult,
    MapiClient,
    PaymentResult,
    PrecreateResult,
    RefundResult,
    Result,
)
from tillpay.client._errors import (
    GatewayRejected,
    ResponseError,
    SignatureError,
    TillpayClientError,
    TransportError,
)

__all__ = [
    "CancelResult",
    "CheckoutResult",
    "GatewayRejected",
    "MapiClient",
    "PaymentResult",
    "PrecreateResult",
    "RefundResult",
    "ResponseError",
    "Result",
    "SignatureError",
    "TillpayClientError",
    "TransportError",
]
