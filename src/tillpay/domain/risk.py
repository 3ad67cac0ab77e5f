"""The risk engine: rules and limits are data; a decision is ALLOW, CONFIRM or DECLINE with a reason.

A configuration is a plain mapping (loaded from YAML or JSON by the operator) per scheme, with overrides
per merchant and per user. ``parse_config`` validates it, ``merge`` layers the overrides, ``evaluate``
decides from the configuration and the facts gathered for one payment (``RiskInputs``). Pure: the
service gathers the inputs (under the customer's wallet lock, so concurrent payments see each other).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import format_amount, parse_amount


class Verdict(StrEnum):
    """What may happen to a payment."""

    ALLOW = "ALLOW"
    CONFIRM = "CONFIRM"
    DECLINE = "DECLINE"


@dataclass(frozen=True)
class RiskConfig:
    """Every rule's parameters; ``None`` (or empty) switches a rule off."""

    #: Wallet-currency amounts above which the customer must confirm, per currency.
    confirm_above: dict[str, int] = field(default_factory=dict)
    #: Largest single payment, per wallet currency.
    per_payment_limit: dict[str, int] = field(default_factory=dict)
    #: Most a customer may pay per day / per month (scheme time zone), per wallet currency.
    daily_limit: dict[str, int] = field(default_factory=dict)
    monthly_limit: dict[str, int] = field(default_factory=dict)
    #: More than ``velocity_count`` payments in ``velocity_minutes`` → ``velocity_action``.
    velocity_count: int | None = None
    velocity_minutes: int = 10
    velocity_action: str = "CONFIRM"
    #: A device registered less than this many hours ago must confirm.
    new_device_hours: int | None = None
    #: A code at least ``offline_code_min_steps`` minutes old (an offline or stolen phone) must confirm.
    offline_code_confirm: bool = False
    #: 2: a code from the minute that just ended passes (it was on screen seconds ago: shown at :58,
    #: scanned at :01); only an older one, which the phone showed while offline or long ago, confirms.
    offline_code_min_steps: int = 2
    #: Merchant category codes whose payments are declined.
    blocked_mcc: frozenset[str] = frozenset()
    #: ``terminal_bad_codes`` invalid codes from one terminal within ``terminal_window_minutes`` block it.
    terminal_bad_codes: int | None = None
    terminal_window_minutes: int = 10


_AMOUNT_MAPS = ("confirm_above", "per_payment_limit", "daily_limit", "monthly_limit")
_INTS = (
    "velocity_count",
    "velocity_minutes",
    "new_device_hours",
    "offline_code_min_steps",
    "terminal_bad_codes",
    "terminal_window_minutes",
)
KNOWN_KEYS = frozenset(f.name for f in fields(RiskConfig))


def _bad(msg: str) -> TillpayError:
    return TillpayError(Code.ILLEGAL_ARGUMENT, f"risk rules: {msg}")


def parse_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one scope's rules (as written by the operator); return them normalised for storage.

    Amounts are written in major units as strings or integers (``"2000.00"``), per currency.
    Unknown keys, bad amounts and impossible values are refused with a message naming them.
    """
    if not isinstance(data, Mapping):
        raise _bad("a rule set is a mapping of rule names to values")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in KNOWN_KEYS:
            raise _bad(f"unknown rule {key!r}; known: {', '.join(sorted(KNOWN_KEYS))}")
        if key in _AMOUNT_MAPS:
            if not isinstance(value, Mapping):
                raise _bad(f"{key} maps currencies to amounts, e.g. {{CNY: '2000.00'}}")
            amounts = {}
            for cur, amount in value.items():
                text = str(amount)
                try:
                    minor = parse_amount(text, str(cur))
                except ValueError as e:
                    raise _bad(f"{key}.{cur}: {e}") from None
                amounts[str(cur)] = format_amount(minor, str(cur))
            out[key] = amounts
        elif key in _INTS:
            if value is None:
                out[key] = None
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if key in ("velocity_minutes", "offline_code_min_steps") else 0)
            ):
                raise _bad(f"{key} must be a non-negative whole number")
            out[key] = value
        elif key == "velocity_action":
            if value not in ("CONFIRM", "DECLINE"):
                raise _bad("velocity_action is CONFIRM or DECLINE")
            out[key] = value
        elif key == "offline_code_confirm":
            if not isinstance(value, bool):
                raise _bad("offline_code_confirm is true or false")
            out[key] = value
        elif key == "blocked_mcc":
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.isdigit() and len(v) == 4 for v in value
            ):
                raise _bad("blocked_mcc is a list of 4-digit codes as strings")
            out[key] = sorted(set(value))
    return out


def build(layers: Sequence[Mapping[str, Any]]) -> RiskConfig:
    """The effective configuration: later layers (merchant, then user) override earlier ones per rule."""
    cfg = RiskConfig()
    for layer in layers:
        changes: dict[str, Any] = {}
        for key, value in layer.items():
            if key in _AMOUNT_MAPS:
                merged = dict(getattr(cfg, key))
                merged.update({cur: parse_amount(amount, cur) for cur, amount in value.items()})
                changes[key] = merged
            elif key == "blocked_mcc":
                changes[key] = frozenset(value)
            else:
                changes[key] = value
        cfg = replace(cfg, **changes)
    return cfg


def to_text(cfg: RiskConfig) -> dict[str, Any]:
    """A configuration as the operator writes it (for ``tillpay risk show``)."""
    d = asdict(cfg)
    for key in _AMOUNT_MAPS:
        d[key] = {cur: format_amount(v, cur) for cur, v in getattr(cfg, key).items()}
    d["blocked_mcc"] = sorted(cfg.blocked_mcc)
    return d


@dataclass(frozen=True, slots=True)
class RiskInputs:
    """The facts about one payment that the rules look at."""

    wallet_amount: int
    wallet_currency: str
    #: Already paid or waiting today / this month, before this payment.
    day_total: int = 0
    month_total: int = 0
    #: Payments of this customer in the velocity window, before this one.
    recent_count: int = 0
    #: Seconds since the paying device was registered (None: not known, e.g. a QR order).
    device_age_seconds: int | None = None
    #: How many minutes old the payment code is (0: current minute).
    code_lag_steps: int = 0
    merchant_mcc: str = ""
    buyer_active: bool = True
    merchant_active: bool = True
    #: False when the customer is confirming anyway (paying a QR order with the PIN).
    may_confirm: bool = True
    #: The wallet's balance (wallet currency, read with the wallet row locked); None: not checked.
    balance: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, the rule that decided it, its reason code, and every rule that fired."""

    verdict: Verdict
    rule: str
    code: Code | None = None
    fired: tuple[str, ...] = ()

    @property
    def spends_code(self) -> bool:
        """Whether the payment uses up its payment code: not when only the balance refused it.

        Such a payment moved no money and never reached the customer, so the customer can top up and
        show the same code again.
        """
        return self.rule != BALANCE_RULE


