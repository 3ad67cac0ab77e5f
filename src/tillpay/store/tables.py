"""The schema, as SQLAlchemy Core tables (the Alembic migrations create exactly this)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes, stored naive in UTC (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


Money = BigInteger  # minor units; never float

merchants = Table(
    "merchants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("partner_id", String(16), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("md5_key", String(64), nullable=False),
    #: The merchant's RSA public key (PEM), used to verify its RSA/RSA2 requests.
    Column("public_key", Text),
    #: Tillpay's key pair for this merchant: responses and notifications are signed with it.
    Column("gateway_private_key", Text, nullable=False),
    Column("gateway_public_key", Text, nullable=False),
    Column("settlement_currency", String(3), nullable=False),
    Column("notify_url", String(256)),
    Column("mcc", String(4), nullable=False, server_default="5411"),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", UTCDateTime, nullable=False),
    #: The merchant's Alipay Open Platform ``app_id`` (face-to-face dialect), 16 digits.
    Column("app_id", String(32), unique=True),
    #: The merchant's Antom ``Client-Id``; its public keys per ``keyVersion`` are in ``merchant_keys``.
    Column("client_id", String(64), unique=True),
    #: The sign types the merchant may use, comma-separated (``MD5,RSA2``); NULL: every one the dialect
    #: takes. Taking MD5 away disables the MD5 key.
    Column("sign_types", String(32)),
    #: The MD5 key before the last rotation, still accepted on requests until ``md5_key_previous_until``.
    Column("md5_key_previous", String(64)),
    Column("md5_key_previous_until", UTCDateTime),
    #: Set on a test merchant (test credentials beside a live merchant's): the live merchant's id. A test
    #: merchant takes sandbox money only, and nothing of it is settled or paid out (docs/sandbox.md).
    Column("test_of", Integer, ForeignKey("merchants.id"), unique=True),
    #: A test merchant's clock runs this many seconds ahead of real time; always 0 for a live merchant.
    Column("clock_offset_seconds", BigInteger, nullable=False, server_default="0"),
)

wallet_users = Table(
    "wallet_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("login_id", String(64), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("pin_hash", String(128), nullable=False),
    Column("password_hash", String(256)),
    #: Kept equal to the sum of the wallet's postings; changed only in the same transaction.
    Column("balance", Money, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", UTCDateTime, nullable=False),
    #: A sandbox wallet (the console's test payments, a self top-up): money made up by a sandbox feature.
    #: Its payments and their refunds are never settled or paid out (services/settlement.py, audited).
    Column("sandbox", Boolean, nullable=False, server_default=false()),
    #: Wrong PINs in a row across all payments; at ``max_pin_failures`` the PIN is locked (unlocked by a
    #: password sign-in or ``tillpay wallet unlock-pin``).
    Column("pin_failures", Integer, nullable=False, server_default="0"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    #: The 8 digits inside every payment code of this device, so the server finds it in O(1).
    Column("device_no", Integer, nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("wallet_users.id"), nullable=False, index=True),
    Column("secret", LargeBinary(64), nullable=False),
    Column("name", String(64), nullable=False, server_default="device"),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", UTCDateTime, nullable=False),
)

code_uses = Table(
    "code_uses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("slot", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    #: A code is accepted exactly once: concurrent pays with one code race on this constraint.
    UniqueConstraint("device_id", "step", "slot", name="uq_code_uses_device_step_slot"),
)

bad_codes = Table(
    "bad_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, nullable=False),
    Column("device_no", Integer),
    Column("terminal_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_bad_codes_device_time", "device_no", "created_at"),
    Index("ix_bad_codes_terminal_time", "merchant_id", "terminal_id", "created_at"),
    Index("ix_bad_codes_merchant_time", "merchant_id", "created_at"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trade_no", String(64), nullable=False, unique=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("partner_trans_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # barcode | precreate | tombstone
    Column("dialect", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("result_code", String(48)),  # why a closed payment closed
    Column("request_digest", String(64), nullable=False),
    Column("subject", String(256), nullable=False, server_default=""),
    Column("price_amount", Money, nullable=False),
    Column("price_currency", String(3), nullable=False),
    Column("settle_amount", Money, nullable=False),
    Column("settle_currency", String(3), nullable=False),
    Column("wallet_amount", Money),
    Column("wallet_currency", String(3)),
    Column("settle_rate", String(32), nullable=False),
    Column("wallet_rate", String(32)),
    #: The quote's parts: the mid rate price→wallet, the margin applied, and the margin's amount in the
    #: wallet currency (the customer pays wallet_amount = mid amount + margin_amount).
    Column("wallet_mid_rate", String(32)),
    Column("margin_bps", Integer, nullable=False, server_default="0"),
    Column("margin_amount", Money, nullable=False, server_default="0"),
    Column("refunded_price", Money, nullable=False, server_default="0"),
    Column("refunded_settle", Money, nullable=False, server_default="0"),
    Column("refunded_wallet", Money, nullable=False, server_default="0"),
    Column("user_id", Integer, ForeignKey("wallet_users.id")),
    Column("device_id", Integer, ForeignKey("devices.id")),
    Column("risk_rule", String(64)),
    Column("pin_attempts", Integer, nullable=False, server_default="0"),
    Column("notify_url", String(256)),
    #: How notifications about this payment are signed (the sign type of the request that created it).
    Column("sign_type", String(8), nullable=False, server_default="RSA2"),
    Column("store_id", String(64)),
    Column("terminal_id", String(64)),
    Column("memo", String(256)),
    #: The secondary merchant the pay named (MAPI ``extend_info``), as sent or filled from its
    #: registration (``secondary_merchants``); the settlement files and notifications show them.
    Column("secondary_merchant_id", String(64)),
    Column("secondary_merchant_name", String(128)),
    Column("secondary_merchant_industry", String(4)),
    Column("store_name", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("paid_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    UniqueConstraint("merchant_id", "partner_trans_id", name="uq_payments_merchant_ptid"),
    Index("ix_payments_status_expires", "status", "expires_at"),
    Index("ix_payments_user_status", "user_id", "status"),
    Index("ix_payments_user_created", "user_id", "created_at"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("refund_no", String(64), nullable=False, unique=True),
    Column("payment_id", Integer, ForeignKey("payments.id"), nullable=False, index=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("partner_refund_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # refund | cancel
    Column("request_digest", String(64), nullable=False),
    Column("price_amount", Money, nullable=False),
    Column("price_currency", String(3), nullable=False),
    Column("settle_amount", Money, nullable=False),
    Column("wallet_amount", Money, nullable=False),
    #: The part of wallet_amount that returns the payment's FX margin, and the scheme's FX gain (+) or
    #: loss (-) in the wallet currency when the refund used the day's rate instead of the locked one.
    Column("margin_amount", Money, nullable=False, server_default="0"),
    Column("fx_gain", Money, nullable=False, server_default="0"),
    Column("rate_policy", String(16), nullable=False, server_default="original"),
    Column("reason", String(128)),
    Column("notify_url", String(256)),
    Column("sign_type", String(8), nullable=False, server_default="RSA2"),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "partner_refund_id", name="uq_refunds_merchant_prid"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # topup | payment | refund | payout
    #: ``payment:<id>``, ``refund:<id>``, ``topup:<reference>``: each is posted exactly once.
    Column("ref", String(96), nullable=False, unique=True),
    Column("payment_id", Integer, ForeignKey("payments.id")),
    Column("memo", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
)

postings = Table(
    "postings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entry_id", Integer, ForeignKey("journal_entries.id"), nullable=False, index=True),
    Column("account", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("amount", Money, nullable=False),
)

fx_rates = Table(
    "fx_rates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("base", String(3), nullable=False),
    Column("quote", String(3), nullable=False),
    Column("rate", String(32), nullable=False),  # exact decimal text
    Column("effective_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_fx_rates_pair_time", "base", "quote", "effective_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    #: Stable across retries so the merchant can drop duplicates.
    Column("notify_id", String(64), nullable=False, unique=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("payment_id", Integer, ForeignKey("payments.id")),
    Column("refund_id", Integer, ForeignKey("refunds.id")),
    Column("event", String(32), nullable=False),
    Column("dialect", String(16), nullable=False),
    Column("url", String(256), nullable=False),
    Column("sign_type", String(8), nullable=False),
    #: The notification's fields as JSON, fixed when the event happened; signed at each delivery.
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    #: The X-Request-Id of the request whose change this tells of (None: not caused by a request).
    Column("request_id", String(128)),
    #: When the console last queued it again (Redeliver), for Redeliver's rate limits; None: never.
    Column("redelivered_at", UTCDateTime),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)

notify_attempts = Table(
    "notify_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("outbox_id", Integer, ForeignKey("outbox.id"), nullable=False, index=True),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("http_status", Integer),
    Column("response", String(512)),
    Column("error", String(512)),
    #: The request as sent: the headers Tillpay set (JSON object) and the body, cut at
    #: outbox.REQUEST_BODY_CHARS (None: recorded before the notification inspector).
    Column("request_headers", Text),
    Column("request_body", Text),
)

#: Each sample batch and each redelivery a merchant asked for, counted for the per-merchant rate limit
#: (``services.samples``).
notify_requests = Table(
    "notify_requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("action", String(16), nullable=False),  # samples | redeliver
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_notify_requests_recent", "merchant_id", "action", "created_at"),
)

risk_settings = Table(
    "risk_settings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(16), nullable=False),  # scheme | merchant | user
    Column("subject", String(64), nullable=False),  # "" | partner id | login id
    Column("config", Text, nullable=False),  # JSON, as validated by domain.risk.parse_config
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("scope", "subject", name="uq_risk_settings_scope_subject"),
)

risk_decisions = Table(
    "risk_decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("payment_id", Integer, ForeignKey("payments.id"), nullable=False, unique=True),
    Column("verdict", String(8), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("code", String(48)),
    Column("fired", Text, nullable=False),  # JSON list of every rule that fired
    Column("inputs", Text, nullable=False),  # JSON of the facts the rules saw
    Column("config", Text, nullable=False),  # JSON of the effective rules at that moment
    Column("created_at", UTCDateTime, nullable=False),
)

fx_margins = Table(
    "fx_margins",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("base", String(3), nullable=False),
    Column("quote", String(3), nullable=False),
    Column("bps", Integer, nullable=False),
    Column("effective_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_fx_margins_pair_time", "base", "quote", "effective_at"),
)

merchant_keys = Table(
    "merchant_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    #: Antom's ``keyVersion``: a merchant rotates keys by adding a version; old versions keep verifying.
    Column("key_version", Integer, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    #: After this a request naming the version is refused (set on the older versions when a new key is
    #: added: ``TILLPAY_KEY_GRACE_SECONDS``); ``revoked_at``: refused from then on.
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    UniqueConstraint("merchant_id", "key_version", name="uq_merchant_keys_merchant_version"),
)

# ------------------------------------------------------------------------------ wallet app

#: A signed-in wallet app: the cookie carries a random token, the table only its SHA-256.
wallet_sessions = Table(
    "wallet_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("wallet_users.id"), nullable=False, index=True),
    #: The browser's own device: its payment codes, and the session ends when the device is revoked.
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False, index=True),
    #: Every state-changing request of the session must echo this token.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

#: Which browser holds which device: a long-lived cookie token, so signing in again reuses the device.
wallet_browsers = Table(
    "wallet_browsers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_agent", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
)

#: Failed wallet sign-ins, counted per login id to slow down password guessing.
wallet_login_failures = Table(
    "wallet_login_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("login_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_wallet_login_failures_login_time", "login_id", "created_at"),
    #: The client address, and the user's own device when the browser proved it (a trusted device).
    Column("client", String(64)),
    Column("device_id", Integer),
    Index("ix_wallet_login_failures_client_time", "client", "created_at"),
)


# ------------------------------------------------------------------------------ settlement

# Settlement selects a merchant's unsettled payments and refunds below a cut-off; these keep that a
# range scan instead of a pass over the whole history.
Index("ix_payments_merchant_paid", payments.c.merchant_id, payments.c.paid_at)
Index("ix_refunds_merchant_created", refunds.c.merchant_id, refunds.c.created_at)

#: The merchant discount rate in basis points (NULL: the scheme default) and the payout account.
merchants.append_column(Column("mdr_bps", Integer))
merchants.append_column(Column("payee_name", String(70)))
merchants.append_column(Column("payee_iban", String(34)))
merchants.append_column(Column("payee_bic", String(11)))

settlement_batches = Table(
    "settlement_batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    #: The business day this batch closes, in the scheme's time zone.
    Column("settle_date", Date, nullable=False),
    #: Everything of the merchant that happened before this instant and was not settled yet.
    Column("cutoff_at", UTCDateTime, nullable=False),
    #: The merchant as it was when the day closed, so regenerated files are byte-identical.
    Column("merchant_name", String(128), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("mdr_bps", Integer, nullable=False),
    Column("payment_count", Integer, nullable=False),
    Column("refund_count", Integer, nullable=False),
    Column("reversal_count", Integer, nullable=False),
    Column("payments_amount", Money, nullable=False),
    Column("refunds_amount", Money, nullable=False),
    Column("reversals_amount", Money, nullable=False),
    #: Fees on payments less fees returned on reversals (a refund keeps its fee).
    Column("fee", Money, nullable=False),
    #: payments - refunds - reversals - fee; may be negative.
    Column("net", Money, nullable=False),
    #: A negative balance brought from the merchant's previous batch (0 or less).
    Column("carried_in", Money, nullable=False),
    #: max(0, net + carried_in): what moves to settlement clearing and is paid out.
    Column("payout_amount", Money, nullable=False),
    Column("payout_date", Date, nullable=False),
    #: none (nothing to pay) | scheduled | held (no bank account yet) | paid
    Column("payout_status", String(16), nullable=False),
    Column("payout_run_date", Date),
    Column("payee_name", String(70)),
    Column("payee_iban", String(34)),
    Column("payee_bic", String(11)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("paid_at", UTCDateTime),
    UniqueConstraint("merchant_id", "currency", "settle_date", name="uq_settlement_batches_merchant_day"),
    Index("ix_settlement_batches_payout", "payout_status", "payout_date"),
)

settlement_items = Table(
    "settlement_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("batch_id", Integer, ForeignKey("settlement_batches.id"), nullable=False, index=True),
    Column("kind", String(1), nullable=False),  # P payment | R refund | C cancellation (reversal)
    #: ``payment:<id>`` or ``refund:<id>``, as in journal_entries.ref: each settles exactly once.
    Column("ref", String(32), nullable=False, unique=True),
    Column("payment_id", Integer, ForeignKey("payments.id"), nullable=False),
    Column("refund_id", Integer, ForeignKey("refunds.id")),
    #: In the settlement currency, always positive; the kind gives the direction.
    Column("amount", Money, nullable=False),
    #: Charged on a payment, returned on a cancellation, 0 on a refund; positive.
    Column("fee", Money, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
)

settlement_runs = Table(
    "settlement_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    #: Once a day has run it is closed: running it again only rewrites the same files.
    Column("settle_date", Date, nullable=False, unique=True),
    Column("cutoff_at", UTCDateTime, nullable=False),
    Column("batch_count", Integer, nullable=False),
    Column("payout_count", Integer, nullable=False),
    #: The scheme's account the payouts of this run were sent from (pain.001 debtor).
    Column("debtor_name", String(70), nullable=False),
    Column("debtor_iban", String(34), nullable=False),
    Column("debtor_bic", String(11), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

settlement_files = Table(
    "settlement_files",
    metadata,
    Column("id", Integer, primary_key=True),
    #: Path below the settlement directory, e.g. ``2026-11-25/2088.../2088..._settlement_20261125_USD.txt``.
    Column("name", String(160), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # settlement | transaction | pain001
    Column("merchant_id", Integer, ForeignKey("merchants.id")),
    Column("batch_id", Integer, ForeignKey("settlement_batches.id")),
    Column("settle_date", Date, nullable=False, index=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


# ------------------------------------------------------------------------------ merchant console

#: People who sign in to a merchant's console; each belongs to exactly one merchant.
console_users = Table(
    "console_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False, index=True),
    #: An e-mail-like login, unique across merchants so sign-in needs no merchant id.
    Column("login", String(128), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("role", String(24), nullable=False),  # owner | manager | cashier-supervisor | read-only
    #: argon2id (services/console_auth.py).
    Column("password_hash", String(256), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),  # active | disabled
    Column("created_at", UTCDateTime, nullable=False),
)

#: A signed-in console browser: the cookie carries a random token, the table only its SHA-256.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("console_users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    #: Absolute end of the session; it also ends after CONSOLE_IDLE of inactivity (last_seen_at).
    Column("expires_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    #: The console's "Test data / Live data" switch: true shows the test merchant's data (docs/console.md).
    Column("test_mode", Boolean, nullable=False, server_default=false()),
)

#: Failed console sign-ins, counted per login and per client address to slow down guessing.
console_login_failures = Table(
    "console_login_failures",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("login", String(128), nullable=False),
    Column("client", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_console_login_failures_login_time", "login", "created_at"),
    Index("ix_console_login_failures_client_time", "client", "created_at"),
)

#: A merchant's stores, keyed by the ``store_id`` its tills send (MAPI ``extend_info``).
stores = Table(
    "stores",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("store_id", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),  # active | disabled
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "store_id", name="uq_stores_merchant_store"),
)

#: A merchant's terminals, keyed by the ``terminal_id`` its tills send; a disabled one cannot pay.
terminals = Table(
    "terminals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("terminal_id", String(64), nullable=False),
    Column("store_id", String(64)),
    Column("name", String(128), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),  # active | disabled
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "terminal_id", name="uq_terminals_merchant_terminal"),
)

#: Secondary merchants an acquirer or ISV (a Tillpay merchant) registered through MAPI's
#: ``alipay.overseas.secmerchant.offline.maintain``; scoped by the merchant, keyed by its own id.
secondary_merchants = Table(
    "secondary_merchants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("secondary_merchant_id", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("merchant_type", String(16)),  # INDIVIDUAL | ENTERPRISE
    Column("registration_no", String(64)),
    Column("register_country", String(2)),
    Column("register_address", String(256)),
    Column("shareholder_name", String(64)),
    Column("shareholder_id", String(64)),
    Column("representative_name", String(64)),
    Column("representative_id", String(64)),
    Column("settlement_no", String(64)),
    Column("contact_no", String(64)),
    Column("contact_email", String(128)),
    Column("cs_no", String(64)),
    Column("cs_email", String(128)),
    Column("status", String(16), nullable=False, server_default="active"),  # active | disabled
    Column("reject_reason", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("merchant_id", "secondary_merchant_id", name="uq_secondary_merchants_merchant_smid"),
)

#: The stores of a secondary merchant: Alipay keys a store by partner + secondary merchant + store id.
secondary_stores = Table(
    "secondary_stores",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("secondary_merchant_id", String(64), nullable=False),
    Column("store_id", String(64), nullable=False),
    Column("store_name", String(256), nullable=False),
    Column("store_country", String(2), nullable=False),
    Column("store_address", String(256), nullable=False),
    Column("store_industry", String(4), nullable=False),
    Column("internal_store_photo", String(512)),
    Column("external_storefront_photo", String(512)),
    Column("extend_params", Text),
    Column("status", String(16), nullable=False, server_default="active"),  # active | disabled
    Column("reject_reason", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "merchant_id", "secondary_merchant_id", "store_id", name="uq_secondary_stores_merchant_smid_store"
    ),
)

# The console lists a merchant's payments newest first and filters them by store and terminal.
Index("ix_payments_merchant_created", payments.c.merchant_id, payments.c.created_at)
Index("ix_outbox_merchant_created", outbox.c.merchant_id, outbox.c.created_at)

#: Each terminal's latest heartbeat (docs/heartbeat.md): one row per (merchant, terminal id), updated in
#: place by every beat, so the table grows with the number of terminals, never with time. Terminals that
#: are not registered in ``terminals`` get rows too, up to ``Settings.heartbeat_max_terminals`` per merchant.
terminal_heartbeats = Table(
    "terminal_heartbeats",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("terminal_id", String(64), nullable=False),
    Column("store_id", String(64)),
    Column("secondary_merchant_id", String(64)),
    Column("equipment_type", String(32)),
    Column("network_type", String(16)),
    Column("action", String(32)),  # SIGNON | SIGNOFF | ... as the terminal sent it
    Column("scene_code", String(64)),
    #: The terminal's own time for the beat (the ``reqTime`` header); its clock may be wrong.
    Column("reported_at", UTCDateTime),
    #: The latest recorded beat's time as the terminal signed it (the body's ``reqTime``, Tillpay's
    #: addition): a beat not newer than this is a replay and is not recorded. None: never signed.
    Column("signed_at", UTCDateTime),
    #: Tillpay's clock: when the first and the latest beat arrived.
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("beats", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("merchant_id", "terminal_id", name="uq_terminal_heartbeats_merchant_terminal"),
)

#: What a magic payment code (domain/magic.py, docs/sandbox.md) still has to do after its pay: the
#: customer's answer to a confirmation at ``due_at`` on the merchant's clock (``confirm``, ``reject``), or
#: ``remaining`` deliveries of the payment's notification to record as failed (``fail_notify``). Only
#: sandbox payments (a sandbox wallet paying) ever have rows here.
sandbox_actions = Table(
    "sandbox_actions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("payment_id", Integer, ForeignKey("payments.id"), nullable=False),
    Column("merchant_id", Integer, ForeignKey("merchants.id"), nullable=False),
    Column("action", String(16), nullable=False),  # confirm | reject | fail_notify
    #: confirm, reject: when the customer answers, on the merchant's clock (``Merchant.clock``).
    Column("due_at", UTCDateTime),
    #: fail_notify: deliveries still to record as failed.
    Column("remaining", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
    UniqueConstraint("payment_id", "action", name="uq_sandbox_actions_payment_action"),
    Index("ix_sandbox_actions_open", "done_at", "action"),
)
