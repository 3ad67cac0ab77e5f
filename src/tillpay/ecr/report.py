"""Shift and day reports: counts and totals by state and currency, checked order by order against the
gateway's own records (one MAPI query per order), printed like a receipt."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from tillpay.client import MapiClient, PaymentResult, TillpayClientError
from tillpay.domain.money import InvalidAmount, format_amount, parse_amount
from tillpay.ecr.journal import Journal, Order
from tillpay.ecr.textwidth import width as width_of
from tillpay.ecr.textwidth import wrap

#: Which gateway status each final journal state must match. A paid order refunded in full is
#: ``TRADE_CLOSED`` at the gateway: that matches too, when the gateway's refunds add up to its amount (the
#: refunded totals are compared on their own). ``TRADE_FINISHED`` is a final paid state on Alipay HK.
#: A cancelled order is ``TRADE_CLOSED`` whether the cancel closed it unpaid or found it paid (the
#: customer confirmed just as the till gave up) and refunded it in full; the gateway's refunds of such
#: orders are counted apart from the till's own refunds, so both sides' refund totals compare.
EXPECTED: dict[str, set[str | None]] = {
    "paid": {"TRADE_SUCCESS", "TRADE_FINISHED"},
    "failed": {"TRADE_CLOSED", None},
    "cancelled": {"TRADE_CLOSED", None},
}


@dataclass
class Report:
    """What the till recorded, what the gateway says, and every difference."""

    title: str
    #: (state, currency) → [count, total minor units] from the journal.
    by_state: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: currency → [count, total] of refunds done.
    refunds: dict[str, list[int]] = field(default_factory=dict)
    #: (gateway status, currency) → [count, total] from the gateway's answers.
    gateway: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: currency → [count, total] of cancelled orders the customer had paid, refunded by the till's cancel
    #: (from the journal's record of what each cancel did).
    cancel_refunds: dict[str, list[int]] = field(default_factory=dict)
    #: currency → refunded total according to the gateway, of the orders the till counts as sales.
    gateway_refunded: dict[str, int] = field(default_factory=dict)
    #: currency → what the gateway refunded on orders the till counts as cancelled or failed.
    gateway_cancel_refunded: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def matches(self) -> bool:
        """Whether every order agrees with the gateway."""
        return not self.differences

    def net(self) -> dict[str, int]:
        """Takings per currency: paid minus refunded."""
        out: dict[str, int] = defaultdict(int)
        for (state, cur), (_, total) in self.by_state.items():
            if state == "paid":
                out[cur] += total
        for cur, (_, total) in self.refunds.items():
            out[cur] -= total
        return dict(out)

    def lines(self, width: int | None = None) -> list[str]:
        """The report as lines: for paper of ``width`` columns (42, or 32 with narrower figures; long
        lines wrapped), or unwrapped for a screen or terminal that wraps for itself."""
        wide = width is None or width >= 42

        def count(label: str, n: int | str, total: int, cur: str) -> str:
            if wide:
                return f"{label:<11}{n:>5}  {format_amount(total, cur):>14} {cur}"
            return f"{label:<11}{n:>4} {format_amount(total, cur):>12} {cur}"

        def status(label: str, n: int | str, total: int, cur: str) -> str:
            if wide:
                return f"{label:<16}{n:>4} {format_amount(total, cur):>12} {cur}"
            return f"{label:<15}{n:>3} {format_amount(total, cur):>9} {cur}"

        out = [self.title, ""]
        for (state, cur), (n, total) in sorted(self.by_state.items()):
            out.append(count(state, n, total, cur))
            if state == "cancelled" and cur in self.cancel_refunds:
                n, total = self.cancel_refunds[cur]
                out.append(count(" refunded", n, total, cur))
        for cur, (n, total) in sorted(self.refunds.items()):
            out.append(count("refunds", n, total, cur))
        for cur, total in sorted(self.net().items()):
            out.append(count("NET", "", total, cur))
        out += ["", "Gateway:"]
        for (st, cur), (n, total) in sorted(self.gateway.items()):
            out.append(status(st, n, total, cur))
        for cur, total in sorted(self.gateway_refunded.items()):
            out.append(status("refunded", "", total, cur))
        for cur, total in sorted(self.gateway_cancel_refunded.items()):
            out.append(status("cancel-refunded", "", total, cur))
        out.append("")
        if self.matches:
            out.append(f"MATCHES THE GATEWAY ({self.checked} orders)")
        else:
            out.append(f"{len(self.differences)} DIFFERENCE(S):")
            out += [f" {d}" for d in self.differences]
        if width is None:
            return out
        return [
            line for part in out for line in (wrap(part, width, "   ") if width_of(part) > width else [part])
        ]


def build_report(
    journal: Journal,
    client: MapiClient | None,
    *,
    shift_id: int | None = None,
    day: date | None = None,
) -> Report:
    """Count the journal's orders and refunds of a shift (or a local day), then query each order."""
    if shift_id is not None:
        title = f"SHIFT {shift_id} REPORT"
        orders = journal.orders(shift_id=shift_id)
        refunds = journal.refunds(shift_id=shift_id, state="done")
    else:
        day = day or date.today()
        title = f"DAY {day.isoformat()} REPORT"
        orders = journal.orders(day=day)
        refunds = journal.refunds(day=day, state="done")
    rep = Report(title)
    for o in orders:
        row = rep.by_state.setdefault((o.state, o.currency), [0, 0])
        row[0] += 1
        row[1] += o.total
        if o.state == "cancelled" and o.cancel_action == "refund":
            row = rep.cancel_refunds.setdefault(o.currency, [0, 0])
            row[0] += 1
            row[1] += o.total
    for r in refunds:
        row = rep.refunds.setdefault(r.currency, [0, 0])
        row[0] += 1
        row[1] += r.amount
    if client is not None:
        for o in orders:
            _check(rep, client, o)
    return rep


