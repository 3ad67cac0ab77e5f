"""The MAPI client and the recommended ECR flow (pay; poll; cancel until it answers)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from tillpay.client._errors import GatewayRejected, ResponseError, SignatureError, TransportError
from tillpay.protocols.mapi import signing as mapi_signing
from tillpay.protocols.mapi.codes import FAILED, UNKNOWN_RESULT
from tillpay.protocols.mapi.services import CANCEL, PAY, PRECREATE, QUERY, REFUND, REFUND_QUERY
from tillpay.protocols.mapi.wire import Envelope, charset_of, form_body


@dataclass(frozen=True)
class Result:
    """Any MAPI answer: ``result_code``, ``error`` and every field as text.

    ``result_code`` is spelled as the service's model spells it (SUCCESS; FAIL or FAILED; UNKNOW or
    UNKNOWN): use :attr:`ok`, :attr:`failed` and :attr:`unknown` rather than comparing text.
    """

    result_code: str
    error: str | None
    detail: str | None
    fields: Mapping[str, str]

    @property
    def ok(self) -> bool:
        """Whether ``result_code`` is SUCCESS."""
        return self.result_code == "SUCCESS"

    @property
    def failed(self) -> bool:
        """Whether the operation definitely failed (``FAIL`` or ``FAILED``)."""
        return self.result_code in FAILED

    @property
    def unknown(self) -> bool:
        """Whether the outcome is not known yet (``UNKNOW`` or ``UNKNOWN``): query again."""
        return self.result_code in UNKNOWN_RESULT

    def get(self, name: str, default: str | None = None) -> str | None:
        """One response field by its MAPI name."""
        return self.fields.get(name, default)


def _dec(v: str | None) -> Decimal | None:
    return Decimal(v) if v not in (None, "") else None


@dataclass(frozen=True)
class PaymentResult(Result):
    """A pay or query answer."""

    @property
    def trade_no(self) -> str | None:
        """The gateway's transaction id (``alipay_trans_id``)."""
        return self.fields.get("alipay_trans_id")

    @property
    def status(self) -> str | None:
        """``WAIT_BUYER_PAY``, ``TRADE_SUCCESS`` or ``TRADE_CLOSED`` (None if the order does not exist)."""
        return self.fields.get("alipay_trans_status")

    @property
    def trans_amount(self) -> Decimal | None:
        """The price, in ``trans_currency``."""
        return _dec(self.fields.get("trans_amount"))

    @property
    def trans_amount_cny(self) -> Decimal | None:
        """What the customer paid, in the wallet's currency (``buyer_currency``)."""
        return _dec(self.fields.get("trans_amount_cny"))

    @property
    def exchange_rate(self) -> Decimal | None:
        """Wallet-currency units per price-currency unit, locked when the payment was created."""
        return _dec(self.fields.get("exchange_rate"))


@dataclass(frozen=True)
class CancelResult(Result):
    """A cancel answer; ``action`` is ``close`` (was unpaid), ``refund`` (was paid) or ``none``."""

    @property
    def action(self) -> str | None:
        """What the cancel did (Tillpay's addition to Alipay's cancel answer)."""
        return self.fields.get("action")

    @property
    def retry_flag(self) -> str | None:
        """``Y`` when another cancel may still succeed, ``N`` when it cannot."""
        return self.fields.get("retry_flag")

    @property
    def trade_no(self) -> str | None:
        """The gateway's transaction id."""
        return self.fields.get("trade_no")


@dataclass(frozen=True)
class RefundResult(Result):
    """A refund or refund-query answer."""

    @property
    def refund_amount(self) -> Decimal | None:
        """The refunded amount in the order's price currency."""
        return _dec(self.fields.get("refund_amount"))


@dataclass(frozen=True)
class PrecreateResult(Result):
    """A precreate answer; show ``qr_code`` to the customer."""

    @property
    def qr_code(self) -> str | None:
        """The URL to show as a QR code."""
        return self.fields.get("qr_code")

    @property
    def pic_url(self) -> str | None:
        """A PNG picture of the QR code, served by the gateway."""
        return self.fields.get("pic_url")

    @property
    def trade_no(self) -> str | None:
        """The gateway's transaction id."""
        return self.fields.get("trade_no")


@dataclass(frozen=True)
class CheckoutResult:
    """How a checkout ended: PAID, FAILED (declined; nothing charged) or CANCELLED (nothing charged)."""

    outcome: str
    payment: PaymentResult | None
    cancel: CancelResult | None = None
    history: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """Why it did not end PAID (a MAPI error value), if known."""
        if self.payment is None:
            return None
        return self.payment.error or self.payment.get("close_reason")


