"""The settlement invariants ``tillpay audit`` checks (merged into ``store.audit.CHECKS``): SQL over
the settlement tables, kept in store/ beside the repository that writes them.

Each entry: name → (description, SQL returning one row per violation). ``\\:payable`` escapes the
colon from SQLAlchemy's bind-parameter syntax.
"""

from __future__ import annotations

CHECKS: dict[str, tuple[str, str]] = {
    "settlement_batch_totals": (
        "each settlement batch's counts, amounts and fee equal the sums of its items, and its net and "
        "payout follow from them (so a closed batch never gained or lost an item)",
        "SELECT b.id, b.settle_date, b.net FROM settlement_batches b LEFT JOIN ("
        "SELECT batch_id, "
        "SUM(CASE WHEN kind = 'P' THEN 1 ELSE 0 END) AS pc, SUM(CASE WHEN kind = 'R' THEN 1 ELSE 0 END) AS rc, "
        "SUM(CASE WHEN kind = 'C' THEN 1 ELSE 0 END) AS cc, "
        "SUM(CASE WHEN kind = 'P' THEN amount ELSE 0 END) AS pa, "
        "SUM(CASE WHEN kind = 'R' THEN amount ELSE 0 END) AS ra, "
        "SUM(CASE WHEN kind = 'C' THEN amount ELSE 0 END) AS ca, "
        "SUM(CASE WHEN kind = 'P' THEN fee WHEN kind = 'C' THEN -fee ELSE 0 END) AS fee "
        "FROM settlement_items GROUP BY batch_id) s ON s.batch_id = b.id "
        "WHERE COALESCE(s.pc, 0) <> b.payment_count OR COALESCE(s.rc, 0) <> b.refund_count "
        "OR COALESCE(s.cc, 0) <> b.reversal_count OR COALESCE(s.pa, 0) <> b.payments_amount "
        "OR COALESCE(s.ra, 0) <> b.refunds_amount OR COALESCE(s.ca, 0) <> b.reversals_amount "
        "OR COALESCE(s.fee, 0) <> b.fee "
        "OR b.net <> b.payments_amount - b.refunds_amount - b.reversals_amount - b.fee "
        "OR b.carried_in > 0 "
        "OR b.payout_amount <> CASE WHEN b.net + b.carried_in > 0 THEN b.net + b.carried_in ELSE 0 END",
    ),
    "settlement_items_match_sources": (
        "each settled item is exactly its payment or refund: same merchant, currency, amount and time, "
        "before the batch's cut-off, a refund keeping its fee",
        "SELECT si.ref FROM settlement_items si JOIN settlement_batches b ON b.id = si.batch_id "
        "JOIN payments p ON p.id = si.payment_id LEFT JOIN refunds r ON r.id = si.refund_id "
        "WHERE p.merchant_id <> b.merchant_id OR p.settle_currency <> b.currency "
        "OR si.occurred_at >= b.cutoff_at OR si.kind NOT IN ('P', 'R', 'C') OR si.fee < 0 "
        "OR (si.kind = 'P' AND (si.refund_id IS NOT NULL OR p.paid_at IS NULL OR si.amount <> p.settle_amount "
        "OR si.occurred_at <> p.paid_at OR si.ref <> 'payment:' || CAST(p.id AS VARCHAR))) "
        "OR (si.kind IN ('R', 'C') AND (r.id IS NULL OR r.payment_id <> p.id OR si.amount <> r.settle_amount "
        "OR si.occurred_at <> r.created_at OR si.ref <> 'refund:' || CAST(r.id AS VARCHAR) "
        "OR (si.kind = 'C' AND r.kind <> 'cancel') OR (si.kind = 'R' AND r.kind <> 'refund'))) "
        "OR (si.kind = 'R' AND si.fee <> 0)",
    ),
    "settlement_batch_posted": (
        "each batch posts once: payable → fee revenue (its fee) and payable → settlement clearing "
        "(its payout), in its currency, and nothing else",
        "SELECT b.id, b.fee, b.payout_amount FROM settlement_batches b "
        "LEFT JOIN journal_entries e ON e.ref = 'settlement:' || CAST(b.id AS VARCHAR) "
        "LEFT JOIN postings p ON p.entry_id = e.id "
        "GROUP BY b.id, b.fee, b.payout_amount, b.currency, b.merchant_id "
        "HAVING SUM(CASE WHEN p.account = 'merchant:' || CAST(b.merchant_id AS VARCHAR) || '\\:payable' "
        "AND p.currency = b.currency THEN p.amount ELSE 0 END) <> -(b.fee + b.payout_amount) "
        "OR SUM(CASE WHEN p.account = 'fee_revenue' AND p.currency = b.currency THEN p.amount ELSE 0 END) "
        "<> b.fee "
        "OR SUM(CASE WHEN p.account = 'settlement_clearing' AND p.currency = b.currency THEN p.amount "
        "ELSE 0 END) <> b.payout_amount "
        "OR COUNT(p.id) <> SUM(CASE WHEN p.currency = b.currency AND (p.account = 'fee_revenue' "
        "OR p.account = 'settlement_clearing' OR p.account = 'merchant:' || CAST(b.merchant_id AS VARCHAR) "
        "|| '\\:payable') THEN 1 ELSE 0 END)",
    ),
    "payout_posted_once": (
        "each paid payout is posted exactly once (settlement clearing → bank, its amount), "
        "and no unpaid one is",
        "SELECT b.id, b.payout_status, COUNT(DISTINCT e.id) FROM settlement_batches b "
        "LEFT JOIN journal_entries e ON e.ref = 'payout:' || CAST(b.id AS VARCHAR) "
        "LEFT JOIN postings p ON p.entry_id = e.id "
        "GROUP BY b.id, b.payout_status, b.payout_amount, b.currency "
        "HAVING COUNT(DISTINCT e.id) <> CASE WHEN b.payout_status = 'paid' THEN 1 ELSE 0 END "
        "OR SUM(CASE WHEN p.account = 'settlement_clearing' AND p.currency = b.currency THEN p.amount "
        "ELSE 0 END) <> CASE WHEN b.payout_status = 'paid' THEN -b.payout_amount ELSE 0 END "
        "OR SUM(CASE WHEN p.account = 'bank' AND p.currency = b.currency THEN p.amount ELSE 0 END) "
        "<> CASE WHEN b.payout_status = 'paid' THEN b.payout_amount ELSE 0 END "
        "OR (b.payout_status = 'none') <> (b.payout_amount = 0)",
    ),
    "clearing_matches_unpaid_payouts": (
        "settlement clearing holds exactly the payouts not paid yet, per currency",
        "SELECT c.currency, c.total, COALESCE(u.total, 0) FROM "
        "(SELECT currency, SUM(amount) AS total FROM postings WHERE account = 'settlement_clearing' GROUP BY currency) c "
        "LEFT JOIN (SELECT currency, SUM(payout_amount) AS total FROM settlement_batches WHERE payout_status <> 'paid' GROUP BY currency) u "
        "ON u.currency = c.currency WHERE c.total <> COALESCE(u.total, 0) "
        "UNION ALL SELECT u.currency, 0, u.total FROM "
        "(SELECT currency, SUM(payout_amount) AS total FROM settlement_batches WHERE payout_status <> 'paid' GROUP BY currency) u "
        "WHERE u.total <> 0 AND u.currency NOT IN "
        "(SELECT currency FROM postings WHERE account = 'settlement_clearing')",
    ),
    "settled_when_due": (
        "every payment paid and every refund made before the latest closed cut-off is in a batch "
        "(except a sandbox wallet's or a test merchant's, which never are)",
        "SELECT p.trade_no FROM payments p WHERE p.paid_at < (SELECT MAX(cutoff_at) FROM settlement_runs) "
        "AND NOT EXISTS (SELECT 1 FROM settlement_items si WHERE si.ref = 'payment:' || CAST(p.id AS VARCHAR)) "
        "AND NOT EXISTS (SELECT 1 FROM wallet_users u WHERE u.id = p.user_id AND u.sandbox = TRUE) "
        "AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = p.merchant_id AND m.test_of IS NOT NULL) "
        "UNION ALL SELECT r.refund_no FROM refunds r JOIN payments p ON p.id = r.payment_id "
        "WHERE r.created_at < (SELECT MAX(cutoff_at) FROM settlement_runs) "
        "AND NOT EXISTS (SELECT 1 FROM settlement_items si WHERE si.ref = 'refund:' || CAST(r.id AS VARCHAR)) "
        "AND NOT EXISTS (SELECT 1 FROM wallet_users u WHERE u.id = p.user_id AND u.sandbox = TRUE) "
        "AND NOT EXISTS (SELECT 1 FROM merchants m WHERE m.id = r.merchant_id AND m.test_of IS NOT NULL)",
    ),
    "closed_day_unchanged": (
        "no batch was added to a business day after its run closed it",
        "SELECT CAST(b.id AS VARCHAR), CAST(b.settle_date AS VARCHAR) FROM settlement_batches b "
        "JOIN settlement_runs r ON r.settle_date = b.settle_date WHERE b.created_at > r.created_at "
        "UNION ALL SELECT 'run', CAST(r.settle_date AS VARCHAR) FROM settlement_runs r "
        "WHERE r.batch_count <> (SELECT COUNT(*) FROM settlement_batches b WHERE b.settle_date = r.settle_date)",
    ),
}

