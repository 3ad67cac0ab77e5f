"""Merchant-side clients for the Open Platform and Antom dialects, signing as the real SDKs do (tests only)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tillpay import signing
from tillpay.protocols.antom import signing as antom_signing
from tillpay.protocols.openapi.wire import sign_content, signed_node


@dataclass
class OpenReply:
    """An Open Platform answer: the node, whether its signature verified, the raw body."""

    node: dict[str, Any]
    signed: bool
    raw: bytes

    @property
    def code(self) -> str:
        return str(self.node.get("code"))

    @property
    def sub_code(self) -> str | None:
        return self.node.get("sub_code")

    def __getitem__(self, key: str) -> Any:
        return self.node[key]


@dataclass
class OpenClient:
    """Signs like python-alipay-sdk / alipay-sdk-python and checks the answer's signature."""

    url: str
    app_id: str
    private_key: str
    gateway_public_key: str
    sign_type: str = "RSA2"
    style: str = "post"  # post: common params in the query, biz_content in the body; get: all in the query

    def params(self, method: str, biz: dict[str, Any] | None, **extra: str) -> dict[str, str]:
        p = {
            "app_id": self.app_id,
            "method": method,
            "charset": "utf-8",
            "format": "JSON",
            "sign_type": self.sign_type,
            # GMT+8, as Alipay reads it (the SDKs send the local time of a till in China).
            "timestamp": (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            **extra,
        }
        if biz is not None:
            p["biz_content"] = json.dumps(biz, ensure_ascii=False, separators=(",", ":"))
        p["sign"] = signing.rsa_sign(
            sign_content(p).encode(),
            signing.load_private_key(self.private_key),
            self.sign_type,  # type: ignore[arg-type]
        )
        return p

    def send(self, method: str, params: dict[str, str]) -> OpenReply:
        if self.style == "get":
            r = httpx.get(self.url + "/gateway.do", params=params)
        else:
            biz = {"biz_content": params.pop("biz_content")} if "biz_content" in params else {}
            r = httpx.post(self.url + "/gateway.do", params=params, data=biz)
        assert r.status_code == 200, r.text
        text, sign = signed_node(r.content, method)
        signed = sign is not None and signing.rsa_verify(
            text.encode(),
            sign,
            signing.load_public_key(self.gateway_public_key),
            self.sign_type,  # type: ignore[arg-type]
        )
        return OpenReply(json.loads(text), signed, r.content)

    def call(self, method: str, biz: dict[str, Any] | None = None, **extra: str) -> OpenReply:
        reply = self.send(method, self.params(method, biz, **extra))
        assert reply.signed, f"answer not signed by Tillpay: {reply.raw!r}"
        return reply


@dataclass
class AntomReply:
    """An Antom answer: body, headers, whether the signature verified."""

    body: dict[str, Any]
    headers: dict[str, str]
    signed: bool

    @property
    def result(self) -> tuple[str, str]:
        return self.body["result"]["resultStatus"], self.body["result"]["resultCode"]

    def __getitem__(self, key: str) -> Any:
        return self.body[key]


@dataclass
class AntomClient:
    """Signs like global-open-sdk-python and checks the answer's signature headers."""

    url: str
    client_id: str
    private_key: str
    gateway_public_key: str
    key_version: str = "1"
    extra_headers: dict[str, str] = field(default_factory=dict)
    #: ``/ams/sandbox/api/v1/payments/`` for Antom's sandbox path.
    prefix: str = "/ams/api/v1/payments/"

    def raw(self, op: str, text: str, headers: dict[str, str] | None = None) -> AntomReply:
        path = self.prefix + op
        when = datetime.now(UTC).replace(microsecond=0).isoformat()
        sig = antom_signing.sign(
            antom_signing.content("POST", path, self.client_id, when, text), self.private_key
        )
        h = {
            "content-type": "application/json; charset=UTF-8",
            "client-id": self.client_id,
            "request-time": when,
            "signature": f"algorithm=RSA256,keyVersion={self.key_version},signature={antom_signing.header(sig).split('signature=')[1]}",
            **self.extra_headers,
            **(headers or {}),
        }
        h = {k: v for k, v in h.items() if v is not None}
        r = httpx.post(self.url + path, content=text.encode(), headers=h)
        assert r.status_code == 200, r.text
        rh = dict(r.headers)
        signed = False
        if "signature" in rh:
            _, _, rsig = antom_signing.parse_header(rh["signature"])
            signed = antom_signing.verify(
                antom_signing.content("POST", path, rh["client-id"], rh["response-time"], r.text),
                rsig,
                self.gateway_public_key,
            )
        return AntomReply(r.json(), rh, signed)

    def call(self, op: str, body: dict[str, Any]) -> AntomReply:
        reply = self.raw(op, json.dumps(body))
        assert reply.signed, f"answer not signed by Tillpay: {reply.body}"
        return reply

    def pay(
        self, request_id: str, code: str, value: int, currency: str, subject: str = "Item", **extra: Any
    ) -> AntomReply:
        body = {
            "productCode": "IN_STORE_PAYMENT",
            "paymentRequestId": request_id,
            "paymentAmount": {"currency": currency, "value": str(value)},
            "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": code},
            "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
            "order": {
                "orderDescription": subject,
                "orderAmount": {"currency": currency, "value": str(value)},
                "merchant": {"referenceMerchantId": "M1", "store": {"referenceStoreId": "S-01"}},
                "env": {"storeTerminalId": "T-07"},
            },
            **extra,
        }
        return self.call("pay", body)