class MapiClient:
    """A merchant's connection to a Tillpay (or any MAPI) gateway.

    ``sign_type`` MD5 needs ``md5_key``; RSA and RSA2 need the merchant's ``private_key`` (PEM or a bare
    Base64 body) and ``gateway_public_key`` to verify responses. Every response signature is verified;
    a response that does not verify raises :class:`SignatureError`.
    """

    def __init__(
        self,
        base_url: str,
        partner: str,
        *,
        sign_type: str = "RSA2",
        md5_key: str = "",
        private_key: str = "",
        gateway_public_key: str = "",
        charset: str = "UTF-8",
        timeout: float = 15.0,  # float-ok: seconds
        method: str = "POST",
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,  # float-ok: unix time for the timestamp parameter
    ) -> None:
        if sign_type not in mapi_signing.SIGN_TYPES:
            raise ValueError("sign_type must be MD5, RSA or RSA2")
        if sign_type == "MD5" and not md5_key:
            raise ValueError("MD5 signing needs md5_key")
        if sign_type != "MD5" and not (private_key and gateway_public_key):
            raise ValueError("RSA signing needs private_key and gateway_public_key")
        self.url = base_url.rstrip("/") + "/gateway.do"
        self.partner = partner
        self.sign_type = sign_type
        self.md5_key = md5_key
        self.private_key = private_key
        self.gateway_public_key = gateway_public_key
        self.charset = charset.upper()
        self.codec = charset_of(self.charset)
        self.method = method.upper()
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> MapiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ plumbing

    def signed_params(self, service: str, params: Mapping[str, str | None]) -> dict[str, str]:
        """The full, signed parameter set for one call (exposed for debugging and tests)."""
        out = {k: v for k, v in params.items() if v is not None and v != ""}
        out.update(service=service, partner=self.partner, _input_charset=self.charset)
        out["sign"] = mapi_signing.sign_request(
            out,
            sign_type=self.sign_type,
            md5_key=self.md5_key,
            private_key_pem=self.private_key,
            charset=self.codec,
        )
        out["sign_type"] = self.sign_type
        return out

    def call(self, service: str, params: Mapping[str, str | None]) -> Result:
        """Send one signed request and return the verified business fields."""
        signed = self.signed_params(service, params)
        try:
            if self.method == "GET":
                resp = self._http.get(self.url + "?" + form_body(signed, self.codec).decode("ascii"))
            else:
                resp = self._http.post(
                    self.url + f"?_input_charset={self.charset}",
                    content=form_body({k: v for k, v in signed.items() if k != "_input_charset"}, self.codec),
                    headers={"Content-Type": f"application/x-www-form-urlencoded; charset={self.charset}"},
                )
        except httpx.HTTPError as e:
            raise TransportError(f"{type(e).__name__}: {e}") from e
        if resp.status_code != 200:
            raise ResponseError(f"HTTP {resp.status_code} from the gateway")
        try:
            env = Envelope.from_xml(resp.content)
        except Exception as e:
            raise ResponseError(f"not a MAPI response: {e}") from e
        self._verify(env)
        if not env.is_success:
            raise GatewayRejected(env.error or "UNKNOWN", env.detail)
        fields = dict(env.fields)
        # cancel and precreate name the failure in detail_error_code; the other services in error.
        return Result(
            fields.get("result_code", ""),
            fields.get("error") or fields.get("detail_error_code"),
            fields.get("detail_error_des"),
            fields,
        )

    def _verify(self, env: Envelope) -> None:
        if not env.sign:
            if not env.is_success and env.error in (
                "ILLEGAL_PARTNER",
                "ILLEGAL_SIGN_TYPE",
                "ILLEGAL_CHARSET",
                "SYSTEM_ERROR",  # the gateway could not read the merchant's key (its database is down)
            ):
                return  # the gateway had nothing to sign with; the rejection itself is still reported
            raise SignatureError("the response is not signed")
        ok = mapi_signing.verify_response(
            env.signed_fields(),
            env.sign,
            sign_type=env.sign_type or "",
            md5_key=self.md5_key,
            public_key_pem=self.gateway_public_key,
            charset=self.codec,
        )
        if not ok:
            raise SignatureError("the response signature does not verify")

    def verify_notification(self, form: Mapping[str, str]) -> bool:
        """Whether a notification POSTed to your ``notify_url`` is the gateway's, unchanged.

        Alipay's classic rule: every posted parameter except ``sign`` and ``sign_type``, sorted; check
        ``sign`` with the MD5 key or the gateway's public key. Answer ``success`` only when this is True.
        """
        sign, sign_type = form.get("sign", ""), form.get("sign_type", "")
        if not sign or sign_type not in mapi_signing.SIGN_TYPES:
            return False
        fields = {k: v for k, v in form.items() if k not in ("sign", "sign_type")}
        return mapi_signing.verify_response(
            fields,
            sign,
            sign_type=sign_type,
            md5_key=self.md5_key,
            public_key_pem=self.gateway_public_key,
            charset="utf-8",
        )

    def _timestamp(self) -> str:
        return str(int(self._clock() * 1000))

    # ------------------------------------------------------------------------------------- services

    def pay(
        self,
        partner_trans_id: str,
        code: str,
        amount: str | Decimal,
        currency: str,
        subject: str,
        *,
        trans_currency: str | None = None,
        notify_url: str | None = None,
        memo: str | None = None,
        store_id: str | None = None,
        terminal_id: str | None = None,
    ) -> PaymentResult:
        """``alipay.acquire.overseas.spot.pay``: charge a customer's payment code.

        ``amount`` is in ``trans_currency`` when given (the price currency), else in ``currency`` (the
        merchant's settlement currency).
        """
        extend = None
        if store_id or terminal_id:
            import json

            extend = json.dumps(
                {k: v for k, v in (("store_id", store_id), ("terminal_id", terminal_id)) if v}
            )
        r = self.call(
            PAY,
            {
                "alipay_seller_id": self.partner,
                "partner_trans_id": partner_trans_id,
                "buyer_identity_code": code,
                "trans_amount": str(amount),
                "currency": currency,
                "trans_currency": trans_currency,
                "trans_name": subject,
                "notify_url": notify_url,
                "memo": memo,
                "extend_info": extend,
                "identity_code_type": "barcode",
                "biz_product": "OVERSEAS_MBARCODE_PAY",
            },
        )
        return PaymentResult(r.result_code, r.error, r.detail, r.fields)

    def query(self, partner_trans_id: str | None = None, trade_no: str | None = None) -> PaymentResult:
        """``alipay.acquire.overseas.query``: the order's current state."""
        r = self.call(QUERY, {"partner_trans_id": partner_trans_id, "alipay_trans_id": trade_no})
        return PaymentResult(r.result_code, r.error, r.detail, r.fields)

    def cancel(self, partner_trans_id: str) -> CancelResult:
        """``alipay.acquire.cancel``: close an unpaid order, or refund a paid one in full."""
        r = self.call(CANCEL, {"out_trade_no": partner_trans_id, "timestamp": self._timestamp()})
        return CancelResult(r.result_code, r.error, r.detail, r.fields)

    def refund(
        self,
        partner_trans_id: str,
        partner_refund_id: str,
        amount: str | Decimal,
        currency: str,
        *,
        reason: str | None = None,
        notify_url: str | None = None,
        is_sync: bool = False,
    ) -> RefundResult:
        """``alipay.acquire.overseas.spot.refund``: refund part or all; the same refund id refunds once."""
        r = self.call(
            REFUND,
            {
                "partner_trans_id": partner_trans_id,
                "partner_refund_id": partner_refund_id,
                "refund_amount": str(amount),
                "currency": currency,
                "refund_reason": reason,
                "notify_url": notify_url,
                "is_sync": "Y" if is_sync else None,
            },
        )
        return RefundResult(r.result_code, r.error, r.detail, r.fields)

    def refund_query(self, partner_trans_id: str, partner_refund_id: str) -> RefundResult:
        """``alipay.acquire.refund.query``: one refund's state.

        Its answer carries ``response_code`` (SUCCESS, NOT_FOUND, TRADE_NOT_EXIST, ...) instead of
        ``result_code``; the result is ``ok`` when the refund was found and succeeded, and otherwise
        failed with ``error`` set to the ``response_code`` (or to ``refund_result_code``).
        """
        r = self.call(REFUND_QUERY, {"out_trade_no": partner_trans_id, "out_return_no": partner_refund_id})
        response_code = r.fields.get("response_code", "")
        refund_code = r.fields.get("refund_result_code", "")
        if response_code == "SUCCESS" and refund_code == "SUCCESS":
            return RefundResult("SUCCESS", None, None, r.fields)
        if response_code == "SUCCESS" and refund_code == "PROCESSING":
            return RefundResult("UNKNOW", "PROCESSING", r.detail, r.fields)
        error = refund_code if response_code == "SUCCESS" else response_code
        return RefundResult("FAIL", error or "UNKNOWN", r.detail, r.fields)

    def precreate(
        self,
        partner_trans_id: str,
        amount: str | Decimal,
        currency: str,
        subject: str,
        *,
        trans_currency: str | None = None,
        notify_url: str | None = None,
    ) -> PrecreateResult:
        """``alipay.acquire.precreate``: an order the customer pays by scanning ``qr_code``."""
        r = self.call(
            PRECREATE,
            {
                "out_trade_no": partner_trans_id,
                "total_fee": str(amount),
                "currency": currency,
                "trans_currency": trans_currency,
                "subject": subject,
                "notify_url": notify_url,
                "timestamp": self._timestamp(),
            },
        )
        return PrecreateResult(r.result_code, r.error, r.detail, r.fields)

    # --------------------------------------------------------------------------- the recommended flow

    def checkout(
        self,
        partner_trans_id: str,
        code: str,
        amount: str | Decimal,
        currency: str,
        subject: str,
        *,
        trans_currency: str | None = None,
        notify_url: str | None = None,
        store_id: str | None = None,
        terminal_id: str | None = None,
        poll_interval: float = 3.0,  # float-ok: seconds
        merchant_timeout: float = 60.0,  # float-ok: seconds
        cancel_retry_interval: float = 5.0,  # float-ok: seconds
        cancel_max_attempts: int = 20,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        on_state: Callable[[str, PaymentResult | None], None] | None = None,
        abort: Callable[[], bool] | None = None,
    ) -> CheckoutResult:
        """Pay, then resolve every uncertainty the way Alipay recommends for a till.

        Pay; on SUCCESS or a final FAIL, done. On UNKNOW, WAIT_BUYER_PAY or a network error, query every
        ``poll_interval`` seconds until ``merchant_timeout``; still unresolved then, cancel, retrying every
        ``cancel_retry_interval`` until the gateway answers. A payment that succeeded after the cashier
        gave up is refunded by that cancel, so the order ends in one final state on both sides.
        ``on_state`` hears each step: ``sending``, ``unknown`` (pay got no answer; querying),
        ``waiting``, ``paid``, ``failed``, ``cancelling``, ``cancelled``. ``abort`` is asked while waiting: once it answers True (the cashier gave up), the
        flow stops polling and cancels at once; pass a ``sleep`` that wakes early to make that prompt.
        """
        history: list[str] = []

        def tell(state: str, r: PaymentResult | None) -> None:
            history.append(state)
            if on_state:
                on_state(state, r)

        deadline = monotonic() + merchant_timeout
        last: PaymentResult | None = None
        tell("sending", None)
        try:
            last = self.pay(
                partner_trans_id,
                code,
                amount,
                currency,
                subject,
                trans_currency=trans_currency,
                notify_url=notify_url,
                store_id=store_id,
                terminal_id=terminal_id,
            )
        except TransportError:
            last = None  # unknown: fall through to polling
            tell("unknown", None)
        aborted = abort or (lambda: False)
        while True:
            if last is not None:
                if last.ok and last.status == "TRADE_SUCCESS":
                    tell("paid", last)
                    return CheckoutResult("PAID", last, history=history)
                if last.ok and last.status == "TRADE_CLOSED":
                    tell("failed", last)
                    return CheckoutResult("FAILED", last, history=history)
                if last.failed and last.error != "TRADE_NOT_EXIST":
                    # A definite business failure of pay (declined, no balance, bad code): nothing charged.
                    tell("failed", last)
                    return CheckoutResult("FAILED", last, history=history)
                tell("waiting", last)
            if aborted() or monotonic() + poll_interval > deadline:
                break
            sleep(poll_interval)
            if aborted():
                break
            try:
                last = self.query(partner_trans_id)
            except TransportError:
                continue
        tell("cancelling", last)
        for attempt in range(cancel_max_attempts):
            try:
                c = self.cancel(partner_trans_id)
            except TransportError:
                c = None
            if c is not None and c.ok:
                tell("cancelled", last)
                return CheckoutResult("CANCELLED", last, c, history)
            if attempt + 1 < cancel_max_attempts:
                sleep(cancel_retry_interval)
        raise TransportError(
            f"cancel of {partner_trans_id} did not succeed after {cancel_max_attempts} attempts; retry it"
        )
