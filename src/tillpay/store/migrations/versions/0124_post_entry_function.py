"""post entry: PostgreSQL's one ledger writer, a function every journal entry goes through

``tillpay_post_entry`` writes one journal entry: its postings, and each wallet line's change of the
wallet's stored balance under the overdraft guard (``balance + amount >= 0`` in the wallet's currency).
When a guard refuses, it takes back the balances it had already moved and answers NULL: nothing of the
entry remains, and the caller refuses (``store/ledger.py`` raises BUYER_BALANCE_NOT_ENOUGH, which rolls
its transaction back). An entry that does not balance per currency raises ``TP005`` (the callers check it
first; this is the last word).

Every PostgreSQL entry is written by it: ``store.ledger.post_entry`` (payments confirmed, refunds,
cancels, top-ups, settlement, the careful pay) calls it, and ``tillpay_pay`` (migration 0118, defined
again here) calls it for the common pay instead of its own copy of the statements. SQLite writes the same
rows with the same guard statement by statement (``store/ledger.py``).

Revision ID: 0124
Revises: 0118
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0124"
down_revision = "0118"
branch_labels = None
depends_on = None

POST_ENTRY = """
CREATE OR REPLACE FUNCTION tillpay_post_entry(
    p_kind text, p_ref text, p_payment_id int, p_memo text, p_created_at timestamp,
    p_accounts text[], p_currencies text[], p_amounts bigint[]
) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
    v_entry int;
    v_wallet int;
BEGIN
    IF cardinality(p_accounts) IS DISTINCT FROM cardinality(p_currencies)
       OR cardinality(p_accounts) IS DISTINCT FROM cardinality(p_amounts)
       OR cardinality(p_accounts) < 2
       OR EXISTS (SELECT 1 FROM unnest(p_currencies, p_amounts) AS x(currency, amount)
                  GROUP BY x.currency HAVING sum(x.amount) <> 0) THEN
        RAISE EXCEPTION 'unbalanced journal entry %', p_ref USING ERRCODE = 'TP005';
    END IF;
    -- The wallet lines first, in order, each under the overdraft guard.
    FOR i IN 1 .. cardinality(p_accounts) LOOP
        CONTINUE WHEN p_accounts[i] NOT LIKE 'wallet:%';
        v_wallet := substr(p_accounts[i], 8)::int;
        UPDATE wallet_users SET balance = balance + p_amounts[i]
        WHERE id = v_wallet AND currency = p_currencies[i] AND balance + p_amounts[i] >= 0;
        IF NOT FOUND THEN
            -- Refused: the lines moved before this one are taken back; nothing of the entry remains.
            FOR j IN 1 .. i - 1 LOOP
                CONTINUE WHEN p_accounts[j] NOT LIKE 'wallet:%';
                UPDATE wallet_users SET balance = balance - p_amounts[j]
                WHERE id = substr(p_accounts[j], 8)::int;
            END LOOP;
            RETURN NULL;
        END IF;
    END LOOP;
    INSERT INTO journal_entries (kind, ref, payment_id, memo, created_at)
    VALUES (p_kind, p_ref, p_payment_id, p_memo, p_created_at)
    RETURNING id INTO v_entry;
    INSERT INTO postings (entry_id, account, currency, amount)
    SELECT v_entry, x.account, x.currency, x.amount
    FROM unnest(p_accounts, p_currencies, p_amounts) WITH ORDINALITY AS x(account, currency, amount, n)
    ORDER BY x.n;
    RETURN v_entry;
END
$fn$
"""

POST_ENTRY_SIGNATURE = "tillpay_post_entry(text, text, int, text, timestamp, text[], text[], bigint[])"

OLD_PAY_SIGNATURE = (
    "tillpay_pay(jsonb, text[], int, bigint, int, boolean, int, text, timestamp, timestamp, timestamp, "
    "bigint, bigint, bigint, text[], text[], bigint[], text, bigint, text[], timestamp, timestamp)"
)

#: The payments columns the pay writes (services/payments.py ``_payment_values``; tests compare them).
PAYMENT_COLUMNS = (
    "trade_no, merchant_id, partner_trans_id, kind, dialect, status, result_code, request_digest, subject, "
    "price_amount, price_currency, settle_amount, settle_currency, wallet_amount, wallet_currency, "
    "settle_rate, wallet_rate, wallet_mid_rate, margin_bps, margin_amount, user_id, device_id, risk_rule, "
    "notify_url, sign_type, store_id, terminal_id, memo, secondary_merchant_id, secondary_merchant_name, "
    "secondary_merchant_industry, store_name, created_at, expires_at, paid_at, closed_at"
)

_PAY = """
CREATE OR REPLACE FUNCTION tillpay_pay(
    p_payment jsonb,
    p_decision text[],
    p_device_id int, p_step bigint, p_slot int, p_spend boolean,
    p_user_id int, p_version text,
    p_day timestamp, p_month timestamp, p_velocity_since timestamp,
    p_day_total bigint, p_month_total bigint, p_recent bigint,
    p_accounts text[], p_currencies text[], p_amounts bigint[],
    p_outbox text[], p_notify_at timestamp,
    p_now timestamp
) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
    v_version text;
    v_day bigint;
    v_month bigint;
    v_recent bigint;
    v_id int;
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
    -- The ledger entry through the one ledger writer; its overdraft guard refusing undoes everything.
    IF p_amounts IS NOT NULL
       AND tillpay_post_entry('payment', 'payment:' || v_id, v_id, NULL, p_now,
                              p_accounts, p_currencies, p_amounts) IS NULL THEN
        RAISE EXCEPTION 'overdraft guard' USING ERRCODE = 'TP003';
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
PAY = _PAY.replace("{PAYMENT_COLUMNS}", PAYMENT_COLUMNS)

PAY_SIGNATURE = (
    "tillpay_pay(jsonb, text[], int, bigint, int, boolean, int, text, timestamp, timestamp, timestamp, "
    "bigint, bigint, bigint, text[], text[], bigint[], text[], timestamp, timestamp)"
)


def _migration_0118() -> object:
    path = Path(__file__).with_name("0118_pay_at_once.py")
    spec = importlib.util.spec_from_file_location("tillpay_migration_0118", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(POST_ENTRY)
    op.execute(f"DROP FUNCTION IF EXISTS {OLD_PAY_SIGNATURE}")
    op.execute(PAY)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS {PAY_SIGNATURE}")
    op.execute(_migration_0118().FUNCTION)  # type: ignore[attr-defined]
    op.execute(f"DROP FUNCTION IF EXISTS {POST_ENTRY_SIGNATURE}")
