"""The payment state machine and the arithmetic of refunds (pure; no I/O)."""

from __future__ import annotations

from enum import StrEnum

from tillpay.domain.errors import Code, TillpayError


class Status(StrEnum):
    """Payment states, named as MAPI names them; the other dialects map onto these."""

    WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
    TRADE_SUCCESS = "TRADE_SUCCESS"
    TRADE_CLOSED = "TRADE_CLOSED"


class Event(StrEnum):
    """What can happen to a payment after it is created."""

    CONFIRM = "confirm"  # the customer confirmed and was charged
    REJECT = "reject"  # the customer rejected, failed the PIN, or had no balance at confirmation
    EXPIRE = "expire"  # nobody confirmed before the timeout
    CANCEL = "cancel"  # the merchant cancelled (closes unpaid, refunds paid)
    REFUND_ALL = "refund_all"  # refunds reached the paid amount


_TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.WAIT_BUYER_PAY, Event.CONFIRM): Status.TRADE_SUCCESS,
    (Status.WAIT_BUYER_PAY, Event.REJECT): Status.TRADE_CLOSED,
    (Status.WAIT_BUYER_PAY, Event.EXPIRE): Status.TRADE_CLOSED,
    (Status.WAIT_BUYER_PAY, Event.CANCEL): Status.TRADE_CLOSED,
    (Status.TRADE_SUCCESS, Event.CANCEL): Status.TRADE_CLOSED,
    (Status.TRADE_SUCCESS, Event.REFUND_ALL): Status.TRADE_CLOSED,
}

FINAL = frozenset({Status.TRADE_SUCCESS, Status.TRADE_CLOSED})


def transition(state: Status, event: Event) -> Status:
    """The state after ``event``; raises TRADE_STATUS_ERROR if the event is not allowed in ``state``."""
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise TillpayError(
            Code.TRADE_STATUS_ERROR, f"cannot {event.value} a payment in state {state.value}"
        ) from None


def can(state: Status, event: Event) -> bool:
    """Whether ``event`` is allowed in ``state``."""
    return (state, event) in _TRANSITIONS


def proportional_share(total: int, part_cumulative: int, whole: int) -> int:
    """``total * part_cumulative / whole`` rounded half up, in integers.

    Refunds in the other currencies of a payment are computed from the *cumulative* refunded price
    amount, so each refund's share is the difference of two such values: the shares never sum to more
    than ``total``, and the refund that reaches ``whole`` takes exactly the remainder.
    """
    if whole <= 0 or not 0 <= part_cumulative <= whole:
        raise ValueError("part must lie within 0..whole and whole must be positive")
    return (2 * total * part_cumulative + whole) // (2 * whole)


def refund_shares(
    refund_price: int,
    refunded_price_before: int,
    paid_price: int,
    paid_other: int,
) -> int:
    """The share of ``paid_other`` (a payment's amount in another currency) that a refund returns."""
    after = proportional_share(paid_other, refunded_price_before + refund_price, paid_price)
    before = proportional_share(paid_other, refunded_price_before, paid_price)
    return after - before
