"""The operator's risk and FX commands, as processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.test_serve import cli, cli_json

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_risk_rules_round_trip_through_import_set_and_show(db_url: str, tmp_path: Path) -> None:
    m = cli_json(db_url, "merchant", "add", "--name", "Night Market", "--currency", "CNY", "--mcc", "5812")
    cli_json(db_url, "wallet", "add", "--login", "eve@example.test", "--pin", "121212")
    cli_json(
        db_url, "wallet", "topup", "--login", "eve@example.test", "--amount", "1000.00", "--reference", "t-1"
    )
    doc = tmp_path / "rules.yaml"
    doc.write_text(
        "scheme:\n  confirm_above: {CNY: '100.00'}\n  daily_limit: {CNY: '5000.00'}\n"
        f"merchants:\n  '{m['partner_id']}':\n    confirm_above: {{CNY: '50.00'}}\n"
        "users:\n  eve@example.test:\n    daily_limit: {CNY: '300.00'}\n"
    )
    assert cli_json(db_url, "risk", "import", str(doc)) == {"scopes": 3}
    eff = cli_json(db_url, "risk", "show", "--merchant", m["partner_id"], "--user", "eve@example.test")
    assert eff["confirm_above"]["CNY"] == "50.00" and eff["daily_limit"]["CNY"] == "300.00"
    assert cli_json(db_url, "risk", "show")["confirm_above"] == {"CNY": "100.00"}

    bad = tmp_path / "bad.yaml"
    bad.write_text("scheme:\n  daily_limit: {CNY: 'lots'}\n")
    proc = cli(db_url, "risk", "import", str(bad), check=False)
    assert proc.returncode == 1 and "daily_limit" in json.loads(proc.stdout)["message"]
    assert cli_json(db_url, "risk", "show")["daily_limit"] == {"CNY": "5000.00"}  # unchanged

    proc = cli(db_url, "risk", "set", "--", "velocity_count", "-3", check=False)
    assert proc.returncode == 1
    assert cli_json(db_url, "risk", "set", "velocity_count", "4")["rules"]["velocity_count"] == 4


def test_fx_import_is_all_or_nothing_and_margins_are_bounded(db_url: str, tmp_path: Path) -> None:
    csv = tmp_path / "rates.csv"
    csv.write_text("base,quote,rate\nUSD,CNY,7.2\nEUR,CNY,7.8\n")
    assert cli_json(db_url, "fx", "import", str(csv)) == {"imported": 2}
    csv.write_text("base,quote,rate\nUSD,CNY,7.3\nGBP,ZZZ,1\n")
    proc = cli(db_url, "fx", "import", str(csv), check=False)
    assert proc.returncode == 1 and "line 3" in json.loads(proc.stdout)["message"]
    rates = {r["base"]: r["rate"] for r in cli_json(db_url, "fx", "list")["rates"]}
    assert rates == {"USD": "7.2", "EUR": "7.8"}
    assert cli_json(db_url, "fx", "margin", "set", "USD", "CNY", "50")["bps"] == 50
    assert cli_json(db_url, "fx", "margin", "list")["margins"] == [{"base": "USD", "quote": "CNY", "bps": 50}]
    proc = cli(db_url, "fx", "margin", "set", "USD", "CNY", "99999", check=False)
    assert proc.returncode == 1