#: The payable check, amended: payments less refunds less what settlement moved out (fees and payouts).
MERCHANT_PAYABLE = (
    "each merchant's payable equals its payments less its refunds less its settled fees and payouts",
    "SELECT m.partner_id, COALESCE(pp.total, 0), "
    "COALESCE(pay.total, 0) - COALESCE(ref.total, 0) - COALESCE(st.total, 0) "
    "FROM merchants m "
    "LEFT JOIN (SELECT account, SUM(amount) AS total FROM postings GROUP BY account) pp "
    "ON pp.account = 'merchant:' || CAST(m.id AS VARCHAR) || '\\:payable' "
    "LEFT JOIN (SELECT merchant_id, SUM(settle_amount) AS total FROM payments WHERE paid_at IS NOT NULL "
    "GROUP BY merchant_id) pay ON pay.merchant_id = m.id "
    "LEFT JOIN (SELECT merchant_id, SUM(settle_amount) AS total FROM refunds GROUP BY merchant_id) ref "
    "ON ref.merchant_id = m.id "
    "LEFT JOIN (SELECT merchant_id, SUM(fee + payout_amount) AS total FROM settlement_batches "
    "GROUP BY merchant_id) st ON st.merchant_id = m.id "
    "WHERE COALESCE(pp.total, 0) <> COALESCE(pay.total, 0) - COALESCE(ref.total, 0) - COALESCE(st.total, 0)",
)