#: The rule that refuses a payment the wallet's balance cannot cover.
BALANCE_RULE = "balance"


def covers(balance: int, wallet_amount: int) -> bool:
    """Whether a wallet's balance pays an amount; both in the wallet's currency (after any FX quote)."""
    return balance >= wallet_amount


def evaluate(cfg: RiskConfig, x: RiskInputs) -> Decision:
    """Decide: any declining rule wins, then any confirming rule, else ALLOW.

    A balance that cannot cover the payment declines it, so a payment that could never succeed is
    never sent to the customer to confirm; every other declining rule is reported before it (a top-up
    would not help those).
    """
    declines: list[tuple[str, Code]] = []
    confirms: list[str] = []
    cur = x.wallet_currency
    if not x.merchant_active:
        declines.append(("merchant_frozen", Code.MERCHANT_FROZEN))
    if not x.buyer_active:
        declines.append(("buyer_frozen", Code.BUYER_FROZEN))
    if x.merchant_mcc and x.merchant_mcc in cfg.blocked_mcc:
        declines.append(("blocked_mcc", Code.RISK_REJECT))
    limit = cfg.per_payment_limit.get(cur)
    if limit is not None and x.wallet_amount > limit:
        declines.append(("per_payment_limit", Code.PAYMENT_AMOUNT_EXCEED_LIMIT))
    limit = cfg.daily_limit.get(cur)
    if limit is not None and x.day_total + x.wallet_amount > limit:
        declines.append(("daily_limit", Code.DAY_LIMIT_EXCEEDED))
    limit = cfg.monthly_limit.get(cur)
    if limit is not None and x.month_total + x.wallet_amount > limit:
        declines.append(("monthly_limit", Code.MONTH_LIMIT_EXCEEDED))
    if cfg.velocity_count is not None and x.recent_count + 1 > cfg.velocity_count:
        if cfg.velocity_action == "DECLINE":
            declines.append(("velocity", Code.RISK_REJECT))
        else:
            confirms.append("velocity")
    if x.balance is not None and not covers(x.balance, x.wallet_amount):
        declines.append((BALANCE_RULE, Code.BUYER_BALANCE_NOT_ENOUGH))
    limit = cfg.confirm_above.get(cur)
    if limit is not None and x.wallet_amount > limit:
        confirms.append("amount_over_confirm_limit")
    if (
        cfg.new_device_hours is not None
        and x.device_age_seconds is not None
        and x.device_age_seconds < cfg.new_device_hours * 3600
    ):
        confirms.append("new_device")
    if cfg.offline_code_confirm and x.code_lag_steps >= cfg.offline_code_min_steps:
        confirms.append("offline_code")
    fired = tuple([name for name, _ in declines] + confirms)
    if declines:
        name, code = declines[0]
        return Decision(Verdict.DECLINE, name, code, fired)
    if confirms and x.may_confirm:
        return Decision(Verdict.CONFIRM, confirms[0], None, fired)
    return Decision(Verdict.ALLOW, "default", None, fired)


def inputs_json(x: RiskInputs) -> dict[str, Any]:
    """The inputs as stored with the decision (amounts stay integers in minor units)."""
    # Every field is a plain value, so a shallow copy is the same as asdict's deep one, at a tenth the cost.
    return {f.name: getattr(x, f.name) for f in _INPUT_FIELDS}


_INPUT_FIELDS = fields(RiskInputs)