# ------------------------------------------------------------------------------------------ shops


@dataclass
class Shop:
    """A merchant (with its generated private key) and a funded customer, on a live server."""

    live: Any
    new: Any
    customer: Any

    @property
    def merchant(self) -> Any:
        return self.new.merchant

    def open(self, sign_type: str = "RSA2", style: str = "post") -> OpenClient:
        m = self.merchant
        return OpenClient(
            self.live.url, m.app_id, self.new.merchant_private_key, m.gateway_public_key, sign_type, style
        )

    def antom(self) -> AntomClient:
        m = self.merchant
        return AntomClient(self.live.url, m.client_id, self.new.merchant_private_key, m.gateway_public_key)

    def mapi(self, sign_type: str = "RSA2") -> Any:
        from tillpay.client import MapiClient

        m = self.merchant
        return MapiClient(
            self.live.url,
            m.partner_id,
            sign_type=sign_type,
            md5_key=m.md5_key,
            private_key=self.new.merchant_private_key,
            gateway_public_key=m.gateway_public_key,
        )

    def code(self) -> str:
        from tillpay.services import wallets

        return str(self.live.run(lambda p: wallets.current_code(p, self.customer.device)))

    def balance(self) -> int:
        from tillpay.services import wallets

        async def go(p: Any) -> int:
            return (await wallets.user_by_login(p, self.customer.user.login_id)).balance

        return int(self.live.run(go))

    def confirm(self, trade_no: str | None = None) -> Any:
        from tillpay.services import payments

        return self.live.run(
            lambda p: payments.confirm(p, self.customer.user.id, self.customer.pin, trade_no)
        )

    def pay_qr(self, trade_no: str) -> Any:
        from tillpay.services import payments

        return self.live.run(
            lambda p: payments.confirm(p, self.customer.user.id, self.customer.pin, trade_no, precreated=True)
        )


def make_shop(live: Any, currency: str = "USD", wallet: str = "CNY", balance: int = 1_000_000) -> Shop:
    import factories as f

    async def go(p: Any) -> Shop:
        await f.rates(p)
        return Shop(live, await f.merchant(p, currency), await f.customer(p, wallet, balance))

    return live.run(go)  # type: ignore[no-any-return]


def counts(live: Any) -> dict[str, int]:
    """Rows per table that a request could change: nothing may change on refused input."""
    from sqlalchemy import func, select

    from tillpay.store import tables as t

    async def go(p: Any) -> dict[str, int]:
        out = {}
        async with p.engine.connect() as conn:
            for table in (t.payments, t.refunds, t.code_uses, t.postings, t.outbox, t.bad_codes):
                out[table.name] = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        return out

    return live.run(go)  # type: ignore[no-any-return]
