"""What every fault test shares: a funded database, ``tillpay serve``/``worker`` processes, a bounded pay
load that records every answer, PostgreSQL servers of the test's own, and the four checks.

The load is four threads of MAPI pays through the project's client, each request with a deadline, so a
hang shows up as a ``timeout`` outcome instead of a stuck test. The checks read the database directly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from tillpay.bench.data import BenchDevice, populate
from tillpay.client import MapiClient
from tillpay.client._errors import TillpayClientError, TransportError
from tillpay.config import Settings
from tillpay.domain import paycode
from tillpay.ops.ha import PG_BIN
from tillpay.services.platform import Platform
from tillpay.store.engine import sync_url
from tillpay.store.migrate import upgrade

TILLPAY = [sys.executable, "-m", "tillpay.cli"]
#: Seconds a load request may take before it counts as a hang (the server's own deadlines are shorter).
REQUEST_TIMEOUT = 15.0
#: Pays above CNY 5.00 wait for the customer, who never comes: the worker must close them (2 s timeout).
FAULT_ENV = {
    "TILLPAY_CONFIRM_ABOVE": "CNY:5.00",
    "TILLPAY_PAYMENT_TIMEOUT_SECONDS": "2",
    "TILLPAY_WORKER_POLL_SECONDS": "0.2",
}
RESULTS_DIR = Path(
    os.environ.get("TILLPAY_FAULT_RESULTS", Path(tempfile.gettempdir()) / "tillpay-fault-results")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Shop:
    """A merchant and funded wallets in a migrated database."""

    db_url: str
    partner_id: str
    md5_key: str
    devices: list[BenchDevice]


def prepare(db_url: str, users: int = 1000) -> Shop:
    """Migrate ``db_url`` and fill it with one CNY merchant and ``users`` funded wallets."""
    upgrade(db_url)

    async def go() -> Shop:
        p = Platform(Settings(database_url=db_url))
        try:
            fx = await populate(p, n_merchants=1, n_users=users)
        finally:
            await p.close()
        m = fx.merchants[0]
        return Shop(db_url, m.partner_id, m.md5_key, fx.devices)

    return asyncio.run(go())


class Proc:
    """A ``tillpay`` process (``serve`` or ``worker``) in its own process group."""

    def __init__(
        self, db_url: str, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.db_url, self.args = db_url, args
        self.port = port
        self.env = env or {}
        self.log = tempfile.NamedTemporaryFile(prefix="tillpay-fault-", suffix=".log", delete=False)
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **FAULT_ENV, **self.env, "TILLPAY_DATABASE_URL": self.db_url}
        argv = [*TILLPAY, *self.args]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.port is not None:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tillpay {self.args[0]} did not start: {self.output()}")
                time.sleep(0.1)
        return p

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def kill9(self) -> None:
        """``kill -9`` every process of the group (the server's workers too)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.proc = self._start()

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill9()
        Path(self.log.name).unlink(missing_ok=True)


@dataclass
class Outcome:
    """One request of the load and what its client saw."""

    ptid: str
    amount: str
    started: float
    ended: float
    kind: str  # success | waiting | failed | unknown | error | timeout
    detail: str = ""


@dataclass
class Load:
    """Four threads paying as fast as the server answers (bounded: one request in flight each)."""

    shop: Shop
    url: str
    threads: int = 4
    prefix: str = "F"
    #: Where the gateway notifies of each pay (None: no notifications).
    notify_url: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._n = 0
        self._step = -1
        self._j = 0
        self.code_waits = 0
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]

    def _code(self) -> str | None:
        """A payment code never used before: device j % D, slot j // D of this minute."""
        with self._lock:
            now = int(time.time())
            step = paycode.step_at(now)
            if step != self._step:
                self._step, self._j = step, 0
            d = len(self.shop.devices)
            if self._j >= d * paycode.SLOTS:
                # This minute's codes are spent; wait for the next one. Counted: a pause of the load
                # that is not the fault's (give more users if it ever happens).
                self.code_waits += 1
                return None
            dev = self.shop.devices[self._j % d]
            slot = self._j // d
            self._j += 1
            return paycode.generate(dev.secret, dev.device_no, now, slot)

    def _run(self, i: int) -> None:
        client = MapiClient(
            self.url,
            self.shop.partner_id,
            sign_type="MD5",
            md5_key=self.shop.md5_key,
            timeout=REQUEST_TIMEOUT,
        )
        while not self._stop.is_set():
            code = self._code()
            if code is None:
                time.sleep(0.2)
                continue
            with self._lock:
                self._n += 1
                n = self._n
            ptid = f"{self.prefix}-{n:06d}"
            # Every fifth pay is above the confirmation limit: it waits, and the worker must close it.
            amount = "6.00" if n % 5 == 0 else "1.00"
            t0 = time.monotonic()
            try:
                r = client.pay(ptid, code, amount, "CNY", "fault load", notify_url=self.notify_url)
                if r.ok and r.status == "TRADE_SUCCESS":
                    kind = "success"
                elif r.status == "WAIT_BUYER_PAY":  # SUCCESS or UNKNOW: the customer must confirm
                    kind = "waiting"
                elif r.unknown:
                    kind = "unknown"
                else:
                    kind = "failed"
                detail = f"{r.result_code} {r.error or ''} {r.status or ''}".strip()
            except TransportError as e:
                kind = "timeout" if "Timeout" in str(e) else "error"
                detail = str(e)[:200]
            except TillpayClientError as e:
                kind, detail = "error", f"{type(e).__name__}: {e}"[:200]
            except Exception as e:
                kind, detail = "error", f"{type(e).__name__}: {e}"[:200]
            self.outcomes.append(Outcome(ptid, amount, t0, time.monotonic(), kind, detail))
            # A till does not hammer a gateway that fails: a short pause after anything but an answer.
            time.sleep(0.01 if kind in ("success", "waiting", "failed") else 0.1)
        client.close()

    def start(self) -> Load:
        for w in self._workers:
            w.start()
        return self

    def wait_for_successes(self, n: int, after: float = 0.0, timeout: float = 120) -> None:
        """Until ``n`` pays that started after ``after`` have succeeded (the load is flowing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for o in list(self.outcomes) if o.kind == "success" and o.started >= after) >= n:
                return
            time.sleep(0.1)
        raise AssertionError(f"the load saw no {n} successes in {timeout} s: {self.summary()}")

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(timeout=REQUEST_TIMEOUT + 5)
            assert not w.is_alive(), "a load thread hangs"

    def samples(self) -> dict[str, list[str]]:
        """A few distinct answers of each kind but success (what clients saw during the fault)."""
        out: dict[str, list[str]] = {}
        for o in list(self.outcomes):
            seen = out.setdefault(o.kind, [])
            if o.kind != "success" and o.detail not in seen and len(seen) < 3:
                seen.append(o.detail)
        return {k: v for k, v in out.items() if v}

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in list(self.outcomes):
            out[o.kind] = out.get(o.kind, 0) + 1
        return out

    def recovery_seconds(self, fault_at: float) -> float:
        """The longest time from the fault on without a pay succeeding (the outage as clients saw it)."""
        ends = sorted(o.ended for o in self.outcomes if o.kind == "success" and o.started >= fault_at)
        assert ends, f"no pay succeeded after the fault: {self.summary()}"
        points = [fault_at, *ends]
        return round(max(b - a for a, b in itertools.pairwise(points)), 2)


def _naive_utc(v: Any) -> datetime:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    return v.replace(tzinfo=None) if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)


def check(shop: Shop, load: Load, *, db_url: str | None = None, stuck_wait: float = 30) -> dict[str, Any]:
    """The four checks (acknowledged pays exist once, no debit without a payment, nothing stuck, audit
    clean); their numbers, for the test to assert on and the report to record."""
    url = db_url or shop.db_url
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            merchant_id = conn.execute(
                text("SELECT id FROM merchants WHERE partner_id = :p"), {"p": shop.partner_id}
            ).scalar_one()
            rows = conn.execute(
                text("SELECT partner_trans_id, status, paid_at FROM payments WHERE merchant_id = :m"),
                {"m": merchant_id},
            ).all()
            by_ptid: dict[str, list[Any]] = {}
            for r in rows:
                by_ptid.setdefault(r.partner_trans_id, []).append(r)
            acked = [o for o in load.outcomes if o.kind == "success"]
            lost = [o.ptid for o in acked if not any(r.paid_at is not None for r in by_ptid.get(o.ptid, []))]
            duplicated = [ptid for ptid, rs in by_ptid.items() if len(rs) > 1]
            debits_without_payment = conn.execute(
                text(
                    "SELECT count(*) FROM postings p JOIN journal_entries e ON e.id = p.entry_id "
                    "LEFT JOIN payments y ON y.id = e.payment_id "
                    "WHERE p.account LIKE 'wallet:%' AND p.amount < 0 "
                    "AND (y.id IS NULL OR y.paid_at IS NULL)"
                )
            ).scalar_one()
            # Every payment charged at most once: one journal entry per paid payment.
            double_charges = conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT payment_id FROM journal_entries WHERE kind = 'payment' "
                    "GROUP BY payment_id HAVING count(*) > 1) d"
                )
            ).scalar_one()
        # No order left waiting past its timeout: the worker gets a little while to close what expired.
        deadline = time.monotonic() + stuck_wait
        while True:
            with engine.connect() as conn:
                now = _naive_utc(datetime.now(UTC)) - timedelta(seconds=1)
                waiting = conn.execute(
                    text("SELECT partner_trans_id, expires_at FROM payments WHERE status = 'WAIT_BUYER_PAY'")
                ).all()
            stuck = [
                r.partner_trans_id for r in waiting if r.expires_at is None or _naive_utc(r.expires_at) < now
            ]
            if not stuck or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    audit = subprocess.run(
        [*TILLPAY, "--json", "audit"],
        env={**os.environ, "TILLPAY_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return {
        "acknowledged": len(acked),
        "lost": lost,
        "duplicated": duplicated,
        "double_charges": double_charges,
        "debits_without_payment": debits_without_payment,
        "stuck": stuck,
        "audit_ok": audit.returncode == 0,
        "audit": audit.stdout[-2000:] + audit.stderr[-2000:],
        "outcomes": load.summary(),
        "load_waited_for_codes": load.code_waits,
        "answers_seen": load.samples(),
        "slowest_answer_seconds": round(max((o.ended - o.started for o in load.outcomes), default=0), 2),
    }


def assert_clean(result: dict[str, Any]) -> None:
    """The four checks pass (and no client request hung)."""
    assert result["acknowledged"] > 0, result
    assert result["lost"] == [], f"acknowledged payments lost: {result['lost']}"
    assert result["duplicated"] == [] and result["double_charges"] == 0, result
    assert result["debits_without_payment"] == 0, result
    assert result["stuck"] == [], f"orders left waiting past their timeout: {result['stuck']}"
    assert result["audit_ok"], result["audit"]
    assert result["outcomes"].get("timeout", 0) == 0, f"a client waited past its deadline: {result}"
    # The load never paused for want of payment codes, so the recovery time is the fault's alone.
    assert result["load_waited_for_codes"] == 0, result


def record(name: str, fault: str, recovery: float | None, result: dict[str, Any]) -> None:
    """Print the measurement and add it to ``fault-results/<name>.json`` (docs/reliability.md's table)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    row = {
        "fault": fault,
        "recovery_seconds": recovery,
        "load": "4 threads of MAPI pays (1 in 5 waits for a confirmation that never comes)",
        "machine": os.uname().nodename,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **{k: v for k, v in result.items() if k != "audit"},
    }
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(row, indent=2))
    print(f"\nFAULT {name}: recovery {recovery} s; {json.dumps(row)}")


class SoloPostgres:
    """A PostgreSQL server of the test's own (the shared test server must not be restarted)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tillpay-pg-"))
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._pg(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
            )
            f.write("max_connections = 200\n")
        self.start()
        self._pg(
            str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "tillpay"
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/tillpay"

    def _pg(self, *argv: str) -> None:
        p = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {p.stdout} {p.stderr}")

    def start(self) -> None:
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")

    def kill9(self) -> None:
        """``kill -9`` of the postmaster (its backends go with it when they notice)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        """Start the server again after :meth:`kill9` (crash recovery runs first)."""
        # The old backends exit when they notice the postmaster gone; until then the server refuses to
        # start (its shared memory is still in use), so try again for a while.
        deadline = time.monotonic() + 60
        while True:
            try:
                self.start()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def destroy(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
