"""The ECR's parts without a gateway: catalog, configuration, journal, receipts and printers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from harness import EXAMPLE_CATALOG, receipt_qr

from tillpay.ecr.catalog import Catalog, CatalogError, ScanKind, classify, ean13_ok, is_payment_code
from tillpay.ecr.config import ConfigError, EcrConfig, PrinterConfig
from tillpay.ecr.journal import Journal, Line
from tillpay.ecr.receipts import PrinterError, ReceiptPrinter, render_escpos, render_text

TILLPAY = [sys.executable, "-m", "tillpay.cli"]


def test_example_catalog_loads_and_scans_are_classified() -> None:
    cat = Catalog.load(EXAMPLE_CATALOG, "USD")
    assert len(cat) == 10 and cat.get("4006381333931") is not None
    assert cat.get("4006381333931").price == 450  # type: ignore[union-attr]
    assert classify("4006381333931", cat).kind is ScanKind.ITEM
    s = classify("3*4006381333931", cat)
    assert s.kind is ScanKind.ITEM and s.quantity == 3
    assert classify("BAG", cat).kind is ScanKind.ITEM
    assert classify("281234567890123456", cat).kind is ScanKind.PAYMENT
    assert classify("3*281234567890123456", cat).kind is ScanKind.UNKNOWN
    assert classify("12345", cat).kind is ScanKind.UNKNOWN


@pytest.mark.parametrize(
    ("code", "yes"),
    [
        ("2512345678901234", True),  # 16 digits, 25
        ("301234567890123456789012", True),  # 24 digits, 30
        ("281234567890123", False),  # 15 digits
        ("3012345678901234567890123", False),  # 25 digits
        ("241234567890123456", False),  # starts 24
        ("311234567890123456", False),  # starts 31
        ("28123456789012345a", False),
    ],
)
def test_payment_codes_are_16_to_24_digits_starting_25_to_30(code: str, yes: bool) -> None:
    assert is_payment_code(code) is yes


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("sku,name,price\n1,A,1.00\n", "code,name,price"),
        ("code,name,price\n4006381333932,A,1.00\n", "check digit"),
        ("code,name,price\nA1,A,1.00\nA1,B,2.00\n", "appears twice"),
        ("code,name,price\nA1,A,1.005\n", "price"),
        ("code,name,price\nA1,A,0.00\n", "more than zero"),
        ("code,name,price\nA1,,1.00\n", "no name"),
        ("code,name,price\n281234567890123456,A,1.00\n", "payment code"),
        ("code,name,price\n", "no items"),
    ],
)
def test_bad_catalogs_name_the_problem(tmp_path: Path, body: str, needle: str) -> None:
    p = tmp_path / "c.csv"
    p.write_text(body)
    with pytest.raises(CatalogError, match=needle):
        Catalog.load(p, "USD")


def test_ean13_check_digit() -> None:
    assert ean13_ok("4006381333931") and not ean13_ok("4006381333930") and not ean13_ok("400638133393")


def test_init_from_the_demo_credentials_writes_config_and_catalog(tmp_path: Path) -> None:
    creds = {
        "gateway_url": "http://127.0.0.1:8000",
        "partner": "2088000000000001",
        "md5_key": "k" * 32,
        "settlement_currency": "USD",
        "merchant_private_key": "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n",
        "tillpay_public_key": "-----BEGIN PUBLIC KEY-----\nBBB\n-----END PUBLIC KEY-----\n",
    }
    (tmp_path / "tillpay-demo.json").write_text(json.dumps(creds))
    env = {**os.environ}
    run = [*TILLPAY, "ecr", "init", "--demo-credentials", "tillpay-demo.json", "--printer", "file:r.bin"]
    proc = subprocess.run(
        [*run, "--operator-pin", "4321"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    cfg = EcrConfig.load(tmp_path / "tillpay-ecr.toml")
    assert cfg.partner == "2088000000000001" and cfg.merchant_private_key == creds["merchant_private_key"]
    assert cfg.printer == PrinterConfig(kind="file", path="r.bin")
    assert cfg.check_pin("4321") and not cfg.check_pin("1234")
    assert (tmp_path / "catalog.csv").read_bytes() == EXAMPLE_CATALOG.read_bytes()
    assert oct((tmp_path / "tillpay-ecr.toml").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr
    bad = subprocess.run(
        [*TILLPAY, "ecr", "--config", "x.toml", "init", "--gateway-url", "http://h", "--partner", "123"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "2088" in bad.stderr and not (tmp_path / "x.toml").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"partner": "1"}, "2088"),
        ({"gateway_url": "ftp://x"}, "URL"),
        ({"currency": "XXX"}, "currency"),
        ({"sign_type": "MD5"}, "md5_key"),
        ({"terminal_id": "T 1"}, "terminal_id"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"language": "fr"}, "language"),
    ],
)
def test_bad_configuration_is_refused(change: dict[str, object], needle: str) -> None:
    base: dict[str, object] = {
        "gateway_url": "http://127.0.0.1:8000",
        "partner": "2088000000000001",
        "merchant_private_key": "x",
        "gateway_public_key": "y",
    }
    with pytest.raises(ConfigError, match=needle):
        EcrConfig(**{**base, **change})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="printer"):
        PrinterConfig.parse("lpt:1")


def test_journal_survives_reopening_and_names_unfinished_orders(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    a = j.new_order("T1", [Line("A", "Apple", 100, 2)], "USD", "USD")
    b = j.new_order("T1", [Line("B", "Bread", 250, 1)], "USD", "USD")
    j.set_state(a.partner_trans_id, "waiting", trade_no="2026X")
    j.set_state(b.partner_trans_id, "paid")
    j.close()
    j = Journal(tmp_path / "j.db")
    (left,) = j.unfinished()
    assert left.partner_trans_id == a.partner_trans_id and left.total == 200 and left.trade_no == "2026X"
    assert j.events(a.partner_trans_id) == ["sending", "waiting"]
    assert a.partner_trans_id != b.partner_trans_id and a.partner_trans_id.startswith("T1-")
    with pytest.raises(ValueError):
        j.new_order("T1", [], "USD", "USD")
    with pytest.raises(ValueError):
        j.set_state(a.partner_trans_id, "paid", bogus="x")
    j.close()


SALE = {
    "kind": "sale",
    "language": "en",
    "merchant": "Corner Cafe",
    "store_name": "Main Street",
    "store_id": "S-7",
    "terminal_id": "T3",
    "time": "2026-11-26 10:00:00 +0000",
    "partner_trans_id": "T3-20261126100000-000001",
    "trade_no": "2026112610000000000001",
    "currency": "USD",
    "items": [{"name": "Flat white", "code": "4006381333931", "qty": 2, "price": 450}],
    "total": 900,
    "buyer_amount": "63.92",
    "buyer_currency": "CNY",
    "exchange_rate": "7.1023",
}


def test_receipt_text_and_escpos_carry_the_same_facts() -> None:
    text = render_text(SALE)
    for needle in (
        "Corner Cafe",
        "Flat white",
        "2 x 4.50",
        "9.00 USD",
        "63.92 CNY",
        "7.1023",
        SALE["trade_no"],
    ):
        assert needle in text, needle
    assert "COPY" in render_text(SALE, copy=True) and "COPY" not in text
    raw = render_escpos(SALE)
    assert raw.startswith(b"\x1b") and receipt_qr(raw) == [SALE["trade_no"]]
    assert b"63.92 CNY" in raw and b"\x1dV" in raw[-6:]


def test_network_printer_gets_the_bytes_over_tcp() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    got = bytearray()

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                got.extend(chunk)

    th = threading.Thread(target=accept)
    th.start()
    port = server.getsockname()[1]
    ReceiptPrinter(PrinterConfig.parse(f"network:127.0.0.1:{port}")).print(SALE)
    th.join(timeout=10)
    server.close()
    assert bytes(got) == render_escpos(SALE)


def test_text_printer_and_unwritable_file_printer(tmp_path: Path) -> None:
    ReceiptPrinter(PrinterConfig(kind="text", path=str(tmp_path / "r.txt"))).print(SALE)
    assert "9.00 USD" in (tmp_path / "r.txt").read_text()
    with pytest.raises(PrinterError):
        ReceiptPrinter(PrinterConfig(kind="file", path=str(tmp_path / "no" / "such" / "r.bin"))).print(SALE)
