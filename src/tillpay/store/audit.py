"""The invariants ``tillpay audit`` checks, as SQL over the ledger, payments and settlement tables.

Each check is a query that returns one row per violation (first column a short identifier); the
settlement ones are kept beside the settlement repository (``store/settlement_audit.py``) and merged in.
``\\:`` escapes a colon from SQLAlchemy's bind-parameter syntax.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tillpay.store.settlement_audit import CHECKS as SETTLEMENT_CHECKS
from tillpay.store.settlement_audit import MERCHANT_PAYABLE

#: name → (description, SQL returning one row per violation, first column a short identifier)
CHECKS: dict[str, tuple[str, str]] = {
    "entries_balance": (
        "every journal entry sums to zero in each currency",
        "SELECT entry_id, currency, SUM(amount) FROM postings GROUP BY entry_id, currency HAVING SUM(amount) <> 0",
    ),
    "entries_not_empty": (
        "every journal entry has postings",
        "SELECT e.id FROM journal_entries e LEFT JOIN postings p ON p.entry_id = e.id WHERE p.id IS NULL",
    ),
    "no_negative_wallet": (
        "no wallet balance is negative",
        "SELECT login_id, balance FROM wallet_users WHERE balance < 0",
    ),
    "wallet_equals_postings": (
        "each wallet's stored balance equals the sum of its postings",
        "SELECT u.login_id, u.balance, COALESCE(s.total, 0) FROM wallet_users u LEFT JOIN "
        "(SELECT account, SUM(amount) AS total FROM postings WHERE account LIKE 'wallet:%' GROUP BY account) s "
        "ON s.account = 'wallet:' || CAST(u.id AS VARCHAR) WHERE u.balance <> COALESCE(s.total, 0)",
    ),
    "wallet_postings_in_wallet_currency": (
        "wallet postings are in the wallet's currency",
        "SELECT p.id, p.account, p.currency FROM postings p JOIN wallet_users u "
        "ON p.account = 'wallet:' || CAST(u.id AS VARCHAR) WHERE p.currency <> u.currency",
    ),
    "paid_posted_once": (
        "every paid payment is posted exactly once, and no unpaid one is",
        "SELECT p.trade_no, p.status, COUNT(e.id) FROM payments p LEFT JOIN journal_entries e "
        "ON e.ref = 'payment:' || CAST(p.id AS VARCHAR) GROUP BY p.id, p.trade_no, p.status, p.paid_at "
        "HAVING COUNT(e.id) <> CASE WHEN p.paid_at IS NULL THEN 0 ELSE 1 END",
    ),
    "refund_posted_once": (
        "every refund is posted exactly once",
        "SELECT r.refund_no, COUNT(e.id) FROM refunds r LEFT JOIN journal_entries e "
        "ON e.ref = 'refund:' || CAST(r.id AS VARCHAR) GROUP BY r.id, r.refund_no HAVING COUNT(e.id) <> 1",
    ),
    "refunds_match_payment": (
        "a payment's refunded amounts equal the sum of its refunds and never exceed what was paid",
        "SELECT p.trade_no, p.refunded_price, COALESCE(SUM(r.price_amount), 0) FROM payments p "
        "LEFT JOIN refunds r ON r.payment_id = p.id GROUP BY p.id, p.trade_no, p.refunded_price, "
        "p.refunded_settle, p.refunded_wallet, p.price_amount, p.settle_amount, p.wallet_amount "
        "HAVING p.refunded_price <> COALESCE(SUM(r.price_amount), 0) "
        "OR p.refunded_settle <> COALESCE(SUM(r.settle_amount), 0) "
        "OR p.refunded_wallet <> COALESCE(SUM(r.wallet_amount), 0) "
        "OR p.refunded_price > p.price_amount OR p.refunded_settle > p.settle_amount "
        "OR p.refunded_wallet > COALESCE(p.wallet_amount, 0)",
    ),
    "refunded_only_if_paid": (
        "only paid payments have refunds",
        "SELECT p.trade_no FROM payments p JOIN refunds r ON r.payment_id = p.id WHERE p.paid_at IS NULL",
    ),
    "closed_when_fully_refunded": (
        "a fully refunded payment is closed, a partly refunded one is still a success",
        "SELECT trade_no, status FROM payments WHERE paid_at IS NOT NULL AND "
        "((refunded_price = price_amount AND status <> 'TRADE_CLOSED') OR "
        "(refunded_price < price_amount AND status <> 'TRADE_SUCCESS'))",
    ),
    "payment_postings_match": (
        "each payment's entry moves exactly its wallet and settlement amounts",
        "SELECT p.trade_no FROM payments p JOIN journal_entries e ON e.ref = 'payment:' || CAST(p.id AS VARCHAR) "
        "JOIN postings w ON w.entry_id = e.id AND w.account = 'wallet:' || CAST(p.user_id AS VARCHAR) "
        "JOIN postings m ON m.entry_id = e.id AND m.account = 'merchant:' || CAST(p.merchant_id AS VARCHAR) "
        "|| '\\:payable' WHERE w.amount <> -p.wallet_amount OR w.currency <> p.wallet_currency "
        "OR m.amount <> p.settle_amount OR m.currency <> p.settle_currency",
    ),
    # Settlement moves fees and payouts out of the payable (store/settlement_audit.py).
    "merchant_payable_matches": MERCHANT_PAYABLE,
    "fx_margin_matches": (
        "the FX margin account equals the margins charged less the margins refunded, per currency",
        "SELECT cur.currency, COALESCE(pp.total, 0), COALESCE(pay.total, 0) - COALESCE(ref.total, 0) FROM "
        "(SELECT currency FROM postings WHERE account = 'fx_margin' UNION "
        " SELECT wallet_currency FROM payments WHERE wallet_currency IS NOT NULL) cur "
        "LEFT JOIN (SELECT currency, SUM(amount) AS total FROM postings WHERE account = 'fx_margin' "
        " GROUP BY currency) pp ON pp.currency = cur.currency "
        "LEFT JOIN (SELECT wallet_currency AS currency, SUM(margin_amount) AS total FROM payments "
        " WHERE paid_at IS NOT NULL GROUP BY wallet_currency) pay ON pay.currency = cur.currency "
        "LEFT JOIN (SELECT p.wallet_currency AS currency, SUM(r.margin_amount) AS total FROM refunds r "
        " JOIN payments p ON p.id = r.payment_id GROUP BY p.wallet_currency) ref ON ref.currency = cur.currency "
        "WHERE COALESCE(pp.total, 0) <> COALESCE(pay.total, 0) - COALESCE(ref.total, 0)",
    ),
    "fx_gain_matches": (
        "the FX gain/loss account equals the refunds' recorded FX gains, per currency",
        "SELECT cur.currency, COALESCE(pp.total, 0), COALESCE(g.total, 0) FROM "
        "(SELECT currency FROM postings WHERE account = 'fx_gain_loss' UNION "
        " SELECT wallet_currency FROM payments WHERE wallet_currency IS NOT NULL) cur "
        "LEFT JOIN (SELECT currency, SUM(amount) AS total FROM postings WHERE account = 'fx_gain_loss' "
        " GROUP BY currency) pp ON pp.currency = cur.currency "
        "LEFT JOIN (SELECT p.wallet_currency AS currency, SUM(r.fx_gain) AS total FROM refunds r "
        " JOIN payments p ON p.id = r.payment_id GROUP BY p.wallet_currency) g ON g.currency = cur.currency "
        "WHERE COALESCE(pp.total, 0) <> COALESCE(g.total, 0)",
    ),
    "risk_decided": (
        "every payment a customer made has its risk decision stored",
        "SELECT p.trade_no FROM payments p LEFT JOIN risk_decisions d ON d.payment_id = p.id "
        "WHERE p.user_id IS NOT NULL AND d.id IS NULL",
    ),
    "code_used_once": (
        "no two payments were made with the same payment code",
        "SELECT device_id, step, slot FROM code_uses GROUP BY device_id, step, slot HAVING COUNT(*) > 1",
    ),
    "sandbox_never_settled": (
        "no payment or refund of a sandbox wallet (made-up money) is in a settlement batch",
        "SELECT si.ref, si.batch_id FROM settlement_items si JOIN payments p ON p.id = si.payment_id "
        "JOIN wallet_users u ON u.id = p.user_id WHERE u.sandbox = TRUE",
    ),
    "test_merchant_never_settled": (
        "no test merchant (test credentials) is in a live settlement batch, file or payout",
        "SELECT 'batch', CAST(b.id AS VARCHAR), m.partner_id FROM settlement_batches b "
        "JOIN merchants m ON m.id = b.merchant_id WHERE m.test_of IS NOT NULL "
        "UNION ALL SELECT 'file', f.name, m.partner_id FROM settlement_files f "
        "JOIN merchants m ON m.id = f.merchant_id WHERE m.test_of IS NOT NULL",
    ),
    "test_merchant_sandbox_only": (
        "every payment a test merchant was paid came from a sandbox wallet",
        "SELECT p.trade_no, m.partner_id FROM payments p JOIN merchants m ON m.id = p.merchant_id "
        "JOIN wallet_users u ON u.id = p.user_id "
        "WHERE m.test_of IS NOT NULL AND p.paid_at IS NOT NULL AND u.sandbox = FALSE",
    ),
    "topup_referenced": (
        "every top-up carries the reference it was made with",
        "SELECT id, ref FROM journal_entries WHERE kind = 'topup' AND ref NOT LIKE 'topup\\:_%'",
    ),
}
CHECKS.update(SETTLEMENT_CHECKS)


class AuditReads:
    """The audit's queries over one connection (read only)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def violations(self, check: str) -> list[Any]:
        """The rows that break the named check (none when it holds)."""
        return list((await self.conn.execute(text(CHECKS[check][1]))).all())
