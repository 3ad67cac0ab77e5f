"""MAPI while the database is down: a gateway refusal (``is_success=F``, ``SYSTEM_ERROR``), never an unsigned
``is_success=T`` answer that the public clients' signature check rejects.

PostgreSQL only: the database is taken away from a running server by refusing its connections and
ending the ones it holds, which a SQLite file cannot be made to do while the server has it open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

import mapi_helpers
from conftest import LiveServer, _pg_conn, pg_admin_url
from tillpay.client import GatewayRejected

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@contextmanager
def database_down(db_url: str) -> Iterator[None]:
    """No new connection to the server's database, and the open ones ended; back afterwards."""
    name = make_url(db_url).database
    with _pg_conn(pg_admin_url()) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        try:
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_request_while_the_database_is_down_is_refused_and_tells_the_till_to_send_it_again(
    live: LiveServer, db_url: str
) -> None:
    shop = mapi_helpers.make_shop(live)
    before = mapi_helpers.counts(live)
    code = shop.code(live)
    with shop.client(live, "MD5") as client:
        with database_down(db_url):
            for send in (
                lambda: client.pay("DOWN-1", code, "1.00", "USD", "database down"),
                lambda: client.query("DOWN-1"),
            ):
                # The client's transport also checks each answer by the public clients' rule.
                with pytest.raises(GatewayRejected) as refused:
                    send()
                assert refused.value.error == "SYSTEM_ERROR"
                assert refused.value.detail and "nothing was done" in refused.value.detail
        # Back up: the same pay, sent again, is answered (signed) and pays once.
        paid = client.pay("DOWN-1", code, "1.00", "USD", "database down")
        assert paid.ok and paid.status == "TRADE_SUCCESS"
    after = mapi_helpers.counts(live)
    assert after["payments"] == before["payments"] + 1
