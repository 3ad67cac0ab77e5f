"""Settings, read once from the environment (prefix ``TILLPAY_``) and passed down explicitly."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.1.0.0/16, 127.0.0.0/8"`` → networks; ValueError names a wrong one."""
    out = []
    for item in text.split(","):
        if item.strip():
            try:
                out.append(ipaddress.ip_network(item.strip()))
            except ValueError as e:
                raise ValueError(f"not a network (CIDR) {item.strip()!r}: {e}") from None
    return tuple(out)


def parse_ports(text: str) -> frozenset[int]:
    """``"80,443,8000-8999"`` → ports; ValueError names a wrong item."""
    out: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        low, _, high = item.partition("-")
        try:
            a, b = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"not a port or range of ports: {item!r}") from None
        if not 1 <= a <= b <= 65535:
            raise ValueError(f"not a port or range of ports (1-65535): {item!r}")
        out.update(range(a, b + 1))
    if not out:
        raise ValueError("no port is allowed")
    return frozenset(out)


class Settings(BaseSettings):
    """Everything Tillpay can be configured with; nothing else reads ``os.environ``."""

    model_config = SettingsConfigDict(env_prefix="TILLPAY_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///tillpay.db"
    #: PostgreSQL connections each process opens at most and keeps open (SQLite: always one per
    #: process); a request that finds them all in use waits for one. Every process's pool must fit under
    #: the server's ``max_connections``.
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    #: ``production`` (the default) or ``sandbox``: only a sandbox serves self top-up in the wallet app and
    #: the console's test payments, and shows a banner on every page (docs/security.md). ``serve --demo``
    #: and ``serve --sandbox`` set it.
    mode: Literal["production", "sandbox"] = "production"
    #: The URL customers and merchants reach this server on; used in precreate QR URLs.
    public_url: str = "http://127.0.0.1:8000"
    #: Minutes before a payment nobody confirmed closes by itself (Alipay: 3 minutes).
    payment_timeout_seconds: int = 180
    #: Wallet-currency amounts above which the customer must confirm in the app, ``CUR:amount`` pairs.
    confirm_above: str = "CNY:2000.00,USD:300.00,EUR:300.00,JPY:40000,KRW:400000,HKD:2500.00,SGD:400.00"
    #: The scheme's time zone for risk limits: days and months start at midnight here.
    timezone: str = "Asia/Shanghai"
    #: FX margin (basis points) charged to the customer when no margin is loaded for the pair.
    fx_default_margin_bps: int = 0
    #: Rate for refunds of FX payments: ``original`` (the payment's locked quote) or ``refund_day``.
    fx_refund_policy: str = "original"
    #: Refunds are accepted for this many days after payment (Alipay: 360 days).
    refund_window_days: int = 360
    #: Wrong PIN entries before a pending confirmation is closed.
    max_pin_attempts: int = 3
    #: Wrong payment codes per (merchant, device) in ``bad_code_window_seconds`` before that merchant's
    #: codes for the device are refused; a merchant's wrong codes reaching the alert threshold in the
    #: window are logged and shown on its console, never refused for its other tills (docs/security.md).
    max_bad_codes_per_device: int = 5
    bad_code_window_seconds: int = 600
    bad_code_alert_threshold: int = 50
    #: Run notification delivery and expiry inside ``tillpay serve``.
    embedded_worker: bool = True
    worker_poll_seconds: float = 0.5  # float-ok: a sleep interval, not money
    #: Seconds between notification attempts; about 8 tries over 25 hours, like Alipay's schedule.
    notify_schedule: str = "0,240,600,600,3600,7200,21600,54000"
    #: One notification attempt's whole deadline: resolving, connecting, sending and reading the answer
    #: (docs/security.md). An endpoint that answers slowly is cut off after this.
    notify_timeout_seconds: float = 10.0  # float-ok: an HTTP timeout, not money
    #: Notifications one worker process delivers at once, and at most how many of them are one merchant's
    #: (so one merchant's slow endpoints never hold the others').
    notify_concurrency: int = 16
    notify_per_merchant: int = 4
    #: Networks (CIDRs, comma-separated) that notifications may reach although they are loopback,
    #: private, link-local or otherwise internal, e.g. ``10.20.0.0/16`` for merchants on a private network.
    #: Empty: only public addresses.
    notify_allow_networks: str = ""
    #: Ports notifications may go to: ports and ranges, e.g. ``80,443,8080,8443,9000-9099``.
    notify_allow_ports: str = "80,443,8080,8443"
    #: Sample batches ("send a sample of each kind") one merchant may ask for per minute, from the
    #: console or the CLI; one more is answered "try again in N s" (docs/console.md).
    notify_samples_per_minute: int = 3
    #: The console's Redeliver: one notification at most once per this many seconds, and a merchant's
    #: notifications at most ``redeliver_per_minute`` times a minute (docs/security.md).
    redeliver_interval_seconds: int = 60
    redeliver_per_minute: int = 20
    log_level: str = "info"
    #: A bearer token for ``/metrics`` (``Authorization: Bearer <token>``). Empty: a production server
    #: serves ``/metrics`` to loopback clients only, a sandbox to anyone (docs/operations.md).
    metrics_token: str = ""
    #: Serve ``/bench/noop`` (a signed answer without the database), for ``tillpay bench`` only.
    bench_routes: bool = False

    # Settlement (docs/settlement.md).
    #: The scheme's time zone: a business day and its cut-off are wall-clock times there.
    settlement_timezone: str = "UTC"
    #: When a business day closes, ``HH:MM`` local time from ``00:01`` to ``24:00`` (end of the day).
    settlement_cutoff: str = "24:00"
    #: Payouts are dated this many calendar days after the business day (T+N).
    settlement_days: int = 1
    #: Merchant discount rate in basis points for merchants without their own (``tillpay settle fee``).
    settlement_default_mdr_bps: int = 200
    #: Unsettled transactions older than the previous cut-off are looked for this many days back.
    settlement_lookback_days: int = 7
    #: Where settlement, transaction and bank files are written (and served from).
    settlement_dir: str = "settlements"
    #: The scheme's own bank account, the debtor of every payout (pain.001).
    payout_debtor_name: str = "Tillpay Scheme"
    payout_debtor_iban: str = "DE89370400440532013000"
    payout_debtor_bic: str = "COBADEFFXXX"
    #: How far a signed download request's ``timestamp`` may be from the server's clock.
    download_timestamp_tolerance_seconds: int = 900
    #: How far a signed gateway request's time (Antom ``request-time``, Open Platform and MAPI
    #: ``timestamp``) may be from the server's clock, either way (docs/security.md).
    request_time_tolerance_seconds: int = Field(default=900, ge=1)
    #: After ``merchant key-add`` or ``merchant md5-rotate``, how long the previous key still verifies.
    key_grace_seconds: int = Field(default=86400, ge=0)
    #: The wallet's name in MAPI ``payment_inst`` (Alipay answers ``ALIPAYCN`` or ``ALIPAYHK``; a scheme
    #: that mimics one for its tills may say so). Upper-case letters and digits, at most 32.
    payment_inst: str = "TILLPAY"

    @field_validator("notify_allow_networks")
    @classmethod
    def _notify_allow_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("notify_allow_ports")
    @classmethod
    def _notify_allow_ports(cls, value: str) -> str:
        parse_ports(value)
        return value

    @field_validator(
        "notify_timeout_seconds",
        "notify_concurrency",
        "notify_per_merchant",
        "notify_samples_per_minute",
        "redeliver_interval_seconds",
        "redeliver_per_minute",
    )
    @classmethod
    def _positive(cls, value: float) -> float:  # float-ok: seconds or counts
        if value <= 0:
            raise ValueError("must be above 0")
        return value

    @field_validator("payment_inst")
    @classmethod
    def _payment_inst(cls, value: str) -> str:
        if not value or len(value) > 32 or not value.isascii() or not value.isalnum() or not value.isupper():
            raise ValueError("payment_inst is 1-32 upper-case letters and digits, e.g. ALIPAYCN")
        return value

    # Terminal heartbeats (docs/heartbeat.md).
    #: A terminal whose latest heartbeat is older than this is flagged as gone quiet in the console
    #: (a few of the ECR's default 60-second intervals).
    heartbeat_quiet_seconds: int = 300
    #: Most terminals one merchant may report heartbeats for (registered or not); a beat from one more
    #: new terminal id is refused, so the table stays bounded.
    heartbeat_max_terminals: int = 1000

    @property
    def sandbox(self) -> bool:
        """True when sandbox features (self top-up, test payments) are on."""
        return self.mode == "sandbox"

    # Load limits (docs/security.md).
    #: Threads that hash passwords and PINs, and how many more hashes may wait; one more is answered
    #: HTTP 429 at once ("try again"), so sign-in floods cannot stall payments.
    hash_threads: int = 2
    hash_queue: int = 16
    #: Largest request body, checked on ``Content-Length`` and again while the body streams in (413).
    max_body_bytes: int = 1_048_576
    #: A request's headers, and separately its body, must arrive within these many seconds; an idle
    #: keep-alive connection is closed after ``keep_alive_seconds``.
    header_timeout_seconds: float = 10.0  # float-ok: a timeout, not money
    body_timeout_seconds: float = 30.0  # float-ok: a timeout, not money
    keep_alive_seconds: int = 5
    #: Most connections and running requests per server process; beyond, uvicorn answers 503.
    limit_concurrency: int = 1000
    #: Largest request head (line and headers) in bytes.
    max_header_bytes: int = 16384
    #: Proxies whose ``X-Forwarded-For`` names the client (comma-separated addresses, ``*`` for any):
    #: sign-in limits per client address need the real address behind a reverse proxy.
    forwarded_allow_ips: str = "127.0.0.1"
    #: Wrong PINs in a row, across all payments, before the customer's PIN is locked until the
    #: customer signs in again with the password or an operator runs ``tillpay wallet unlock-pin``.
    max_pin_failures: int = 5


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
