"""pay at once: the PostgreSQL function that writes a common pay in one round trip, with its guards

A pay that read its facts in one statement and decided them (services/payments.py) writes everything in
one call of ``tillpay_pay`` outside an explicit transaction, so the call commits by itself. The function
re-checks what a concurrent request could have changed since the read and raises, which rolls back all
it wrote, with its own SQLSTATE:

- ``TP001``: the code's (device, step, slot) is used (the code-use unique constraint);
- ``TP002``: the merchant's transaction id is taken (the ``(merchant_id, partner_trans_id)`` unique);
- ``TP003``: the wallet row changed since the read (its ``xmin``: balance, status, any write of it) or
  the customer's day/month/velocity totals differ from what the decision saw, read again with the
  wallet row locked, or the overdraft guard refused.

The caller answers TP001 and TP002 as the careful path does (a repeat replayed, CODE_USED) and TP003 by
the careful path itself, which locks the wallet and decides again. A no-op on SQLite (one writer).

Revision ID: 0118
Revises: 0123
Create Date: 2026-12-01 04:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0118"
down_revision = "0123"
branch_labels = None
depends_on = None

#: The payments columns the pay writes (services/payments.py ``_payment_values``; tests compare them).
PAYMENT_COLUMNS = (
    "trade_no, merchant_id, partner_trans_id, kind, dialect, status, result_code, request_digest, subject, "
    "price_amount, price_currency, settle_amount, settle_currency, wallet_amount, wallet_currency, "
    "settle_rate, wallet_rate, wallet_mid_rate, margin_bps, margin_amount, user_id, device_id, risk_rule, "
    "notify_url, sign_type, store_id, terminal_id, memo, secondary_merchant_id, secondary_merchant_name, "
    "secondary_merchant_industry, store_name, created_at, expires_at, paid_at, closed_at"
)

_FUNCTION = """
CREATE OR REPLACE FUNCTION tillpay_pay(
    p_payment jsonb,
    p_decision text[],
    p_device_id int, p_step bigint, p_slot int, p_spend boolean,
    p_user_id int, p_version text,
    p_day timestamp, p_month timestamp, p_velocity_since timestamp,
    p_day_total bigint, p_month_total bigint, p_recent bigint,
    p_accounts text[], p_currencies text[], p_amounts bigint[], p_wallet_currency text, p_delta bigint,
    p_outbox text[], p_notify_at timestamp,
    p_now timestamp
) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
    v_version text;
    v_day bigint;
    v_month bigint;
    v_recent bigint;
    v_id int;
    v_entry int;
BEGIN
    -- The code's single use (taken back below when the balance alone refused the payment).
    INSERT INTO code_uses (device_id, step, slot, created_at)
    VALUES (p_device_id, p_step, p_slot, p_now)
    ON CONFLICT (device_id, step, slot) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payment code used' USING ERRCODE = 'TP001';
    END IF;
    -- The wallet row locked, unchanged since the read.
    SELECT xmin::text INTO v_version FROM wallet_users WHERE id = p_user_id FOR UPDATE;
    IF v_version IS DISTINCT FROM p_version THEN
        RAISE EXCEPTION 'wallet changed since the read' USING ERRCODE = 'TP003';
    END IF;
    -- The customer's totals as the decision saw them (this statement's snapshot follows the lock).
    SELECT
        coalesce(sum(wallet_amount) FILTER (
            WHERE created_at >= p_day AND (paid_at IS NOT NULL OR status = 'WAIT_BUYER_PAY')), 0),
        coalesce(sum(wallet_amount) FILTER (
            WHERE created_at >= p_month AND (paid_at IS NOT NULL OR status = 'WAIT_BUYER_PAY')), 0),
        count(*) FILTER (WHERE created_at >= p_velocity_since)
    INTO v_day, v_month, v_recent
    FROM payments
    WHERE user_id = p_user_id AND created_at >= least(p_month, p_velocity_since) AND kind <> 'tombstone';
    IF (v_day, v_month, v_recent) IS DISTINCT FROM (p_day_total, p_month_total, p_recent) THEN
        RAISE EXCEPTION 'totals changed since the read' USING ERRCODE = 'TP003';
    END IF;
    INSERT INTO payments ({PAYMENT_COLUMNS})
    SELECT {PAYMENT_COLUMNS} FROM jsonb_populate_record(NULL::payments, p_payment)
    ON CONFLICT (merchant_id, partner_trans_id) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'transaction id taken' USING ERRCODE = 'TP002';
    END IF;
    INSERT INTO risk_decisions (payment_id, verdict, rule, code, fired, inputs, config, created_at)
    VALUES (v_id, p_decision[1], p_decision[2], p_decision[3], p_decision[4], p_decision[5], p_decision[6],
            p_now);
    IF NOT p_spend THEN
        DELETE FROM code_uses WHERE device_id = p_device_id AND step = p_step AND slot = p_slot;
    END IF;
    IF p_amounts IS NOT NULL THEN
        -- The ledger entry as store/ledger.py writes a payment's (pg_ledger_ctes): balanced postings and
        -- the wallet's stored balance under the overdraft guard.
        INSERT INTO journal_entries (kind, ref, payment_id, created_at)
        VALUES ('payment', 'payment:' || v_id, v_id, p_now)
        RETURNING id INTO v_entry;
        INSERT INTO postings (entry_id, account, currency, amount)
        SELECT v_entry, x.account, x.currency, x.amount
        FROM unnest(p_accounts, p_currencies, p_amounts) AS x(account, currency, amount);
        UPDATE wallet_users SET balance = balance + p_delta
        WHERE id = p_user_id AND currency = p_wallet_currency AND balance + p_delta >= 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'overdraft guard' USING ERRCODE = 'TP003';
        END IF;
    END IF;
    IF p_outbox IS NOT NULL THEN
        -- notify_id, url, event, dialect, sign_type, the payload around the payment's id, request id.
        INSERT INTO outbox (notify_id, merchant_id, payment_id, event, dialect, url, sign_type, payload,
                            status, attempts, next_attempt_at, created_at, request_id)
        VALUES (p_outbox[1], (p_payment->>'merchant_id')::int, v_id, p_outbox[3], p_outbox[4], p_outbox[2],
                p_outbox[5], p_outbox[6] || v_id || p_outbox[7], 'pending', 0, p_notify_at, p_notify_at,
                p_outbox[8]);
    END IF;
    RETURN v_id;
END
$fn$
"""
#: Only the constant column list goes into the text.
FUNCTION = _FUNCTION.replace("{PAYMENT_COLUMNS}", PAYMENT_COLUMNS)

SIGNATURE = (
    "tillpay_pay(jsonb, text[], int, bigint, int, boolean, int, text, timestamp, timestamp, timestamp, "
    "bigint, bigint, bigint, text[], text[], bigint[], text, bigint, text[], timestamp, timestamp)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
