"""Drives python-alipay-sdk (fzlee/alipay), unchanged, against Tillpay's Open Platform dialect."""

from __future__ import annotations

from typing import Any

from alipay import AliPay
from alipay.utils import AliPayConfig
from rpc import serve

client: Any = None


def init(
    url: str, app_id: str, private_key: str, public_key: str, sign_type: str = "RSA2", timeout: float = 15
) -> str:
    global client
    client = AliPay(
        appid=app_id,
        app_notify_url=None,
        app_private_key_string=private_key,
        alipay_public_key_string=public_key,
        sign_type=sign_type,
        config=AliPayConfig(timeout=timeout),  # seconds; the SDK's default is 15
    )
    # The SDK has no constructor argument for the gateway: its documented way is this attribute.
    client._gateway = url + "/gateway.do"
    return "ready"


def pay(
    out_trade_no: str, auth_code: str, subject: str, total_amount: str, notify_url: str | None = None
) -> Any:
    return client.api_alipay_trade_pay(
        out_trade_no, "bar_code", auth_code, subject, notify_url=notify_url, total_amount=total_amount
    )


def query(out_trade_no: str) -> Any:
    return client.api_alipay_trade_query(out_trade_no=out_trade_no)


def cancel(out_trade_no: str) -> Any:
    return client.api_alipay_trade_cancel(out_trade_no=out_trade_no)


def close(out_trade_no: str) -> Any:
    return client.api_alipay_trade_close(out_trade_no=out_trade_no)


def refund(out_trade_no: str, refund_amount: str, out_request_no: str) -> Any:
    return client.api_alipay_trade_refund(
        refund_amount, out_trade_no=out_trade_no, out_request_no=out_request_no
    )


def refund_query(out_trade_no: str, out_request_no: str) -> Any:
    return client.api_alipay_trade_fastpay_refund_query(out_request_no, out_trade_no=out_trade_no)


def precreate(out_trade_no: str, total_amount: str, subject: str) -> Any:
    return client.api_alipay_trade_precreate(subject, out_trade_no, total_amount)


def verify(data: dict[str, str]) -> bool:
    # As the SDK's README says: pop sign, pass the rest (verify drops sign_type itself).
    data = dict(data)
    signature = data.pop("sign")
    return bool(client.verify(data, signature))


serve(
    {
        "init": init,
        "pay": pay,
        "query": query,
        "cancel": cancel,
        "close": close,
        "refund": refund,
        "refund_query": refund_query,
        "precreate": precreate,
        "verify": verify,
    }
)