def _check(rep: Report, client: MapiClient, o: Order) -> None:
    ptid = o.partner_trans_id
    try:
        q = client.query(ptid)
    except TillpayClientError as e:
        rep.differences.append(f"{ptid}: gateway not reachable ({e})")
        return
    rep.checked += 1
    if not q.ok:
        status = None if q.error == "TRADE_NOT_EXIST" else f"error {q.error}"
    else:
        status = q.status
    if status is not None and q.ok:
        cur = q.get("trans_currency") or o.currency
        try:
            amount = parse_amount(q.get("trans_amount") or "0", cur)
            refunded = parse_amount(q.get("refund_amount_total") or "0", cur)
        except InvalidAmount:
            rep.differences.append(f"{ptid}: the gateway's amount cannot be read")
            return
        if q.status != "TRADE_CLOSED" or amount:  # a cancel-before-pay placeholder has no amount
            g = rep.gateway.setdefault((status, cur), [0, 0])
            g[0] += 1
            g[1] += amount
        if refunded:
            into = rep.gateway_cancel_refunded if o.state in ("cancelled", "failed") else rep.gateway_refunded
            into[cur] = into.get(cur, 0) + refunded
        if o.state == "paid":
            if amount != o.total or cur != o.currency:
                rep.differences.append(
                    f"{ptid}: amount {format_amount(o.total, o.currency)} {o.currency} here, "
                    f"{format_amount(amount, cur)} {cur} at the gateway"
                )
            if refunded != o.refunded:
                rep.differences.append(
                    f"{ptid}: refunded {format_amount(o.refunded, o.currency)} here, "
                    f"{format_amount(refunded, cur)} at the gateway"
                )
    expected = EXPECTED.get(o.state)
    if o.state == "paid" and status == "TRADE_CLOSED" and q.ok and _fully_refunded(q):
        return  # refunded in full: closed at the gateway, and the refunds were compared above
    if expected is None:
        rep.differences.append(
            f"{ptid}: still {o.state} here (resolve it), {status or 'unknown'} at the gateway"
        )
    elif status not in expected:
        rep.differences.append(f"{ptid}: {o.state} here, {status or 'no such order'} at the gateway")


def _fully_refunded(q: PaymentResult) -> bool:
    try:
        cur = q.get("trans_currency") or ""
        amount = parse_amount(q.get("trans_amount") or "0", cur)
        return amount > 0 and parse_amount(q.get("refund_amount_total") or "0", cur) == amount
    except InvalidAmount:
        return False
