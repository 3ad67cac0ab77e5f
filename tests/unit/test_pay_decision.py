"""The pay decision (domain/paydecision.py): every branch of admission and of the payment's own decision."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tillpay.domain import paycode
from tillpay.domain.errors import Code
from tillpay.domain.paydecision import (
    Account,
    Device,
    Gate,
    Outcome,
    PayFacts,
    PayVerdict,
    decide,
)
from tillpay.domain.risk import RiskConfig, RiskInputs
from tillpay.domain.secmerchant import Registered, SecondaryRef

SECRET = b"device-secret-0001"
DEVICE_NO = 4242
NOW = 1_800_000_000  # unix seconds
CODE = paycode.generate(SECRET, DEVICE_NO, NOW, slot=3)


def gate(**changes: Any) -> Gate:
    base = Gate(
        now_unix=NOW,
        code=CODE,
        store_id=None,
        terminal_id=None,
        disabled=False,
        secondary=SecondaryRef(),
        registered=None,
        rules=RiskConfig(),
        terminal_bad_codes=0,
        device_bad_codes=0,
        max_bad_codes_per_device=5,
        device=Device(SECRET, True),
        wallet_currency="CNY",
        price_currency="CNY",
        margin_bps=None,
        default_margin_bps=150,
    )
    return replace(base, **changes)


def admit(**changes: Any) -> Outcome:
    return decide(PayFacts(gate=gate(**changes)))


def settle(rules: RiskConfig | None, **inputs: Any) -> Outcome:
    x = RiskInputs(**{"wallet_amount": 1000, "wallet_currency": "CNY", "balance": 5000, **inputs})
    return decide(PayFacts(account=Account(rules, x)))


# -------------------------------------------------------------------------------------------- admission


def test_a_valid_code_is_admitted_with_its_step_slot_and_no_margin_in_one_currency() -> None:
    out = decide(PayFacts(gate=gate()))
    assert out.verdict is PayVerdict.ADMIT
    assert (out.step, out.slot, out.margin_bps) == (paycode.step_at(NOW), 3, 0)
    assert out.secondary == SecondaryRef() and out.code is None


def test_a_code_from_the_minute_before_is_still_admitted() -> None:
    code = paycode.generate(SECRET, DEVICE_NO, NOW - 60, slot=0)
    out = decide(PayFacts(gate=gate(code=code)))
    assert out.verdict is PayVerdict.ADMIT and out.step == paycode.step_at(NOW) - 1


def test_a_stored_margin_applies_between_currencies_else_the_scheme_default() -> None:
    stored = decide(PayFacts(gate=gate(price_currency="USD", margin_bps=75)))
    default = decide(PayFacts(gate=gate(price_currency="USD", margin_bps=None)))
    same = decide(PayFacts(gate=gate(price_currency="CNY", margin_bps=75)))
    assert (stored.margin_bps, default.margin_bps, same.margin_bps) == (75, 150, 0)


def test_a_disabled_terminal_is_refused_by_name_and_not_counted() -> None:
    out = decide(PayFacts(gate=gate(disabled=True, store_id="S1", terminal_id="T1")))
    assert (out.verdict, out.code) == (PayVerdict.REFUSE, Code.ILLEGAL_ARGUMENT)
    assert out.detail == "terminal T1 is disabled in the merchant console" and not out.counts_bad_code


def test_a_disabled_store_without_a_terminal_is_refused_by_the_store_name() -> None:
    out = decide(PayFacts(gate=gate(disabled=True, store_id="S1")))
    assert out.code is Code.ILLEGAL_ARGUMENT and out.detail == "store S1 is disabled in the merchant console"


def test_disabled_means_nothing_when_the_till_sent_no_store_or_terminal() -> None:
    assert decide(PayFacts(gate=gate(disabled=True))).verdict is PayVerdict.ADMIT


def test_a_disabled_secondary_merchant_is_refused_and_a_registered_one_completes_the_record() -> None:
    sent = SecondaryRef(secondary_merchant_id="MID_1", store_id="S1")
    off = Registered("Shop", False, None, None, None)
    refused = decide(PayFacts(gate=gate(secondary=sent, registered=off)))
    assert (refused.verdict, refused.code) == (PayVerdict.REFUSE, Code.ILLEGAL_ARGUMENT)
    assert "MID_1" in (refused.detail or "") and not refused.counts_bad_code
    on = Registered("Shop", True, "Front", "5499", True)
    admitted = decide(PayFacts(gate=gate(secondary=sent, registered=on)))
    assert admitted.secondary is not None
    assert (admitted.secondary.secondary_merchant_name, admitted.secondary.store_name) == ("Shop", "Front")
    assert admitted.secondary.secondary_merchant_industry == "5499"


def test_a_terminal_at_its_count_of_wrong_codes_is_blocked_whatever_code_it_sends() -> None:
    rules = RiskConfig(terminal_bad_codes=3, terminal_window_minutes=7)
    out = decide(PayFacts(gate=gate(rules=rules, terminal_id="T9", terminal_bad_codes=3)))
    assert (out.verdict, out.code) == (PayVerdict.REFUSE, Code.CODE_ATTEMPTS_EXCEEDED)
    assert out.detail == "terminal T9 is blocked after 3 invalid codes; try again in 7 minutes"
    assert not out.counts_bad_code


def test_a_terminal_below_its_count_or_without_the_rule_or_id_is_not_blocked() -> None:
    rules = RiskConfig(terminal_bad_codes=3)
    assert admit(rules=rules, terminal_id="T9", terminal_bad_codes=2).verdict is PayVerdict.ADMIT
    assert admit(rules=RiskConfig(), terminal_id="T9", terminal_bad_codes=9).verdict is PayVerdict.ADMIT
    assert admit(rules=rules, terminal_id=None, terminal_bad_codes=9).verdict is PayVerdict.ADMIT


def test_a_malformed_code_is_refused_and_counted_without_a_device() -> None:
    out = decide(PayFacts(gate=gate(code="12345", device=None)))
    assert (out.verdict, out.code, out.detail) == (
        PayVerdict.REFUSE,
        Code.INVALID_CODE,
        "not a Tillpay payment code",
    )
    assert out.counts_bad_code and out.device_no is None


def test_a_device_at_its_wrong_code_limit_at_this_merchant_is_refused_uncounted() -> None:
    out = decide(PayFacts(gate=gate(device_bad_codes=5)))
    assert (out.verdict, out.code) == (PayVerdict.REFUSE, Code.CODE_ATTEMPTS_EXCEEDED)
    assert not out.counts_bad_code
    assert decide(PayFacts(gate=gate(device_bad_codes=4))).verdict is PayVerdict.ADMIT


def test_an_unknown_or_inactive_device_is_an_invalid_code_counted_against_it() -> None:
    for device in (None, Device(SECRET, False)):
        out = decide(PayFacts(gate=gate(device=device)))
        assert (out.verdict, out.code) == (PayVerdict.REFUSE, Code.INVALID_CODE)
        assert out.counts_bad_code and out.device_no == DEVICE_NO


def test_a_code_that_matches_no_step_is_invalid_and_counted() -> None:
    out = decide(PayFacts(gate=gate(device=Device(b"another-secret", True))))
    assert (out.verdict, out.code, out.counts_bad_code) == (PayVerdict.REFUSE, Code.INVALID_CODE, True)


def test_a_real_code_shown_hours_late_is_expired_and_not_counted() -> None:
    old = paycode.generate(SECRET, DEVICE_NO, NOW - 3 * 3600)
    out = decide(PayFacts(gate=gate(code=old)))
    assert (out.verdict, out.code, out.counts_bad_code) == (PayVerdict.REFUSE, Code.EXPIRED_CODE, False)


def test_a_device_without_a_wallet_is_refused_as_no_buyer() -> None:
    out = decide(PayFacts(gate=gate(wallet_currency=None)))
    assert (out.verdict, out.code) == (PayVerdict.REFUSE, Code.BUYER_NOT_EXIST)


def test_checks_come_in_the_order_the_client_sees_their_codes() -> None:
    # Disabled before the terminal block, the terminal block before the code, the pair limit before the
    # device, everything before the margin.
    blocked = RiskConfig(terminal_bad_codes=1)
    out = decide(
        PayFacts(
            gate=gate(
                disabled=True, terminal_id="T1", rules=blocked, terminal_bad_codes=5, code="x", device=None
            )
        )
    )
    assert out.code is Code.ILLEGAL_ARGUMENT
    out = decide(PayFacts(gate=gate(terminal_id="T1", rules=blocked, terminal_bad_codes=5, code="x")))
    assert out.code is Code.CODE_ATTEMPTS_EXCEEDED and "T1" in (out.detail or "")
    out = decide(PayFacts(gate=gate(device_bad_codes=5, device=None)))
    assert out.code is Code.CODE_ATTEMPTS_EXCEEDED and not out.counts_bad_code


def test_a_refusal_becomes_the_error_the_client_sees() -> None:
    err = decide(PayFacts(gate=gate(device_bad_codes=9))).error()
    assert err.code is Code.CODE_ATTEMPTS_EXCEEDED and "too many invalid codes" in err.detail


# ------------------------------------------------------------------------------------- the payment's own


def test_rules_that_allow_pay_and_record_their_decision() -> None:
    out = settle(RiskConfig())
    assert out.verdict is PayVerdict.PAY and out.risk is not None and out.rule == "default"


def test_a_confirming_rule_asks_the_customer_with_the_rule() -> None:
    out = settle(RiskConfig(confirm_above={"CNY": 500}))
    assert out.verdict is PayVerdict.CONFIRM and out.rule == "amount_over_confirm_limit"
    assert out.code is None


def test_a_customer_paying_with_the_pin_is_never_asked_again() -> None:
    out = settle(RiskConfig(confirm_above={"CNY": 500}), may_confirm=False)
    assert out.verdict is PayVerdict.PAY


def test_a_declining_rule_declines_with_its_code() -> None:
    out = settle(RiskConfig(daily_limit={"CNY": 1500}), day_total=600)
    assert (out.verdict, out.code, out.rule) == (PayVerdict.DECLINE, Code.DAY_LIMIT_EXCEEDED, "daily_limit")


def test_a_decline_without_a_code_of_its_own_is_a_risk_reject() -> None:
    out = settle(RiskConfig(blocked_mcc=frozenset({"5411"})), merchant_mcc="5411")
    assert (out.verdict, out.code) == (PayVerdict.DECLINE, Code.RISK_REJECT)


def test_a_balance_too_low_declines_instead_of_asking_and_leaves_the_code_unspent() -> None:
    out = settle(RiskConfig(confirm_above={"CNY": 500}), balance=999)
    assert (out.verdict, out.code) == (PayVerdict.DECLINE, Code.BUYER_BALANCE_NOT_ENOUGH)
    assert out.risk is not None and not out.risk.spends_code


def test_a_confirmation_without_rules_checks_only_the_wallet_and_the_balance() -> None:
    assert settle(None).verdict is PayVerdict.PAY
    assert settle(None, balance=1000).verdict is PayVerdict.PAY
    frozen = settle(None, buyer_active=False, balance=0)
    assert (frozen.verdict, frozen.code, frozen.risk) == (PayVerdict.DECLINE, Code.BUYER_FROZEN, None)
    poor = settle(None, balance=999)
    assert (poor.verdict, poor.code) == (PayVerdict.DECLINE, Code.BUYER_BALANCE_NOT_ENOUGH)
    # Limits are not applied again when confirming: they were when the customer was asked.
    assert settle(None, day_total=10**9).verdict is PayVerdict.PAY


def test_an_unknown_balance_is_not_checked_on_a_confirmation() -> None:
    assert settle(None, balance=None).verdict is PayVerdict.PAY


@pytest.mark.parametrize(
    "facts", [PayFacts(), PayFacts(gate=gate(), account=Account(None, RiskInputs(1, "CNY")))]
)
def test_one_step_at_a_time(facts: PayFacts) -> None:
    with pytest.raises(ValueError):
        decide(facts)
