"""``tillpay merchant test-credentials``, ``merchant clock`` and ``wallet add --sandbox`` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tillpay.cli import main

_dirs: dict[str, str] = {}


def cli(db_url: str, *args: str) -> tuple[int, str]:
    # Test settlement files go to the test's own directory, never the working directory.
    env = {"TILLPAY_SETTLEMENT_DIR": _dirs.get(db_url, "")} if db_url in _dirs else {}
    r = CliRunner().invoke(main, ["--database-url", db_url, *args], catch_exceptions=False, env=env)
    return r.exit_code, r.output


def test_test_credentials_are_printed_once_and_listed_as_test(db_url: str) -> None:
    code, out = cli(db_url, "--json", "merchant", "add", "--name", "Shop", "--currency", "USD")
    assert code == 0
    live = json.loads(out)
    assert live["mode"] == "live"

    code, out = cli(db_url, "merchant", "test-credentials", live["partner_id"], "--json")
    assert code == 0
    test = json.loads(out)
    assert test["mode"] == "test" and test["test_of"] == live["partner_id"]
    assert test["partner_id"] != live["partner_id"] and test["client_id"] != live["client_id"]
    assert test["merchant_private_key"].startswith("-----BEGIN")
    for key in ("md5_key", "app_id", "client_id", "tillpay_public_key"):
        assert test[key]

    code, out = cli(db_url, "merchant", "test-credentials", live["partner_id"])
    assert code == 0 and "TEST credentials" in out and test["partner_id"] in out
    assert "BEGIN" not in out.split("Tillpay public key")[0]  # the private key is not shown again

    code, out = cli(db_url, "merchant", "list")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "  test  " in lines[test["partner_id"]] and "  live  " in lines[live["partner_id"]]


def test_the_clock_command_moves_a_test_merchant_only(db_url: str, tmp_path: Path) -> None:
    _dirs[db_url] = str(tmp_path / "settlements")
    code, out = cli(db_url, "--json", "merchant", "add", "--name", "Shop", "--currency", "USD")
    live = json.loads(out)["partner_id"]
    test = json.loads(cli(db_url, "--json", "merchant", "test-credentials", live)[1])["partner_id"]

    code, out = cli(db_url, "merchant", "clock", live, "--advance", "2h")
    assert code == 1 and "live merchants always use real time" in out

    _dirs[db_url] = str(tmp_path / "settlements")
    code, out = cli(db_url, "merchant", "clock", test, "--advance", "1d2h", "--json")
    assert code == 0, out
    view = json.loads(out)
    assert view["mode"] == "test" and view["offset_seconds"] == 26 * 3600

    code, out = cli(db_url, "merchant", "clock", test, "--show")
    assert code == 0 and "TEST clock" in out and "1 day, 2:00:00" in out
    code, out = cli(db_url, "merchant", "clock", test, "--advance", "-3h")
    assert code != 0


def test_a_sandbox_wallet_is_made_and_shown_as_one(db_url: str) -> None:
    code, out = cli(
        db_url,
        "--json",
        "wallet",
        "add",
        "--login",
        "dev@sandbox.test",
        "--currency",
        "USD",
        "--pin",
        "123456",
        "--sandbox",
    )
    assert code == 0 and json.loads(out)["sandbox"] is True
    code, out = cli(db_url, "--json", "wallet", "add", "--login", "real@example.test", "--pin", "123456")
    assert code == 0 and json.loads(out)["sandbox"] is False
