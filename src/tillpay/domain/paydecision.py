"""The pay decision: every rule a customer-presented-code payment passes, in one pure function.

A pay is decided in two steps with the same function, because the facts of the second step may only be
read with the customer's wallet row locked:

1. **Admission** (``PayFacts.gate``), read before the write transaction: the store or terminal
   switched off, the secondary merchant's registration, the terminal's wrong codes against the risk
   rule ``terminal_bad_codes``, the code itself (malformed, the (merchant, device) pair over its
   wrong-code limit, an unknown or inactive device, a code that matches no step or an expired one), the
   wallet, and the FX margin between the price and the wallet currency. The answer is ``REFUSE`` (with
   a code, and whether the wrong code counts) or ``ADMIT`` (with the code's step, the margin and the
   secondary merchant as recorded).
2. **The account** (``PayFacts.account``), read under the wallet lock: the risk rules in force, the
   customer's day/month/velocity totals and the balance. The answer is ``PAY``, ``CONFIRM`` (the
   customer is asked, with the rule that asked) or ``DECLINE`` (with a code). A confirmation runs this
   step again: a QR order with the rules (the customer is known only then), a payment the customer was
   asked about without them (the rules ran when it was asked; only the balance and the wallet's status
   may have changed since).

No I/O and no clock: the caller passes ``now`` and every count. Counting a wrong code and replaying a
repeated request are the caller's side effects around this function.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tillpay.domain import paycode, risk, secmerchant
from tillpay.domain.errors import Code, TillpayError

#: How many steps back a code is recognised as expired rather than made up.
EXPIRED_LOOKBACK_STEPS = 24 * 60


class PayVerdict(StrEnum):
    """What the decision says."""

    #: The request is refused before anything is written (a wrong code may be counted).
    REFUSE = "REFUSE"
    #: Admitted: go on to the write transaction and decide again with the account's facts.
    ADMIT = "ADMIT"
    PAY = "PAY"
    #: Ask the customer to confirm (``rule`` says why).
    CONFIRM = "CONFIRM"
    #: The payment is recorded and closes unpaid with ``code``.
    DECLINE = "DECLINE"


@dataclass(frozen=True, slots=True)
class Device:
    """The device a code names, as stored."""

    secret: bytes
    active: bool


@dataclass(frozen=True, slots=True)
class Gate:
    """What admission looks at, read before the write transaction."""

    #: Unix seconds now (the code's time step is derived from it).
    now_unix: int
    #: The code as sent.
    code: str
    #: The store and terminal the till sent.
    store_id: str | None
    terminal_id: str | None
    #: Whether that terminal, its store, or the store is switched off in the merchant console.
    disabled: bool
    #: The pay's secondary merchant and store as sent, and what is registered about them.
    secondary: secmerchant.SecondaryRef
    registered: secmerchant.Registered | None
    #: The scheme's and merchant's rules (the terminal block is not a per-customer rule).
    rules: risk.RiskConfig
    #: This terminal's wrong codes within the rule's ``terminal_window_minutes``.
    terminal_bad_codes: int
    #: This merchant's wrong codes for the code's device within the bad-code window.
    device_bad_codes: int
    #: ``max_bad_codes_per_device``.
    max_bad_codes_per_device: int
    #: The device the code names (None: no such device).
    device: Device | None
    #: The wallet's currency (None: the device has no wallet).
    wallet_currency: str | None
    #: The price's currency, and the stored margin between it and the wallet currency (None: not stored).
    price_currency: str
    margin_bps: int | None
    #: The scheme's margin where none is stored.
    default_margin_bps: int


@dataclass(frozen=True, slots=True)
class Account:
    """What the payment's own decision looks at, read with the customer's wallet row locked."""

    #: The rules in force (None: already applied when the customer was asked to confirm).
    rules: risk.RiskConfig | None
    #: The payment's amount, the customer's totals, balance and status, the merchant, the code's age.
    inputs: risk.RiskInputs


@dataclass(frozen=True, slots=True)
class PayFacts:
    """Everything one step of the decision needs (exactly one of the two is given)."""

    gate: Gate | None = None
    account: Account | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision."""

    verdict: PayVerdict
    #: REFUSE and DECLINE: the result code.
    code: Code | None = None
    #: REFUSE: the message for the client (None: the code's description).
    detail: str | None = None
    #: REFUSE: whether the request counts as a wrong code (against the merchant, device and terminal).
    counts_bad_code: bool = False
    #: REFUSE with ``counts_bad_code``: the device the wrong code named (None: a malformed code).
    device_no: int | None = None
    #: ADMIT: the code's time step and slot, the FX margin, the secondary merchant as recorded.
    step: int | None = None
    slot: int | None = None
    margin_bps: int = 0
    secondary: secmerchant.SecondaryRef | None = None
    #: PAY, CONFIRM, DECLINE when rules were applied: the risk decision to record.
    risk: risk.Decision | None = None

    @property
    def rule(self) -> str | None:
        """The rule that decided (CONFIRM and DECLINE), if rules were applied or the balance refused."""
        return self.risk.rule if self.risk is not None else None

    def error(self) -> TillpayError:
        """A refusal as the error the client sees."""
        assert self.code is not None
        return TillpayError(self.code, self.detail)


