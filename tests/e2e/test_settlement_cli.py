"""The README's settlement walk-through as real ``tillpay`` processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TILLPAY = [sys.executable, "-m", "tillpay.cli"]


class Cli:
    """``tillpay --json ...`` against one database, in one working directory."""

    def __init__(self, db_url: str, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {
            **os.environ,
            "TILLPAY_DATABASE_URL": db_url,
            "TILLPAY_SETTLEMENT_DIR": str(cwd / "settlements"),
        }

    def __call__(self, *args: str, rc: int = 0) -> Any:
        p = subprocess.run(
            [*TILLPAY, "--json", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=300,
        )
        assert p.returncode == rc, (
            f"tillpay {' '.join(args)} exited {p.returncode}: {p.stdout[-2000:]} {p.stderr[-2000:]}"
        )
        return json.loads(p.stdout) if p.stdout.strip().startswith("{") else p.stdout


def camt053(entries: list[tuple[str, str, str]], day: str) -> str:
    ntry = "".join(
        f"<Ntry><Amt Ccy='{cur}'>{amt}</Amt><CdtDbtInd>DBIT</CdtDbtInd><BookgDt><Dt>{day}</Dt></BookgDt>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>{ref}</EndToEndId></Refs><Amt Ccy='{cur}'>{amt}</Amt></TxDtls>"
        "</NtryDtls></Ntry>"
        for ref, amt, cur in entries
    )
    return (
        "<Document xmlns='urn:iso:std:iso:20022:tech:xsd:camt.053.001.02'><BkToCstmrStmt><Stmt>"
        f"<FrToDt><FrDtTm>{day}T00:00:00</FrDtTm><ToDtTm>{day}T23:59:59</ToDtTm></FrToDt>{ntry}"
        "</Stmt></BkToCstmrStmt></Document>"
    )


def test_simulate_settle_verify_reconcile_and_match_payouts(db_url: str, tmp_path: Path) -> None:
    tillpay = Cli(db_url, tmp_path)
    day = (datetime.now(UTC) - timedelta(days=3)).date()
    d = day.isoformat()
    sim = tillpay("simulate", "--bulk", "-n", "400", "--merchants", "2", "--date", d)
    partner = sim["merchants"][0]["partner_id"]

    run = tillpay("settle", "run", "--date", d)
    assert {b["partner_id"] for b in run["batches"]} == {m["partner_id"] for m in sim["merchants"]}
    assert all(b["payout_status"] == "scheduled" for b in run["batches"])
    again = tillpay("settle", "run", "--date", d)
    assert again["rerun"] and [f["sha256"] for f in again["files"]] == [f["sha256"] for f in run["files"]]
    listed = tillpay("settle", "list", "--date", d)
    assert len(listed["batches"]) == 2
    verified = tillpay("settle", "files", "--date", d, "--verify")
    assert verified["problems"] == [] and len(verified["files"]) == 4

    journal = tmp_path / "journals" / f"journal_{partner}_{day.strftime('%Y%m%d')}.csv"
    files = tmp_path / "settlements" / d / partner
    clean = tillpay(
        "reconcile", "--journal", str(journal), "--files", str(files), "--html", "r.html", "--csv", "d.csv"
    )
    assert clean["clean"] and (tmp_path / "r.html").read_text().count("No differences") == 1

    rows = list(csv.DictReader(journal.open()))
    rows[0]["amount"] = "0.01" if rows[0]["currency"] != "JPY" else "1"
    with journal.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    dirty = tillpay("reconcile", "--journal", str(journal), "--files", str(files), "--csv", "d.csv", rc=1)
    assert [x["kind"] for x in dirty["differences"]] == ["amount_mismatch"]
    assert next(iter(csv.DictReader((tmp_path / "d.csv").open())))["key"] == rows[0]["partner_transaction_id"]

    # The next day's run pays the first day's batches out (T+1) in a pain.001 file.
    paid = tillpay("settle", "run", "--date", (day + timedelta(days=1)).isoformat())
    assert len(paid["payouts"]) == 2
    [pain] = [f for f in paid["files"] if f["kind"] == "pain001"]
    xml = (tmp_path / "settlements" / pain["name"]).read_text()
    transfers = re.findall(
        r"<EndToEndId>(\w+)</EndToEndId></PmtId>\s*<Amt><InstdAmt Ccy=\"(\w+)\">([\d.]+)<", xml
    )
    assert len(transfers) == 2
    value_day = (day + timedelta(days=1)).isoformat()
    statement = tmp_path / "statement.xml"
    statement.write_text(camt053([(ref, amt, cur) for ref, cur, amt in transfers], value_day))
    assert tillpay("reconcile", "payouts", "--statement", str(statement))["clean"]
    ref, cur, _ = transfers[0]
    statement.write_text(camt053([(ref, "1.00" if cur != "JPY" else "1", cur)], value_day))
    bad = tillpay("reconcile", "payouts", "--statement", str(statement), rc=1)
    assert sorted(x["kind"] for x in bad["differences"]) == ["amount_mismatch", "missing_in_statement"]

    assert "findings" in tillpay("audit")


def test_bad_input_is_refused_with_a_clear_message(db_url: str, tmp_path: Path) -> None:
    tillpay = Cli(db_url, tmp_path)
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    out = tillpay("settle", "run", "--date", future, rc=1)
    assert out["error"] == "ILLEGAL_ARGUMENT" and "cannot be settled" in out["message"]
    journal = tmp_path / "j.csv"
    journal.write_text(
        "record_type,partner_transaction_id,amount,currency,status\nPAYMENT,A,12.345,USD,SUCCESS\n"
    )
    (tmp_path / "files").mkdir()
    out = tillpay("reconcile", "--journal", str(journal), "--files", str(tmp_path / "files"), rc=2)
    assert out["error"] == "BAD_INPUT" and "line 2" in out["message"]
    out = tillpay("settle", "fee", "2088000000000009", "100", rc=1)
    assert out["error"] == "ILLEGAL_PARTNER"
