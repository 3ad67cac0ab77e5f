"""Drives alipay-sdk-python (the official Open Platform SDK), unchanged, against Tillpay."""

from __future__ import annotations

import json
from typing import Any

import rsa
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayTradeCancelModel import AlipayTradeCancelModel
from alipay.aop.api.domain.AlipayTradeCloseModel import AlipayTradeCloseModel
from alipay.aop.api.domain.AlipayTradeFastpayRefundQueryModel import AlipayTradeFastpayRefundQueryModel
from alipay.aop.api.domain.AlipayTradePayModel import AlipayTradePayModel
from alipay.aop.api.domain.AlipayTradePrecreateModel import AlipayTradePrecreateModel
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
from alipay.aop.api.request.AlipayTradeCancelRequest import AlipayTradeCancelRequest
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
from alipay.aop.api.request.AlipayTradePayRequest import AlipayTradePayRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.util.SignatureUtils import get_sign_content, verify_with_rsa
from rpc import serve

client: Any = None
public_key = ""


def init(
    url: str, app_id: str, private_key: str, public_key_pem: str, sign_type: str = "RSA2", timeout: int = 15
) -> str:
    global client, public_key
    config = AlipayClientConfig()
    config.server_url = url + "/gateway.do"
    config.app_id = app_id
    config.app_private_key = private_key
    config.alipay_public_key = public_key_pem
    config.sign_type = sign_type
    config.timeout = timeout  # seconds (http.client's socket timeout); the SDK's default is 15
    client = DefaultAlipayClient(config)
    public_key = public_key_pem
    return "ready"


def _call(request: Any, model: Any, **fields: Any) -> Any:
    for k, v in fields.items():
        if v is not None:
            setattr(model, k, v)
    request.biz_model = model
    return json.loads(client.execute(request))


def pay(
    out_trade_no: str, auth_code: str, subject: str, total_amount: str, notify_url: str | None = None
) -> Any:
    request = AlipayTradePayRequest()
    if notify_url:
        request.notify_url = notify_url
    return _call(
        request,
        AlipayTradePayModel(),
        out_trade_no=out_trade_no,
        scene="bar_code",
        auth_code=auth_code,
        subject=subject,
        total_amount=total_amount,
    )


def query(out_trade_no: str) -> Any:
    return _call(AlipayTradeQueryRequest(), AlipayTradeQueryModel(), out_trade_no=out_trade_no)


def cancel(out_trade_no: str) -> Any:
    return _call(AlipayTradeCancelRequest(), AlipayTradeCancelModel(), out_trade_no=out_trade_no)


def close(out_trade_no: str) -> Any:
    return _call(AlipayTradeCloseRequest(), AlipayTradeCloseModel(), out_trade_no=out_trade_no)


def refund(out_trade_no: str, refund_amount: str, out_request_no: str) -> Any:
    return _call(
        AlipayTradeRefundRequest(),
        AlipayTradeRefundModel(),
        out_trade_no=out_trade_no,
        refund_amount=refund_amount,
        out_request_no=out_request_no,
    )


def refund_query(out_trade_no: str, out_request_no: str) -> Any:
    return _call(
        AlipayTradeFastpayRefundQueryRequest(),
        AlipayTradeFastpayRefundQueryModel(),
        out_trade_no=out_trade_no,
        out_request_no=out_request_no,
    )


def precreate(out_trade_no: str, total_amount: str, subject: str) -> Any:
    return _call(
        AlipayTradePrecreateRequest(),
        AlipayTradePrecreateModel(),
        out_trade_no=out_trade_no,
        total_amount=total_amount,
        subject=subject,
    )


def verify(data: dict[str, str]) -> bool:
    # This SDK has no notification helper; its own signing utilities apply Alipay's documented rule
    # (drop sign and sign_type, sort, k=v&...).
    data = dict(data)
    signature = data.pop("sign")
    data.pop("sign_type", None)
    try:
        return bool(verify_with_rsa(public_key, get_sign_content(data).encode("utf-8"), signature))
    except rsa.VerificationError:  # how this SDK's verify_with_rsa says "does not verify"
        return False


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
