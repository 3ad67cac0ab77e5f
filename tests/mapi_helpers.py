"""Helpers for tests that drive the MAPI dialect of a live server: a merchant with a customer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

import factories as f
from conftest import LiveServer
from mapi_reference import CheckedTransport, ReferenceClient, Style
from tillpay.client import MapiClient
from tillpay.services import wallets
from tillpay.services.merchants import NewMerchant
from tillpay.store import tables as t


@dataclass
class Shop:
    new: NewMerchant
    customer: f.Customer

    @property
    def partner(self) -> str:
        return self.new.merchant.partner_id

    def client(self, live: LiveServer, sign_type: str = "RSA2", **kw: Any) -> MapiClient:
        """Tillpay's own client; every answer it gets is also checked by the public clients' rule."""
        m = self.new.merchant
        kw.setdefault("transport", CheckedTransport(md5_key=m.md5_key, public_key_pem=m.gateway_public_key))
        return MapiClient(
            live.url,
            m.partner_id,
            sign_type=sign_type,
            md5_key=m.md5_key,
            private_key=self.new.merchant_private_key or "",
            gateway_public_key=m.gateway_public_key,
            **kw,
        )

    def reference(
        self, live: LiveServer, sign_type: str = "MD5", style: Style = "classic", charset: str = "UTF-8"
    ) -> ReferenceClient:
        """A client written from the public MAPI clients' rules (tests/mapi_reference.py)."""
        m = self.new.merchant
        return ReferenceClient(
            live.url,
            m.partner_id,
            sign_type=sign_type,
            md5_key=m.md5_key,
            private_key_pem=self.new.merchant_private_key or "",
            gateway_public_key_pem=m.gateway_public_key,
            charset=charset,
            style=style,
        )

    def code(self, live: LiveServer) -> str:
        return str(live.run(lambda p: wallets.current_code(p, self.customer.device)))

    def balance(self, live: LiveServer) -> int:
        async def go(p: Any) -> int:
            return (await wallets.user_by_login(p, self.customer.user.login_id)).balance

        return int(live.run(go))


def make_shop(live: LiveServer, currency: str = "USD", wallet: str = "CNY", balance: int = 1_000_000) -> Shop:
    async def go(p: Any) -> Shop:
        await f.rates(p)
        return Shop(await f.merchant(p, currency), await f.customer(p, wallet, balance))

    return live.run(go)  # type: ignore[no-any-return]


def counts(live: LiveServer) -> dict[str, int]:
    async def go(p: Any) -> dict[str, int]:
        out = {}
        async with p.engine.connect() as conn:
            for table in (t.payments, t.refunds, t.code_uses, t.postings, t.outbox):
                out[table.name] = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        return out

    return live.run(go)  # type: ignore[no-any-return]
