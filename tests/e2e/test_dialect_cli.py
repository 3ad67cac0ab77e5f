"""Onboarding for the Open Platform and Antom dialects through the CLI, and serve's TLS options."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tillpay import signing

TILLPAY = [sys.executable, "-m", "tillpay.cli"]


def run(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TILLPAY_DATABASE_URL": db_url}
    return subprocess.run([*TILLPAY, "--json", *args], capture_output=True, text=True, env=env, timeout=120)


def test_merchant_add_gives_an_app_id_and_a_client_id_and_keys_rotate(db_url: str, tmp_path: Path) -> None:
    import json

    a = json.loads(run(db_url, "merchant", "add", "--name", "A", "--currency", "USD").stdout)
    b = json.loads(run(db_url, "merchant", "add", "--name", "B", "--currency", "USD").stdout)
    assert re.fullmatch(r"2021\d{12}", a["app_id"]) and re.fullmatch(r"TP[A-Z0-9]{14}", a["client_id"])
    assert a["app_id"] != b["app_id"] and a["client_id"] != b["client_id"]
    key = tmp_path / "new.pem"
    key.write_text(signing.public_key_pem(signing.generate_private_key().public_key()))
    out = run(db_url, "merchant", "key-add", a["partner_id"], "--public-key", str(key))
    assert out.returncode == 0 and json.loads(out.stdout)["key_version"] == 2
    shown = json.loads(run(db_url, "merchant", "show", a["partner_id"]).stdout)
    assert shown["merchant_public_key"] == key.read_text()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    refused = run(db_url, "merchant", "key-add", a["partner_id"], "--public-key", str(bad))
    assert refused.returncode == 1 and json.loads(refused.stdout)["error"] == "ILLEGAL_ARGUMENT"


def test_serve_wants_the_tls_certificate_and_key_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    out = run(f"sqlite:///{tmp_path}/t.db", "serve", "--tls-cert", str(cert))
    assert out.returncode == 2 and "--tls-cert and --tls-key go together" in out.stderr
