"""One benchmark run: database, data, servers, warm-up, prepared requests, load, checks.

The run's pay rate is the number of successful pays the load generator counted divided by the span
between the first and the last of those payments in the database (``created_at``): a server-side clock,
not the generator's one-second one.
"""

# The orchestration blocks on subprocesses on purpose (nothing else runs in this process meanwhile).
# ruff: noqa: S603
from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from tillpay.bench import data, loadgen, requests, scrape
from tillpay.config import Settings
from tillpay.services.platform import Platform
from tillpay.store import tables as t
from tillpay.store.engine import is_sqlite
from tillpay.store.migrate import upgrade

TILLPAY = [sys.executable, "-m", "tillpay.cli"]


@dataclass
class RunConfig:
    """What one run measures."""

    database: str  # "sqlite" or a PostgreSQL URL (a fresh database is created on that server)
    workload: str = "pay"
    servers: int = 1  # server processes (uvicorn workers)
    separate_worker: bool = False  # serve --no-worker plus one ``tillpay worker`` process
    seconds: int = 60
    warmup: int = 5
    connections: int = 16
    threads: int = 2  # load-generator threads (one request stream each)
    users: int = 3_000  # at first; more are added after the warm-up if the measured rate needs them
    merchants: int = 4
    #: Requests to prepare per second of run; the pool is sized from the warm-up's rate, at least this.
    min_rate: int = 1_000  # a short warm-up underrates a fast server: 500 ran out at 508 pays/s
    generator: str = "wrk"  # wrk | python
    port: int = 0
    profile: str | None = None  # a folder: py-spy records each server process there
    limits: bool = True  # measure the same-run limits (no-op endpoint, database's raw rate, RSA)
    limit_seconds: int = 10
    #: Serve another checkout of Tillpay (its ``src`` folder) against the same load, to compare builds.
    server_pythonpath: str | None = None


@dataclass
class RunResult:
    """What one run measured and checked."""

    config: dict[str, Any]
    pays_per_second: float  # float-ok: a rate
    requests_per_second: float  # float-ok: a rate
    latency_ms: dict[str, float]  # float-ok: milliseconds
    outcomes: dict[str, dict[str, int]]
    errors: int
    transport_errors: dict[str, int]
    pays_ok: int
    db: dict[str, int]
    counts_match: bool
    audit_ok: bool
    audit: str
    exhausted: int
    generator: str
    limits: dict[str, Any] = field(default_factory=dict)
    #: CPU seconds during the measured run: the server processes, the load generator, the whole machine
    #: (busy and total, all cores), and the servers' CPU per successful pay in milliseconds.
    cpu: dict[str, float] = field(default_factory=dict)  # float-ok: seconds
    notes: list[str] = field(default_factory=list)
    #: What the servers' ``/metrics`` showed halfway through the measured run and just after it
    #: (cumulative since the servers started, warm-up included).
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """No errors, the counts agree and the audit is clean."""
        return self.errors == 0 and self.counts_match and self.audit_ok and not self.exhausted

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON form."""
        return {**asdict(self), "passed": self.passed}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(cfg: RunConfig, url: str) -> dict[str, str]:
    """The environment the benchmark's server (and worker) processes run with."""
    env = {
        **os.environ,
        "TILLPAY_DATABASE_URL": url,
        "TILLPAY_LOG_LEVEL": "warning",
        "TILLPAY_BENCH_ROUTES": "true",
        # The requests are signed before the run starts, with the time of signing: a long run must not
        # fall outside the replay window.
        "TILLPAY_REQUEST_TIME_TOLERANCE_SECONDS": "86400",
    }
    if cfg.server_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [cfg.server_pythonpath, env.get("PYTHONPATH")]))
    if cfg.workload == "confirm":
        env["TILLPAY_CONFIRM_ABOVE"] = requests.CONFIRM_ABOVE
        # Waiting payments are left to expire; a short timeout makes the worker close them during the run.
        env["TILLPAY_PAYMENT_TIMEOUT_SECONDS"] = "20"
    return env


