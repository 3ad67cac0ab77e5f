"""``POST /bench/noop``: the pay path on the same server stack without the payment core.

It decodes the same signed MAPI pay request, finds the merchant (cached, as a pay does), verifies the
RSA2 signature, checks the parameters, and answers a signed envelope of the same shape as a successful
pay's, but touches no database. Its rate is the ceiling for a pay on this stack. Served only when
``TILLPAY_BENCH_ROUTES`` is true (``tillpay bench`` sets it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tillpay.domain.errors import TillpayError
from tillpay.protocols.mapi import gateway, signing
from tillpay.protocols.mapi.codes import mapi_error
from tillpay.protocols.mapi.wire import Envelope, charset_label, decode_params
from tillpay.services.platform import Platform


async def noop(request: Request) -> Response:
    """Answer a MAPI pay request as if it succeeded, without the database."""
    p: Platform = request.app.state.platform
    body = await request.body()
    try:
        params, codec = decode_params(b"", body)
        merchant = await p.merchant_by_partner(params.get("partner", ""))
        signing.verify_request(
            params, md5_key=merchant.md5_key, public_key_pem=merchant.public_key, charset=codec
        )
        gateway._validate(params["service"], params)
    except (TillpayError, KeyError) as e:
        code = e.code if isinstance(e, TillpayError) else None
        env = Envelope(False, error=mapi_error(code)[0] if code else "ILLEGAL_ARGUMENT")
        return Response(env.to_xml("utf-8"), media_type="text/xml; charset=UTF-8")
    currency = params["currency"]
    fields = {
        "result_code": "SUCCESS",
        "alipay_trans_id": "2026112622" + "0" * 18,
        "partner_trans_id": params["partner_trans_id"],
        "out_trade_no": params["partner_trans_id"],
        "alipay_trans_status": "TRADE_SUCCESS",
        "currency": currency,
        "trans_currency": params.get("trans_currency", currency),
        "trans_amount": params["trans_amount"],
        "trans_amount_cny": params["trans_amount"],
        "exchange_rate": "1",
        "buyer_currency": "CNY",
        "alipay_buyer_user_id": "2088000000000001",
        "alipay_buyer_login_id": "ben***@bench.test",
        "alipay_pay_time": "20261126100000",
        "payment_inst": "TILLPAY",
    }
    env = Envelope(True, list(params.items()), fields)
    env.sign = signing.sign(
        env.signed_fields(),
        sign_type=params["sign_type"],
        md5_key=merchant.md5_key,
        private_key_pem=merchant.gateway_private_key,
        charset=codec,
    )
    env.sign_type = params["sign_type"]
    return Response(env.to_xml(codec), media_type=f"text/xml; charset={charset_label(codec)}")
