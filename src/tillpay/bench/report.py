"""The results as Markdown and JSON, with the machine they were measured on."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from tillpay.bench.run import RunResult

#: The issue's targets on a 2-core machine, load generator included.
TARGETS = {"postgresql": 2000, "sqlite": 1500}
TARGET_P99_MS = 50
TARGET_SECONDS = 60


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float:  # float-ok: a size for people
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _postgres(url: str) -> dict[str, str]:
    u = make_url(url).set(drivername="postgresql")
    out: dict[str, str] = {}
    with psycopg.connect(u.render_as_string(hide_password=False), autocommit=True) as conn:
        for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"):
            row = conn.execute(f"SHOW {name}").fetchone()
            out[name] = str(row[0]) if row else "?"
    return out


def machine(databases: list[str]) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for db in databases:
        if db != "sqlite":
            info["postgresql"] = _postgres(db)
    return info


def _ratio(a: float, b: float | None) -> str:  # float-ok: rates
    return f"{a / b:.0%}" if b else "–"


def _ms(v: float) -> str:  # float-ok: milliseconds
    return f"{v:.1f}"


def markdown(
    runs: list[RunResult], info: dict[str, Any], *, load_after: list[float] | None = None
) -> str:  # float-ok
    """The results as Markdown: the pays, then the same run's limits side by side."""
    pg = info.get("postgresql")
    lines = [
        f"Measured {info['when']} on {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
        f"Linux {info['kernel']}, Python {info['python']}, SQLite {info['sqlite']}"
        + (
            f", PostgreSQL {pg['server_version']} (fsync {pg['fsync']}, synchronous_commit "
            f"{pg['synchronous_commit']}, shared_buffers {pg['shared_buffers']})"
            if pg
            else ""
        )
        + f"; load average {info['load_average'][0]} at the start"
        + (f", {load_after[0]:.2f} at the end" if load_after else "")
        + ". The load generator, the servers and the database share these cores.",
        "",
        "| database | workload | server processes | pays/s | requests/s | p50 ms | p95 ms | p99 ms | errors "
        "| database = generator | audit | server CPU ms/pay | machine busy |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in runs:
        c = r.config
        procs = f"{c['servers']}" + (" + worker" if c["separate_worker"] else "")
        lat = r.latency_ms
        lines.append(
            f"| {c['database']} | {c['workload']} | {procs} | {r.pays_per_second:,.0f} | "
            f"{r.requests_per_second:,.0f} | {_ms(lat.get('p50', 0))} | {_ms(lat.get('p95', 0))} | "
            f"{_ms(lat.get('p99', 0))} | {r.errors} | {'yes' if r.counts_match else 'NO'} ({r.db['paid']:,} paid) "
            f"| {'clean' if r.audit_ok else 'FAILED'} | {r.cpu.get('server_ms_per_pay', 0):.2f} | "
            f"{_ratio(r.cpu.get('machine_busy_s', 0), r.cpu.get('machine_total_s'))} |"
        )
    limited = [r for r in runs if r.limits]
    if limited:
        lines += [
            "",
            "Against the limits measured in the same run (Tillpay's pay rate as a share of each):",
            "",
            "| database | workload | server processes | pays/s | signed no-op endpoint req/s (server CPU "
            "ms/req) | database alone, pays/s | RSA-2048 signs/s, 1 core / all cores |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in limited:
            c, lim = r.config, r.limits
            noop = lim.get("noop", {}).get("rate")
            db = lim.get("db", {}).get("rate")
            rsa = lim.get("rsa", {})
            procs = f"{c['servers']}" + (" + worker" if c["separate_worker"] else "")
            lines.append(
                f"| {c['database']} | {c['workload']} | {procs} | {r.pays_per_second:,.0f} | "
                f"{noop or 0:,.0f} ({_ratio(r.pays_per_second, noop)}; "
                f"{lim.get('noop', {}).get('cpu', {}).get('server_ms_per_pay', 0):.2f}) | "
                f"{db or 0:,.0f} ({_ratio(r.pays_per_second, db)}) | "
                f"{rsa.get('one_core', 0):,.0f} / {rsa.get('all_cores', 0):,.0f} "
                f"({_ratio(r.pays_per_second, rsa.get('all_cores'))}) |"
            )
    notes = [f"- {r.config['database']} {r.config['workload']}: {n}" for r in runs for n in r.notes]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def targets(runs: list[RunResult]) -> list[str]:
    """Which of the issue's targets each pay-only run met, in words."""
    out = []
    for r in runs:
        c = r.config
        if c["workload"] != "pay":
            continue
        goal = TARGETS.get(c["database"], 0)
        p99 = r.latency_ms.get("p99", 0)
        checks = [
            (r.pays_per_second >= goal, f"{r.pays_per_second:,.0f} pays/s (target {goal:,})"),
            (p99 < TARGET_P99_MS, f"p99 {p99:.1f} ms (target < {TARGET_P99_MS})"),
            (c["seconds"] >= TARGET_SECONDS, f"{c['seconds']} s (target {TARGET_SECONDS})"),
            (r.passed, "no errors, counts match, audit clean" if r.passed else "errors, counts or audit"),
        ]
        met = all(ok for ok, _ in checks)
        out.append(
            f"{c['database']}, {c['servers']} server process(es): {'met' if met else 'NOT met'}: "
            + "; ".join(("" if ok else "missed ") + text for ok, text in checks)
        )
    return out
