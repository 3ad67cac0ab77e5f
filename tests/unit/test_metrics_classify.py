"""How the request metrics name a ``/gateway.do`` request and read a pay's answer, without a server.

``_gateway_dialect`` reads ``service=`` / ``method=`` out of the raw form as ``web/app.gateway`` does
(the query first, then the body; a name counts only at the start of a pair). ``pay_outcome`` reads a
MAPI answer as a till does: ``is_success``, then ``result_code`` and the error inside ``response``.
"""

from __future__ import annotations

import pytest

from tillpay.protocols.mapi.services import PAY, QUERY
from tillpay.protocols.openapi.gateway import PAY as OPEN_PAY
from tillpay.web.metrics import _gateway_dialect, pay_outcome


@pytest.mark.parametrize(
    ("query", "body", "expected"),
    [
        (b"", f"service={PAY}&partner=2088".encode(), ("mapi", PAY)),
        (b"_input_charset=UTF-8", f"partner=2088&service={PAY}".encode(), ("mapi", PAY)),
        # The query wins over the body, and the first of two wins.
        (f"service={QUERY}".encode(), f"service={PAY}".encode(), ("mapi", QUERY)),
        (b"", f"service={QUERY}&service={PAY}".encode(), ("mapi", QUERY)),
        # Only at the start of a pair: a longer name or a value holding the text is not it.
        (b"", f"xservice={PAY}&memo=service={PAY}".encode(), ("mapi", "other")),
        (b"", f"memo=a&xservice={QUERY}&service={PAY}".encode(), ("mapi", PAY)),
        # Quoted as a form quotes it.
        (b"", b"service=alipay%2Eacquire%2Eoverseas%2Espot%2Epay", ("mapi", PAY)),
        # The Open Platform names its call with method=; service= wins when both are there.
        (b"", f"method={OPEN_PAY}&app_id=2021".encode(), ("openapi", OPEN_PAY)),
        (f"method={OPEN_PAY}".encode(), f"service={PAY}".encode(), ("mapi", PAY)),
        (b"", b"method=made.up", ("openapi", "other")),
        (b"", b"", ("mapi", "other")),
        (b"", b"service=", ("mapi", "other")),
        (b"", b"service", ("mapi", "other")),
    ],
)
def test_a_gateway_request_is_named_by_its_first_service_or_method(
    query: bytes, body: bytes, expected: tuple[str, str]
) -> None:
    assert _gateway_dialect(query, body) == expected


def _mapi(inner: bytes, ok: bytes = b"T") -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><alipay><is_success>' + ok + b"</is_success>"
        b'<request><param name="service">' + PAY.encode() + b"</param></request>"
        b"<response><alipay>"
        + inner
        + b"</alipay></response><sign>x</sign><sign_type>RSA2</sign_type></alipay>"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            _mapi(
                b"<result_code>SUCCESS</result_code><alipay_trans_status>TRADE_SUCCESS</alipay_trans_status>"
            ),
            ("success", "SUCCESS"),
        ),
        (
            _mapi(b"<result_code>FAILED</result_code><error>BUYER_BALANCE_NOT_ENOUGH</error>"),
            ("failed", "BUYER_BALANCE_NOT_ENOUGH"),
        ),
        (
            _mapi(b"<result_code>UNKNOW</result_code><error>WAIT_BUYER_PAY</error>"),
            ("waiting", "WAIT_BUYER_PAY"),
        ),
        (_mapi(b"<result_code>UNKNOW</result_code><error>SYSTEM_ERROR</error>"), ("unknown", "SYSTEM_ERROR")),
        (_mapi(b"<result_code>FAILED</result_code><error>MADE_UP_CODE</error>"), ("failed", "other")),
        (
            b"<alipay><is_success>F</is_success><error>ILLEGAL_SIGN</error></alipay>",
            ("rejected", "ILLEGAL_SIGN"),
        ),
    ],
)
def test_a_mapi_pay_answer_is_read_as_a_till_reads_it(answer: bytes, expected: tuple[str, str]) -> None:
    assert pay_outcome("mapi", answer) == expected
