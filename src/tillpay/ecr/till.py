"""The till itself, without a screen: basket, checkout, recovery, refunds, reprints.

Everything here is synchronous (the client library is) and runs in a worker thread of the Textual app,
so the screen stays live while the gateway thinks. Every step is written to the journal before the
next one starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tillpay.client import (
    GatewayRejected,
    MapiClient,
    PaymentResult,
    TillpayClientError,
    TransportError,
)
from tillpay.domain.money import InvalidAmount, format_amount, parse_amount
from tillpay.ecr.catalog import Catalog, Item, Scan, ScanKind, classify
from tillpay.ecr.config import EcrConfig
from tillpay.ecr.heartbeat import HeartbeatSender
from tillpay.ecr.i18n import decline, t
from tillpay.ecr.journal import Journal, Line, Order, Refund
from tillpay.ecr.receipts import PrinterError, ReceiptPrinter, render_text

StateCallback = Callable[[str, Order], None]


class TillError(Exception):
    """Something the cashier must fix or know (shown on screen as it is)."""


class Blocked(TillError):
    """Unfinished orders must be resolved with the gateway before a new sale."""


def make_client(cfg: EcrConfig) -> MapiClient:
    """The MAPI client for this till's configuration."""
    return MapiClient(
        cfg.gateway_url,
        cfg.partner,
        sign_type=cfg.sign_type,
        md5_key=cfg.md5_key,
        private_key=cfg.merchant_private_key,
        gateway_public_key=cfg.gateway_public_key,
        timeout=cfg.http_timeout,
    )


@dataclass
class SaleOutcome:
    """How a checkout ended, with what to show and what was printed."""

    outcome: str  # PAID, FAILED, CANCELLED, UNRESOLVED
    order: Order
    message: str
    receipt: str | None = None
    print_error: str | None = None
    #: perf_counter when the receipt's last byte had been handed to the printer.
    printed_at: float | None = None


@dataclass
class RefundTarget:
    """A paid order found for a refund: what can still be refunded."""

    partner_trans_id: str
    trade_no: str | None
    currency: str
    total: int
    refunded: int
    items: list[Line]
    order: Order | None

    @property
    def left(self) -> int:
        """What can still be refunded, in minor units of ``currency``."""
        return self.total - self.refunded


@dataclass
class Basket:
    """The lines being sold; a scanned item already in the basket adds to its quantity."""

    lines: list[Line] = field(default_factory=list)

    def add(self, item: Item, qty: int = 1) -> int:
        """Add ``qty`` of ``item``; returns the line's index."""
        for i, line in enumerate(self.lines):
            if line.code == item.code:
                self.set_qty(i, line.qty + qty)
                return i
        self._check(qty)
        self.lines.append(Line(item.code, item.name, item.price, qty))
        return len(self.lines) - 1

    def set_qty(self, index: int, qty: int) -> None:
        """Change a line's quantity (0 removes it)."""
        if qty == 0:
            self.remove(index)
            return
        self._check(qty)
        line = self.lines[index]
        self.lines[index] = Line(line.code, line.name, line.price, qty)

    def remove(self, index: int) -> None:
        """Drop a line."""
        del self.lines[index]

    def clear(self) -> None:
        """Empty the basket."""
        self.lines.clear()

    @property
    def total(self) -> int:
        """The sum of the lines."""
        return sum(line.amount for line in self.lines)

    @staticmethod
    def _check(qty: int) -> None:
        if not 1 <= qty <= 999:
            raise TillError("quantity must be 1 to 999")


def _wait(event: threading.Event, seconds: float) -> None:  # float-ok: seconds
    event.wait(seconds)


def _dec_text(v: Decimal | None) -> str | None:
    return None if v is None else format(v, "f")


