"""``tillpay bench`` end to end, short: it completes, prints figures, the counts agree and the audit is clean.

The benchmark is not a timed test: these runs only prove that every part works (servers, prepared
requests, load generator, the same-run limits, the checks); the figures themselves are not asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pg_admin_url
from tillpay.bench import profile

TILLPAY = [sys.executable, "-m", "tillpay.cli"]
SHORT = ["--seconds", "3", "--warmup", "1", "--limit-seconds", "1", "--users", "600", "--connections", "8"]


def bench(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "results"
    proc = subprocess.run(
        [*TILLPAY, "bench", *SHORT, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TILLPAY_LOG_LEVEL": "warning"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| pays/s |" in proc.stdout.replace("pays/s | requests/s", "pays/s |")
    assert Path(f"{out}.md").read_text().startswith("Measured ")
    return json.loads(Path(f"{out}.json").read_text())  # type: ignore[no-any-return]


def check(run: dict) -> None:  # type: ignore[type-arg]
    # Each condition on its own, so a failure names which one (and the run's notes say why).
    assert run["errors"] == 0, (run["outcomes"], run["transport_errors"], run["notes"])
    assert run["counts_match"], (run["db"], run["notes"])
    assert run["audit_ok"], run["audit"]
    assert not run["exhausted"], run["notes"]
    assert run["passed"], run
    assert run["pays_ok"] > 0 and run["pays_per_second"] > 0
    assert run["counts_match"] and run["audit_ok"] and run["errors"] == 0
    assert set(run["latency_ms"]) >= {"p50", "p95", "p99"}
    limits = run["limits"]
    assert limits["noop"]["rate"] > 0 and limits["noop"]["errors"] == 0
    assert limits["db"]["rate"] > 0
    assert limits["rsa"]["one_core"] > 0 and limits["rsa"]["all_cores"] > 0
    assert run["cpu"]["server_ms_per_pay"] > 0


@pytest.mark.slow
def test_bench_on_sqlite_completes_with_clean_audit_and_matching_counts(tmp_path: Path) -> None:
    doc = bench(tmp_path, "--profile", str(tmp_path / "profiles"))
    assert doc["machine"]["cores"] and doc["machine"]["sqlite"]
    [run] = doc["runs"]
    assert run["config"]["database"] == "sqlite"
    check(run)
    # py-spy recorded the server, and the summary finds the pay's parts in it.
    [stacks] = (tmp_path / "profiles").glob("sqlite-pay-1p-*.txt")
    summary = profile.summarize([stacks])
    assert "RSA sign/verify" in summary and "tillpay/services/payments.py" in summary


@pytest.mark.slow
def test_bench_mix_on_postgresql_with_a_separate_worker(tmp_path: Path) -> None:
    doc = bench(tmp_path, "--database", pg_admin_url(), "--separate-worker", "--workload", "mix")
    assert doc["machine"]["postgresql"]["server_version"]
    [run] = doc["runs"]
    assert run["config"]["database"] == "postgresql" and run["config"]["separate_worker"]
    check(run)
    # The mix's queries and refunds all found their payment.
    assert set(run["outcomes"]) == {"mapi.pay", "mapi.query", "mapi.refund"}
    assert all(set(c) == {"ok"} for c in run["outcomes"].values()), run["outcomes"]
    # /metrics showed the run while it went on, and after it every pay the generator saw succeed
    # (warm-up and run) as a successful pay answer.
    during, after = run["metrics"]["during"], run["metrics"]["after"]
    assert during["requests_by_dialect"].get("mapi", 0) > 0, during
    assert after["requests_by_dialect"]["mapi"] > during["requests_by_dialect"]["mapi"]
    assert after["pay_answers"].get("success") == run["db"]["paid"], (after, run["db"])
    assert after["database_up"] == 1 and "db_pool_size" in after and "notifications_queued" in after


@pytest.mark.slow
def test_bench_with_the_asyncio_generator_and_confirmations(tmp_path: Path) -> None:
    doc = bench(tmp_path, "--generator", "python", "--workload", "confirm", "--no-limits")
    [run] = doc["runs"]
    assert run["passed"] and run["generator"].startswith("asyncio")
    assert run["outcomes"]["mapi.pay"]["wait"] > 0 and run["db"]["waiting_or_expired"] > 0


def _bench_databases(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'tillpay_bench_%'").fetchall()
    return {r[0] for r in rows}


@pytest.mark.slow
def test_the_pays_own_cost_in_one_process_on_both_databases(tmp_path: Path) -> None:
    before = _bench_databases(pg_admin_url())
    out = tmp_path / "cost"
    args = ["--in-process", "8", "--database", "sqlite", "--database", pg_admin_url(), "--out", str(out)]
    proc = subprocess.run(
        [*TILLPAY, "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc == json.loads(Path(f"{out}.json").read_text())
    assert [r["database"] for r in doc["in_process"]] == ["sqlite", "postgresql"]
    for r in doc["in_process"]:
        # Every pay was answered SUCCESS and recorded (the 100 of the warm-up too); a pay costs more
        # than the no-op that answers the same signed request without the database.
        assert r["pays"] == 8 and r["paid"] == 8 + 100, r
        assert 0 < r["noop_cpu_ms"] < r["pay_cpu_ms"] <= r["pay_wall_ms"] * 2, r
        assert r["own_cost_ms"] == round(r["pay_cpu_ms"] - r["noop_cpu_ms"], 3)
        # One figure per block (8 pays: four blocks of two), around the whole run's.
        blocks = r["own_cost_blocks_ms"]
        assert len(blocks) == 4 and min(blocks) <= r["own_cost_ms"] + 0.001, r
        assert max(blocks) >= r["own_cost_ms"] - 0.001, r
    table = Path(f"{out}.md").read_text()
    assert "| the pay's own cost ms | own cost, lowest–highest block ms |" in table
    assert re.search(r"\| \d+\.\d\d–\d+\.\d\d \|", table), table
    assert _bench_databases(pg_admin_url()) == before  # its database was removed


def test_in_process_refuses_too_few_pays(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*TILLPAY, "bench", "--in-process", "2", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--in-process" in proc.stderr and "4<=x<=100000" in proc.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("database", "said"),
    [
        # Port 1 of loopback: nothing listens there, so the connection is refused at once.
        ("postgresql://bench:s3cret@127.0.0.1:1/postgres", "cannot use the PostgreSQL server of"),
        ("mysql://bench:s3cret@db.invalid/shop", "give 'sqlite' or a PostgreSQL URL"),
        ("not a url", "give 'sqlite' or a PostgreSQL URL"),
    ],
)
@pytest.mark.parametrize("mode", [[], ["--in-process", "4"]])
def test_a_database_that_cannot_be_used_is_refused_before_any_work(
    tmp_path: Path, database: str, said: str, mode: list[str]
) -> None:
    proc = subprocess.run(
        [*TILLPAY, "bench", *mode, "--database", database, "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr  # a password in the URL is not echoed
    assert not list(tmp_path.iterdir())
