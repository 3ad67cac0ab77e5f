"""The profile summary puts each sample where the CPU was: the topmost frame that names a bucket."""

from __future__ import annotations

from pathlib import Path

from tillpay.bench.profile import summarize

SERVE = "serve (tillpay/cli.py:172);run (uvicorn/main.py:632);gateway (tillpay/web/app.py:51)"
STACKS = [
    # The answer's signature, under the gateway and uvicorn: signing, not HTTP.
    f"{SERVE};handle (tillpay/protocols/mapi/gateway.py:386);rsa_sign (tillpay/signing.py:80) 50",
    # A statement on SQLite: sqlite3 runs in C under the driver call.
    f"{SERVE};pay (tillpay/services/payments.py:613);Driver.rows (tillpay/store/driver.py:82) 30",
    # Tillpay's own code at the top.
    f"{SERVE};_pay (tillpay/protocols/mapi/gateway.py:230);alipay_time (tillpay/protocols/mapi/wire.py:24) 15",
    # COMMIT in the worker thread.
    "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);"
    "_WorkItem.run (concurrent/futures/thread.py:58) 5",
]


def _bucket_share(summary: str, name: str) -> str:
    [line] = [ln for ln in summary.splitlines() if ln.endswith(name)]
    return line.split("%")[0].strip()


def test_samples_go_to_the_bucket_of_the_topmost_matching_frame(tmp_path: Path) -> None:
    sqlite = tmp_path / "sqlite-pay-1p-120000-1.txt"
    sqlite.write_text("\n".join(STACKS) + "\n")
    s = summarize([sqlite])
    assert s.startswith("100 samples")
    assert _bucket_share(s, "RSA sign/verify (cryptography)") == "50.0"
    assert _bucket_share(s, "SQLite statements (sqlite3, in C)") == "30.0"
    assert _bucket_share(s, "Tillpay code") == "15.0"
    assert _bucket_share(s, "SQLite COMMIT and lock waits (worker thread)") == "5.0"
    assert "HTTP server" not in s  # uvicorn is on every stack, but never where the CPU was


def test_on_postgresql_the_driver_call_is_tillpay_code_not_sqlite(tmp_path: Path) -> None:
    pg = tmp_path / "postgresql-pay-1p-120000-1.txt"
    pg.write_text(STACKS[1] + "\n")
    s = summarize([pg])
    assert _bucket_share(s, "Tillpay code") == "100.0"
    assert "SQLite" not in s.split("self (top of stack)")[0]
