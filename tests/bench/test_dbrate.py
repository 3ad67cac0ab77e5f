"""The "database alone" limit on PostgreSQL: pgbench runs the common pay's two statements, and they pay.

The script is the read (``paypath.PG_READ``) and one call of ``tillpay_pay``, the function the server
calls; if its read and its call disagreed (a guard failing) pgbench would stop the client and the run
would fail. Afterwards every pay it made is in the database with its ledger entry, and the audit is clean.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import make_database, test_settings
from tillpay.bench import data, dbrate
from tillpay.services.audit import audit
from tillpay.services.platform import Platform
from tillpay.store import tables as t


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from make_database("postgres", request, tmp_path)


def test_script_is_the_read_and_one_call_with_wallets_kept_apart_per_client() -> None:
    script = dbrate.pgbench_script(devices=64, merchant=1, partner="2088000000000001", clients=4)
    statements = [line for line in script.splitlines() if not line.startswith("\\")]
    assert len(statements) == 2, script
    assert statements[1].startswith("SELECT tillpay_pay(") and "\\gset r_" in script
    # Client n takes wallets n + 1, n + 1 + 4, ...; 64 wallets give each client 16.
    assert "\\set dev 1 + :client_id + 4 * random(0, 15)" in script
    # No ':' followed by a name inside the constants (pgbench would read it as a variable).
    variables = set(re.findall(r"(?<!:):([A-Za-z_]\w*)", script))
    assert variables <= {"dev", "k", "tx", "client_id", "base", "r_version", "r_day_total"} | {
        "r_month_total",
        "r_recent",
    }, variables


@pytest.mark.anyio
async def test_pgbench_pays_through_tillpay_pay_and_the_ledger_stays_balanced(pg_url: str) -> None:
    p = Platform(test_settings(pg_url))
    try:
        fixture = await data.populate(p, n_merchants=1, n_users=64)
        rate, summary = dbrate.pg_rate(
            pg_url, len(fixture.devices), 1, fixture.merchants[0].partner_id, 1, 4, say=lambda s: None
        )
        assert rate > 0 and "failed" not in summary, summary
        async with p.engine.connect() as conn:
            paid = (await conn.execute(select(func.count()).select_from(t.payments))).scalar_one()
            entries = (
                await conn.execute(
                    select(func.count())
                    .select_from(t.journal_entries)
                    .where(t.journal_entries.c.kind == "payment")
                )
            ).scalar_one()
            spent = (
                await conn.execute(select(func.sum(t.wallet_users.c.balance)).select_from(t.wallet_users))
            ).scalar_one()
        assert paid > 0 and entries == paid
        assert spent == data.BALANCE * 64 - 1000 * paid
        assert await audit(p) == []
    finally:
        await p.close()
