"""Benchmark: simulate a day of N transactions, settle it, reconcile every merchant's journal.

    .venv/bin/python bench/settlement.py -n 1000000                       # SQLite file in a temp dir
    .venv/bin/python bench/settlement.py -n 1000000 --database-url postgresql://...

Each step runs in its own process through the ``tillpay`` command line, so its wall time and peak
memory (max RSS) are its own. Prints a Markdown table (docs/settlement.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = "2026-11-20"


def step(name: str, args: list[str], env: dict[str, str], cwd: Path) -> dict[str, object]:
    """Run one ``tillpay`` command; its seconds and peak RSS."""
    tillpay = str(Path(sys.executable).with_name("tillpay"))
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.monotonic()\n"
        "rc = subprocess.call(sys.argv[1:])\n"
        "print(json.dumps({'rc': rc, 'seconds': round(time.monotonic() - t, 1),"
        " 'peak_mb': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))\n"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and command line
        [sys.executable, "-c", code, tillpay, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["step"] = name
    if result["rc"] not in (0,):
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"{name} failed with exit code {result['rc']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("--merchants", type=int, default=5)
    ap.add_argument("--database-url")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tillpay-bench-"))
    db = args.database_url or f"sqlite:///{work / 'bench.db'}"
    env = dict(os.environ, TILLPAY_DATABASE_URL=db, TILLPAY_SETTLEMENT_DIR=str(work / "settlements"))
    env.pop("TILLPAY_LOG_LEVEL", None)
    rows = [
        step(
            "simulate (bulk)",
            ["simulate", "--bulk", "-n", str(args.n), "--merchants", str(args.merchants), "--date", DAY],
            env,
            work,
        ),
        step("settle run", ["settle", "run", "--date", DAY], env, work),
    ]
    journals = sorted((work / "journals").glob(f"journal_*_{DAY.replace('-', '')}.csv"))
    started = time.monotonic()
    peak = 0
    for j in journals:
        partner = j.name.split("_")[1]
        r = step(
            f"reconcile {partner}",
            [
                "reconcile",
                "--journal",
                str(j),
                "--files",
                str(work / "settlements" / DAY / partner),
                "--csv",
                str(work / f"diff-{partner}.csv"),
            ],
            env,
            work,
        )
        peak = max(peak, int(r["peak_mb"]))  # type: ignore[call-overload]
    rows.append(
        {
            "step": f"reconcile ({len(journals)} merchants)",
            "seconds": round(time.monotonic() - started, 1),
            "peak_mb": peak,
        }
    )
    rows.append(step("audit", ["audit"], env, work))
    print(f"\n{args.n:,} transactions on {'PostgreSQL' if db.startswith('postgres') else 'SQLite'}\n")
    print("| step | seconds | peak memory (MB) |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['step']} | {r['seconds']} | {r['peak_mb']} |")
    print(f"\nwork directory: {work}")


if __name__ == "__main__":
    main()