def _refuse(
    code: Code, detail: str | None = None, *, count: bool = False, device_no: int | None = None
) -> Outcome:
    return Outcome(PayVerdict.REFUSE, code, detail, counts_bad_code=count, device_no=device_no)


def admit(g: Gate) -> Outcome:
    """Admission: REFUSE or ADMIT, the checks in the order a client sees their codes."""
    # Stores and terminals the merchant disabled in its console cannot take payments.
    if g.disabled and (g.store_id or g.terminal_id):
        where = f"terminal {g.terminal_id}" if g.terminal_id else f"store {g.store_id}"
        return _refuse(Code.ILLEGAL_ARGUMENT, f"{where} is disabled in the merchant console")
    try:
        secondary = secmerchant.resolve(g.secondary, g.registered)
    except TillpayError as e:
        return _refuse(e.code, e.detail)
    # A terminal that sent too many invalid codes is blocked for the rule's window: a count over the
    # threshold (docs/risk-and-fx.md), whatever the code it sends now.
    limit = g.rules.terminal_bad_codes
    if g.terminal_id and limit and g.terminal_bad_codes >= limit:
        return _refuse(
            Code.CODE_ATTEMPTS_EXCEEDED,
            f"terminal {g.terminal_id} is blocked after {g.terminal_bad_codes} invalid codes; try again in "
            f"{g.rules.terminal_window_minutes} minutes",
        )
    try:
        parsed = paycode.parse(g.code)
    except paycode.MalformedCode:
        return _refuse(Code.INVALID_CODE, "not a Tillpay payment code", count=True)
    # Scoped to the (merchant, device) pair: wrong codes at another merchant never refuse the customer's
    # code here, and this merchant's wrong codes for other devices never refuse this one.
    if g.device_bad_codes >= g.max_bad_codes_per_device:
        return _refuse(
            Code.CODE_ATTEMPTS_EXCEEDED, "too many invalid codes for this wallet from this merchant"
        )
    if g.device is None or not g.device.active:
        return _refuse(Code.INVALID_CODE, count=True, device_no=parsed.device_no)
    step = paycode.match_step(g.device.secret, parsed, g.now_unix)
    if step is None:
        old = paycode.match_step(g.device.secret, parsed, g.now_unix, back=EXPIRED_LOOKBACK_STEPS, forward=0)
        if old is not None:
            return _refuse(Code.EXPIRED_CODE)  # a real code shown too late is not a guess: not counted
        return _refuse(Code.INVALID_CODE, count=True, device_no=parsed.device_no)
    if g.wallet_currency is None:
        return _refuse(Code.BUYER_NOT_EXIST)
    if g.price_currency == g.wallet_currency:
        margin = 0
    else:
        margin = g.margin_bps if g.margin_bps is not None else g.default_margin_bps
    return Outcome(PayVerdict.ADMIT, step=step, slot=parsed.slot, margin_bps=margin, secondary=secondary)


def settle(a: Account) -> Outcome:
    """The payment's own decision: PAY, CONFIRM or DECLINE."""
    x = a.inputs
    if a.rules is None:
        # The customer confirms a payment the rules already sent to them: only what may have changed
        # since counts (the wallet frozen, the balance spent by another payment).
        if not x.buyer_active:
            return Outcome(PayVerdict.DECLINE, Code.BUYER_FROZEN)
        if x.balance is not None and not risk.covers(x.balance, x.wallet_amount):
            return Outcome(PayVerdict.DECLINE, Code.BUYER_BALANCE_NOT_ENOUGH)
        return Outcome(PayVerdict.PAY)
    # A balance too low declines here, before any confirmation request (risk.evaluate).
    d = risk.evaluate(a.rules, x)
    if d.verdict is risk.Verdict.DECLINE:
        return Outcome(PayVerdict.DECLINE, d.code or Code.RISK_REJECT, risk=d)
    if d.verdict is risk.Verdict.CONFIRM:
        return Outcome(PayVerdict.CONFIRM, risk=d)
    return Outcome(PayVerdict.PAY, risk=d)


def decide(facts: PayFacts) -> Outcome:
    """One step of the pay decision: admission from ``gate``, or the payment's own from ``account``."""
    if (facts.gate is None) == (facts.account is None):
        raise ValueError("decide takes the gate's facts or the account's, one of them")
    if facts.gate is not None:
        return admit(facts.gate)
    assert facts.account is not None
    return settle(facts.account)