class Till:
    """One cashier's terminal: configuration, catalog, journal, gateway client and printer."""

    def __init__(
        self,
        cfg: EcrConfig,
        *,
        catalog: Catalog | None = None,
        journal: Journal | None = None,
        client: MapiClient | None = None,
        printer: ReceiptPrinter | None = None,
    ) -> None:
        self.cfg = cfg
        self.catalog = catalog or Catalog.load(cfg.path(cfg.catalog), cfg.currency)
        self.journal = journal or Journal(cfg.path(cfg.journal))
        self.client = client or make_client(cfg)
        self.printer = printer or ReceiptPrinter(cfg.printer, cfg.path)
        self.basket = Basket()
        self.language = cfg.language
        self._lock = threading.Lock()
        #: Started by the screen (``EcrApp.setup``), not here: reports and tests use a Till too.
        self.heartbeat = HeartbeatSender(cfg)

    def close(self) -> None:
        """Say SIGNOFF if heartbeats run; release the journal and the HTTP pool."""
        self.heartbeat.stop()
        self.client.close()
        self.journal.close()

    def money(self, minor: int, currency: str | None = None) -> str:
        """``12.50 USD``."""
        cur = currency or self.cfg.currency
        return f"{format_amount(minor, cur)} {cur}"

    def classify(self, text: str) -> Scan:
        """What a scan is."""
        return classify(text, self.catalog)

    def scan_item(self, scan: Scan) -> int:
        """Add a scanned item to the basket; returns its line."""
        assert scan.kind is ScanKind.ITEM and scan.item is not None
        return self.basket.add(scan.item, scan.quantity)

    # --------------------------------------------------------------------------------- checkout

    def checkout(
        self,
        code: str,
        *,
        on_state: StateCallback | None = None,
        abort: threading.Event | None = None,
    ) -> SaleOutcome:
        """Charge the basket to a customer's payment code with the recommended flow.

        The order is journaled before the pay request leaves. ``abort`` set while waiting makes the flow
        cancel at the gateway at once. Raises :class:`Blocked` if an earlier order is unresolved.
        """
        if not self.basket.lines:
            raise TillError(t(self.language, "basket_empty"))
        if self.journal.unfinished():
            raise Blocked("an earlier order is not resolved yet: resolve it first (F9)")
        abort = abort or threading.Event()
        cfg = self.cfg
        order = self.journal.new_order(cfg.terminal_id, list(self.basket.lines), cfg.currency, cfg.settlement)
        ptid = order.partner_trans_id
        if on_state:
            on_state("sending", order)

        def heard(state: str, r: PaymentResult | None) -> None:
            if state == "sending":
                return  # journaled above, before the request left
            current = self.journal.set_state(ptid, state, **self._payment_values(r))
            if on_state:
                on_state(state, current)

        subject = ", ".join(f"{line.qty}x {line.name}" for line in order.items)[:250]
        try:
            res = self.client.checkout(
                ptid,
                code,
                format_amount(order.total, order.currency),
                cfg.settlement,
                subject,
                trans_currency=cfg.currency if cfg.currency != cfg.settlement else None,
                store_id=cfg.store_id,
                terminal_id=cfg.terminal_id,
                poll_interval=cfg.poll_interval,
                merchant_timeout=cfg.merchant_timeout,
                cancel_retry_interval=cfg.cancel_retry_interval,
                cancel_max_attempts=cfg.cancel_max_attempts,
                sleep=lambda seconds: _wait(abort, seconds),  # wakes at once when the cashier aborts
                on_state=heard,
                abort=abort.is_set,
            )
        except GatewayRejected as e:
            # is_success=F: the gateway refused the request itself; nothing was created or charged.
            o = self.journal.set_state(ptid, "failed", str(e), reason=e.error)
            self._emit(on_state, "failed", o)
            return SaleOutcome(
                "FAILED", o, f"{t(self.language, 'failed')}: {decline(self.language, e.error)}"
            )
        except TillpayClientError as e:
            # Cancel never answered (or an answer could not be trusted): the order stays open in the
            # journal and blocks new sales until recovery settles it with the gateway.
            o = self.journal.set_state(ptid, "unresolved", str(e))
            self._emit(on_state, "unresolved", o)
            return SaleOutcome("UNRESOLVED", o, t(self.language, "unresolved"))
        if res.outcome == "PAID":
            paid = self.journal.order(ptid)
            assert paid is not None
            self.basket.clear()
            return self._paid(paid)
        if res.outcome == "FAILED":
            reason = res.reason
            o = self.journal.set_state(ptid, "failed", reason=reason)
            return SaleOutcome("FAILED", o, f"{t(self.language, 'failed')}: {decline(self.language, reason)}")
        detail = "aborted by the cashier" if abort.is_set() else "merchant timeout"
        if res.cancel is not None and res.cancel.action == "refund":
            detail += "; the payment had succeeded and was refunded by the cancel"
        action = res.cancel.action if res.cancel is not None else None
        o = self.journal.set_state(ptid, "cancelled", detail, reason=detail, cancel_action=action)
        return self._cancelled(o, t(self.language, "cancelled"))

    @staticmethod
    def _emit(cb: StateCallback | None, state: str, order: Order) -> None:
        if cb:
            cb(state, order)

    @staticmethod
    def _payment_values(r: PaymentResult | None) -> dict[str, Any]:
        if r is None or not r.fields:
            return {}
        return {
            "trade_no": r.trade_no,
            "buyer_currency": r.get("buyer_currency"),
            "buyer_amount": _dec_text(r.trans_amount_cny),
            "exchange_rate": _dec_text(r.exchange_rate),
            "buyer_login": r.get("alipay_buyer_login_id"),
            "paid_at": r.get("alipay_pay_time"),
        }

    def _paid(self, order: Order, note: str = "") -> SaleOutcome:
        data = self.sale_receipt(order)
        self.journal.add_receipt("sale", order.partner_trans_id, data)
        text = render_text(data, width=self.cfg.printer.columns)
        msg = f"{t(self.language, 'paid')} {self.money(order.total, order.currency)}"
        if order.buyer_amount and order.buyer_currency:
            msg += f"  ({t(self.language, 'customer_paid')} {order.buyer_amount} {order.buyer_currency}"
            msg += f", {t(self.language, 'rate')} {order.exchange_rate})" if order.exchange_rate else ")"
        if note:
            msg = f"{note}: {msg}"
        try:
            self.printer.print(data)
        except PrinterError as e:
            return SaleOutcome("PAID", order, msg, text, str(e), None)
        return SaleOutcome("PAID", order, msg, text, None, time.perf_counter())

    def _cancelled(self, order: Order, msg: str) -> SaleOutcome:
        """A cancelled sale; when its cancel found it paid and refunded it, a slip says so (the
        customer's wallet shows the payment and its refund)."""
        if order.cancel_action != "refund":
            return SaleOutcome("CANCELLED", order, msg)
        data = self.cancelled_receipt(order)
        self.journal.add_receipt("cancelled", order.partner_trans_id, data)
        text = render_text(data, width=self.cfg.printer.columns)
        try:
            self.printer.print(data)
        except PrinterError as e:
            return SaleOutcome("CANCELLED", order, msg, text, str(e))
        return SaleOutcome("CANCELLED", order, msg, text)

    # --------------------------------------------------------------------------------- receipts

    def receipt_header(self, kind: str) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "kind": kind,
            "language": self.language,
            "merchant": cfg.merchant_name,
            "store_name": cfg.store_name,
            "store_id": cfg.store_id,
            "terminal_id": cfg.terminal_id,
            "time": datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
        } | ({"training": True} if cfg.in_training else {})

    def sale_receipt(self, order: Order) -> dict[str, Any]:
        """The data of an order's receipt."""
        return self.receipt_header("sale") | {
            "partner_trans_id": order.partner_trans_id,
            "trade_no": order.trade_no,
            "currency": order.currency,
            "items": [{"name": i.name, "code": i.code, "qty": i.qty, "price": i.price} for i in order.items],
            "total": order.total,
            "buyer_amount": order.buyer_amount,
            "buyer_currency": order.buyer_currency,
            "exchange_rate": order.exchange_rate,
        }

    def cancelled_receipt(self, order: Order) -> dict[str, Any]:
        """The data of a cancellation slip: a sale the customer paid, refunded in full by the cancel."""
        return self.sale_receipt(order) | {"kind": "cancelled"}

    def reprint(self, ref: str | None = None) -> str:
        """Print a stored receipt again, marked as a copy: the newest, or the one for ``ref`` (an order,
        refund or gateway transaction id). Returns its text."""
        found = self.journal.receipts(ref.strip() if ref else None)
        if not found:
            raise TillError(f"no receipt for {ref}" if ref else "no receipt printed yet")
        data = found[0][3]
        self.printer.print(data, copy=True)
        return render_text(data, copy=True, width=self.cfg.printer.columns)

    # --------------------------------------------------------------------------------- recovery

    def recover(self, on_progress: Callable[[str], None] | None = None) -> list[SaleOutcome]:
        """Settle every unfinished order (and pending refund) with the gateway: query, then cancel.

        An order the gateway reports paid stays paid (its receipt prints) unless the till had already
        decided to cancel it; anything still open is cancelled, retrying until the gateway answers.
        Orders the gateway cannot be reached for stay unfinished and keep blocking sales.
        """
        out = []
        for order in self.journal.unfinished():
            if on_progress:
                on_progress(f"{order.partner_trans_id}: {order.state}")
            out.append(self._resolve(order))
        for r in self.journal.refunds(state="pending"):
            self._send_refund(r, attempts=1)
        return out

    def _resolve(self, order: Order) -> SaleOutcome:
        ptid = order.partner_trans_id
        gave_up = order.state in ("cancelling", "unresolved")
        try:
            q = self.client.query(ptid)
        except TillpayClientError:
            q = None
        if q is not None and q.ok and q.status == "TRADE_SUCCESS" and not gave_up:
            o = self.journal.set_state(ptid, "paid", "recovered: paid", **self._payment_values(q))
            return self._paid(o, note=f"{ptid} recovered")
        if q is not None and q.ok and q.status == "TRADE_CLOSED":
            reason = q.get("close_reason") or "TRADE_HAS_CLOSE"
            o = self.journal.set_state(
                ptid, "failed", "recovered: closed", reason=reason, **self._payment_values(q)
            )
            return SaleOutcome("FAILED", o, f"{ptid}: {decline(self.language, reason)}")
        # Still open, never created, or unknown: cancel. Cancel is safe in every case (it closes an open
        # order, refunds a paid one, and leaves a closed placeholder for one that was never created).
        self.journal.set_state(ptid, "cancelling", "recovery")
        for attempt in range(self.cfg.cancel_max_attempts):
            try:
                c = self.client.cancel(ptid)
            except TillpayClientError:
                c = None
            if c is not None and c.ok:
                o = self.journal.set_state(
                    ptid,
                    "cancelled",
                    f"recovered: cancel {c.action}",
                    reason="recovered",
                    cancel_action=c.action,
                )
                return self._cancelled(o, f"{ptid}: {t(self.language, 'cancelled')}")
            if attempt + 1 < self.cfg.cancel_max_attempts:
                time.sleep(self.cfg.cancel_retry_interval)
        o = self.journal.set_state(ptid, "unresolved", "recovery: cancel did not answer")
        return SaleOutcome("UNRESOLVED", o, f"{ptid}: {t(self.language, 'unresolved')}")

    # ---------------------------------------------------------------------------------- refunds

    def find_for_refund(self, ref: str) -> RefundTarget:
        """Look up a paid order by the receipt's QR (the gateway's transaction id) or an order id; the
        gateway's answer decides what is left to refund."""
        ref = ref.strip()
        if not ref:
            raise TillError("scan the receipt's QR code or type the transaction id")
        local = self.journal.order_by_trade_no(ref) or self.journal.order(ref)
        try:
            if local is not None:
                q = self.client.query(local.partner_trans_id)
            else:
                q = self.client.query(trade_no=ref)
                if not q.ok and q.error == "TRADE_NOT_EXIST":
                    q = self.client.query(partner_trans_id=ref)
        except TillpayClientError as e:
            raise TillError(f"the gateway could not be asked: {e}") from None
        if not q.ok:
            raise TillError(decline(self.language, q.error))
        if q.status == "TRADE_CLOSED" and q.get("refund_amount_total") and q.get("alipay_pay_time"):
            raise TillError(
                f"already fully refunded ({q.get('refund_amount_total')} {q.get('trans_currency')})"
            )
        if q.status != "TRADE_SUCCESS":
            raise TillError(f"this payment is {q.status}: nothing to refund")
        currency = q.get("trans_currency") or q.get("currency") or self.cfg.currency
        total = parse_amount(q.get("trans_amount") or "0", currency)
        refunded = parse_amount(q.get("refund_amount_total") or "0", currency)
        return RefundTarget(
            q.get("partner_trans_id") or ref,
            q.trade_no,
            currency,
            total,
            refunded,
            local.items if local else [],
            local,
        )

    def refund(
        self, target: RefundTarget, amount: int, items: list[Line] | None = None, reason: str | None = None
    ) -> tuple[Refund, str]:
        """Refund ``amount`` (minor units of the order's currency); prints a refund slip.

        The refund id is journaled first and reused on every retry, so a lost answer never refunds twice.
        """
        if amount <= 0:
            raise TillError("the refund amount must be more than zero")
        if amount > target.left:
            raise TillError(
                f"at most {self.money(target.left, target.currency)} is left to refund on this payment"
            )
        r = self.journal.new_refund(
            self.cfg.terminal_id,
            target.order,
            target.partner_trans_id,
            target.trade_no,
            amount,
            target.currency,
            items or [],
            reason,
        )
        r = self._send_refund(r, attempts=3)
        if r.state == "failed":
            raise TillError(f"refund refused: {decline(self.language, r.reason)}")
        if r.state != "done":
            raise TillError("the gateway did not answer; the refund will be retried with the same id (F9)")
        data = self.receipt_header("refund") | {
            "partner_trans_id": r.partner_trans_id,
            "trade_no": r.trade_no,
            "refund_id": r.refund_id,
            "currency": r.currency,
            "items": [{"name": i.name, "code": i.code, "qty": i.qty, "price": i.price} for i in r.items],
            "amount": r.amount,
            "buyer_amount": r.buyer_amount,
            "buyer_currency": (target.order.buyer_currency if target.order else None),
        }
        self.journal.add_receipt("refund", r.refund_id, data)
        try:
            self.printer.print(data)
        except PrinterError as e:
            return r, f"{render_text(data, width=self.cfg.printer.columns)}\n(printer: {e})"
        return r, render_text(data, width=self.cfg.printer.columns)

    def _send_refund(self, r: Refund, attempts: int) -> Refund:
        for attempt in range(attempts):
            try:
                res = self.client.refund(
                    r.partner_trans_id,
                    r.refund_id,
                    format_amount(r.amount, r.currency),
                    r.currency,
                    reason=r.reason,
                    is_sync=True,
                )
            except TransportError:
                if attempt + 1 < attempts:
                    time.sleep(min(self.cfg.cancel_retry_interval, 2.0))
                continue
            except TillpayClientError as e:
                return self._refund_failed(r, str(e))
            if res.ok:
                return self.journal.set_refund_state(r.refund_id, "done", res.get("refund_amount_cny"))
            return self._refund_failed(r, res.error or "FAIL")
        return r

    def _refund_failed(self, r: Refund, error: str) -> Refund:
        return self.journal.set_refund_state(r.refund_id, "failed", reason=error)

    def parse_money(self, text: str, currency: str) -> int:
        """A typed amount in minor units, with a clear error."""
        try:
            return parse_amount(text.strip(), currency)
        except InvalidAmount as e:
            raise TillError(f"{text!r} is not an amount in {currency}: {e}") from None