class Servers:
    """``tillpay serve`` (N processes) and, if asked, a separate ``tillpay worker``."""

    def __init__(self, cfg: RunConfig, url: str, workdir: Path) -> None:
        self.port = cfg.port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = server_env(cfg, url)
        extra = ["--no-worker"] if cfg.separate_worker else []
        self.log = open(workdir / "server.log", "w")
        self.procs = [
            subprocess.Popen(
                [*TILLPAY, "serve", "--port", str(self.port), "--workers", str(cfg.servers), *extra],
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ]
        if cfg.separate_worker:
            self.procs.append(
                subprocess.Popen(
                    [*TILLPAY, "worker"],
                    env=env,
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tillpay serve did not start; see {workdir / 'server.log'}")
            time.sleep(0.2)
        # uvicorn's workers start one by one: give every process a moment to import and connect.
        time.sleep(1.0 + 0.5 * cfg.servers)

    def pids(self) -> list[int]:
        """Every server and worker process id (uvicorn's worker children included)."""
        out = []
        for p in self.procs:
            out.append(p.pid)
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children")
            if kids.exists():
                out.extend(int(x) for x in kids.read_text().split())
        return out

    def stop(self) -> None:
        """Stop every process (its whole process group) and wait for it."""
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.log.close()


def _load(
    cfg: RunConfig, url: str, folder: Path, paths: list[Path], seconds: int, *, cycle: bool = False
) -> loadgen.LoadResult:
    if cfg.generator == "wrk":
        return loadgen.run_wrk(url, folder, len(paths), cfg.connections, seconds, cycle=cycle)
    return loadgen.run_python(url, paths, cfg.connections, seconds, cycle=cycle)


async def _db_counts(url: str, main_prefix: str) -> dict[str, Any]:
    p = Platform(Settings(database_url=url))
    try:
        async with p.engine.connect() as conn:
            pay = t.payments.c
            paid = (await conn.execute(select(func.count()).where(pay.paid_at.is_not(None)))).scalar_one()
            waited = (
                await conn.execute(
                    select(func.count()).where(
                        pay.paid_at.is_(None),
                        (pay.status == "WAIT_BUYER_PAY") | (pay.result_code == "PAYMENT_TIMEOUT"),
                    )
                )
            ).scalar_one()
            total = (await conn.execute(select(func.count()).select_from(t.payments))).scalar_one()
            refunds = (await conn.execute(select(func.count()).select_from(t.refunds))).scalar_one()
            span = (
                await conn.execute(
                    select(func.min(pay.created_at), func.max(pay.created_at), func.count()).where(
                        pay.partner_trans_id.like(main_prefix + "%"), pay.paid_at.is_not(None)
                    )
                )
            ).one()
    finally:
        await p.close()
    first, last, n_main = span
    return {
        "paid": int(paid),
        "waiting_or_expired": int(waited),
        "payments": int(total),
        "refunds": int(refunds),
        "main_paid": int(n_main),
        "main_span_seconds": (last - first).total_seconds() if first and last else 0.0,
    }


async def _paid(url: str, fixture: data.Fixture, prefix: str) -> list[requests.Order]:
    """The paid payments whose transaction ids start with ``prefix``, as orders to query and refund."""
    index = {m.partner_id: i for i, m in enumerate(fixture.merchants)}
    p = Platform(Settings(database_url=url))
    try:
        async with p.engine.connect() as conn:
            pay, mer = t.payments.c, t.merchants.c
            rows = (
                await conn.execute(
                    select(mer.partner_id, pay.partner_trans_id, pay.price_amount)
                    .join_from(t.payments, t.merchants, mer.id == pay.merchant_id)
                    .where(pay.partner_trans_id.like(prefix + "%"), pay.status == "TRADE_SUCCESS")
                    .order_by(pay.id)
                )
            ).all()
    finally:
        await p.close()
    return [requests.Order("mapi.pay", index[r[0]], r[1], amount=int(r[2])) for r in rows]


def _tally(result: loadgen.LoadResult) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for key, n in result.counts.items():
        op, res = loadgen.outcome(key)
        out.setdefault(op, Counter())[res] += n
    return out


def _prepare(
    cfg: RunConfig,
    fixture: data.Fixture,
    folder: Path,
    per_stream: int,
    first_code: int,
    run_id: str,
    targets: list[requests.Order] | None = None,
) -> tuple[list[Path], int]:
    streams = requests.plan(
        cfg.workload,
        fixture.merchants,
        fixture.devices,
        streams=cfg.threads,
        per_stream=per_stream,
        now_unix=int(time.time()),
        run_id=run_id,
        first_code=first_code,
        targets=targets or (),
    )
    used = sum(1 for s in streams for o in s if o.kind != requests.NOOP)
    paths = requests.write_streams(streams, fixture.merchants, folder, processes=os.cpu_count() or 2)
    return paths, first_code + used


def run(cfg: RunConfig, *, say: Any = print) -> RunResult:
    """Run one benchmark and check it; ``say`` gets progress lines."""
    if cfg.generator == "wrk" and not loadgen.wrk_available():
        raise RuntimeError("wrk is not installed (apt-get install wrk), or use --generator python")
    workdir = Path(tempfile.mkdtemp(prefix="tillpay-bench-"))
    url = data.create_database(cfg.database, workdir)
    notes: list[str] = []
    limits: dict[str, Any] = {}
    try:
        say(f"database {'SQLite' if is_sqlite(url) else 'PostgreSQL'}: migrating")
        if cfg.server_pythonpath:
            # The served build's migrations: `tillpay serve` migrates on start, and an older build's
            # Alembic cannot place a revision only this build knows.
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from tillpay.store.migrate import upgrade; upgrade(sys.argv[1])",
                    url,
                ],
                env=server_env(cfg, url),
                check=True,
            )
        else:
            upgrade(url)
        t0 = time.monotonic()
        fixture = asyncio.run(_populate(url, cfg))
        say(f"{cfg.merchants} merchants, {cfg.users} wallets in {time.monotonic() - t0:.1f} s")
        servers = Servers(cfg, url, workdir)
        try:
            say(f"{cfg.servers} server process(es) on {servers.url}; warm-up {cfg.warmup} s")
            warm_per_stream = max(200, cfg.min_rate * cfg.warmup * 3 // cfg.threads)
            # The mix's warm-up only pays: its queries and refunds name the payments the warm-up made.
            warm_cfg = RunConfig(**{**asdict(cfg), "workload": "pay"}) if cfg.workload == "mix" else cfg
            warm_paths, next_code = _prepare(warm_cfg, fixture, workdir / "warm", warm_per_stream, 0, "w")
            warm = _load(cfg, servers.url, workdir / "warm", warm_paths, cfg.warmup)
            targets = asyncio.run(_paid(url, fixture, "Bw-")) if cfg.workload == "mix" else None
            warm_rate = warm.sent / max(cfg.warmup, 1)
            # A warm-up of a second or two sees the server still warming (connections, caches), and the
            # mix's warm-up only pays while its measured run also queries, which is cheaper: both need
            # more headroom, or the prepared requests run out and the run cannot pass.
            headroom = (1.6 if cfg.warmup >= 3 else 3.0) * (1.5 if cfg.workload == "mix" else 1.0)
            rate = max(cfg.min_rate, int(warm_rate * headroom))
            per_stream = rate * cfg.seconds // cfg.threads + cfg.connections
            wallets = len(fixture.devices)
            need = requests.wallets_for(next_code, wallets, per_stream * cfg.threads) - wallets
            if need > 0:
                say(f"adding {need} wallets for enough fresh payment codes")
                fixture.devices.extend(asyncio.run(_more_wallets(url, wallets, need)))
                # The warm-up's codes are not planned again over the larger set of wallets.
                next_code = requests.continue_after(next_code, wallets, len(fixture.devices))
            say(f"warm-up {warm_rate:.0f} req/s; preparing {per_stream * cfg.threads} signed requests")
            t1 = time.monotonic()
            main_paths, _ = _prepare(cfg, fixture, workdir / "main", per_stream, next_code, "m", targets)
            prep = time.monotonic() - t1
            if prep + cfg.seconds + 10 > requests.CODE_LIFETIME_SECONDS:
                raise RuntimeError(
                    f"preparing took {prep:.0f} s: with a {cfg.seconds} s run the codes would expire; "
                    "shorten --seconds"
                )
            say(f"signed in {prep:.1f} s; measuring {cfg.seconds} s")
            profiler = _start_profiler(cfg, servers)
            before = _cpu_now(servers)
            during = scrape.During(servers.url, after=cfg.seconds / 2)
            main = _load(cfg, servers.url, workdir / "main", main_paths, cfg.seconds)
            after = _cpu_now(servers)
            metrics = {"during": during.join(), "after": scrape.scrape(servers.url)}
            if not metrics["after"]:
                notes.append("the server answered no /metrics (an older build?)")
            _stop_profiler(profiler, notes)
            time.sleep(0.5)
            if cfg.limits:
                try:
                    limits["noop"] = _noop(cfg, fixture, workdir, servers, say)
                except Exception as e:  # reported; the pays were measured all the same
                    notes.append(f"no-op endpoint not measured: {e}"[:500])
        finally:
            servers.stop()
        counts = asyncio.run(_db_counts(url, "Bm-"))
        audit = subprocess.run(
            [*TILLPAY, "--json", "audit"],
            # The served build's audit (with --server-pythonpath): its schema, its migrations.
            env=server_env(cfg, url),
            capture_output=True,
            text=True,
            check=False,
        )
        audit_ok = audit.returncode == 0 and json.loads(audit.stdout).get("ok") is True
        tw, tm = _tally(warm), _tally(main)
        outcomes = {op: dict(c) for op, c in tm.items()}
        pays_ok = sum(c["ok"] for op, c in tm.items() if op.endswith(".pay"))
        gen_paid = pays_ok + sum(c["ok"] for op, c in tw.items() if op.endswith(".pay"))
        gen_wait = sum(c["wait"] for c in (*tw.values(), *tm.values()))
        gen_refunds = sum(c["ok"] for op, c in (*tw.items(), *tm.items()) if op.endswith(".refund"))
        match = (
            counts["paid"] == gen_paid
            and counts["waiting_or_expired"] == gen_wait
            and counts["refunds"] == gen_refunds
        )
        if not match:
            notes.append(
                f"counts differ: database paid {counts['paid']}, waiting/expired "
                f"{counts['waiting_or_expired']}, refunds {counts['refunds']}; generator paid {gen_paid}, "
                f"waiting {gen_wait}, refunds {gen_refunds}"
            )
        errors = sum(
            n for op, c in tm.items() for res, n in c.items() if res.startswith("fail") and op != "health"
        )
        transport = {k: v for k, v in main.errors.items() if v}
        errors += sum(transport.values())
        span = counts["main_span_seconds"] or float(cfg.seconds)
        answered = sum(n for op, c in tm.items() if op != "health" for n in c.values())
        if main.exhausted:
            notes.append(f"the prepared requests ran out ({main.exhausted} times): the rate is a lower bound")
        if cfg.limits:
            try:
                limits.update(_db_and_rsa(cfg, url, fixture, say))
            except Exception as e:  # a limit that cannot be measured is reported, the run still counts
                notes.append(f"limits not measured: {e}"[:500])
        return RunResult(
            config={**asdict(cfg), "database": "sqlite" if is_sqlite(url) else "postgresql"},
            pays_per_second=round(pays_ok / span, 1) if pays_ok else 0.0,
            requests_per_second=round(answered / span, 1) if answered else 0.0,
            latency_ms={k: round(v, 2) for k, v in main.latency_ms.items()},
            outcomes=outcomes,
            errors=errors,
            transport_errors=transport,
            pays_ok=pays_ok,
            db=counts,
            counts_match=match,
            audit_ok=audit_ok,
            audit=(audit.stdout or audit.stderr).strip()[-2000:],
            exhausted=main.exhausted,
            generator=main.generator,
            limits=limits,
            cpu=_cpu_used(before, after, pays_ok),
            notes=notes,
            metrics=metrics,
        )
    finally:
        data.drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_now(servers: Servers) -> dict[str, float]:  # float-ok: seconds
    """CPU seconds so far: server processes, finished child processes (the load generator), machine."""
    used = 0.0
    for pid in servers.pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = cpu[3] + cpu[4]
    return {
        "servers": used,
        "children": kids.ru_utime + kids.ru_stime,
        "machine_busy": (sum(cpu) - idle) / _TICK,
        "machine_total": sum(cpu) / _TICK,
    }


def _cpu_used(before: dict[str, float], after: dict[str, float], pays: int) -> dict[str, float]:  # float-ok
    d = {k: round(after[k] - before[k], 2) for k in before}
    return {
        "servers_s": d["servers"],
        "generator_s": d["children"],
        "machine_busy_s": d["machine_busy"],
        "machine_total_s": d["machine_total"],
        "server_ms_per_pay": round(d["servers"] * 1000 / pays, 3) if pays else 0.0,
    }


def _noop(cfg: RunConfig, fixture: data.Fixture, workdir: Path, servers: Servers, say: Any) -> dict[str, Any]:
    """The signed no-op endpoint on the same server processes: the ceiling for a pay on this stack."""
    folder = workdir / "noop"
    noop_cfg = RunConfig(**{**asdict(cfg), "workload": requests.NOOP})
    paths, _ = _prepare(noop_cfg, fixture, folder, 1000, 0, "n")
    say(f"limit: signed no-op endpoint for {cfg.limit_seconds} s")
    before = _cpu_now(servers)
    r = _load(cfg, servers.url, folder, paths, cfg.limit_seconds, cycle=True)
    after = _cpu_now(servers)
    ok = sum(n for k, n in r.counts.items() if loadgen.outcome(k) == ("mapi.pay", "ok"))
    other = sum(r.counts.values()) - ok - r.counts.get("health", 0)
    return {
        "rate": round(ok / cfg.limit_seconds, 1),
        "latency_ms": {k: round(v, 2) for k, v in r.latency_ms.items()},
        "errors": other + sum(r.errors.values()),
        "cpu": _cpu_used(before, after, ok),
    }


def _db_and_rsa(cfg: RunConfig, url: str, fixture: data.Fixture, say: Any) -> dict[str, Any]:
    from tillpay.bench import dbrate, limits

    out: dict[str, Any] = {}
    partner = fixture.merchants[0].partner_id  # merchant 1 settles in CNY, like the wallets
    say(f"limit: the database's rate for a pay's statements, {cfg.limit_seconds} s")
    if is_sqlite(url):
        path = url.split("///", 1)[1]
        rate = dbrate.sqlite_rate(path, len(fixture.devices), 1, partner, cfg.limit_seconds)
        out["db"] = {"rate": round(rate, 1), "how": "sqlite3 loop, one connection, WAL, synchronous=FULL"}
    else:
        rate, how = dbrate.pg_rate(url, len(fixture.devices), 1, partner, cfg.limit_seconds, 16, say)
        out["db"] = {"rate": round(rate, 1), "how": how}
    say("limit: RSA-2048 signatures per second")
    one, every = limits.rsa_signs_per_second()
    out["rsa"] = {"one_core": round(one, 1), "all_cores": round(every, 1), "cores": os.cpu_count() or 1}
    return out


async def _more_wallets(url: str, start: int, count: int) -> list[data.BenchDevice]:
    p = Platform(Settings(database_url=url))
    try:
        return await data.add_wallets(p, start, count)
    finally:
        await p.close()


async def _populate(url: str, cfg: RunConfig) -> data.Fixture:
    p = Platform(Settings(database_url=url))
    try:
        return await data.populate(p, n_merchants=cfg.merchants, n_users=cfg.users)
    finally:
        await p.close()


def _start_profiler(cfg: RunConfig, servers: Servers) -> list[subprocess.Popen[bytes]]:
    if not cfg.profile:
        return []
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    folder = Path(cfg.profile)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%H%M%S")
    db = "sqlite" if cfg.database == "sqlite" else "postgresql"
    procs = []
    for pid in servers.pids():
        # With several processes uvicorn's supervisor only forwards signals; profile those that serve.
        if cfg.servers > 1 and pid == servers.procs[0].pid:
            continue
        procs.append(
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "250",
                    "--duration",
                    str(cfg.seconds),
                    "--format",
                    "raw",
                    "--output",
                    str(folder / f"{db}-{cfg.workload}-{cfg.servers}p-{stamp}-{pid}.txt"),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def _stop_profiler(procs: list[subprocess.Popen[bytes]], notes: list[str]) -> None:
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    if procs:
        notes.append(
            "profiled with py-spy (sampling, --nonblocking): rates are a little lower than unprofiled"
        )
