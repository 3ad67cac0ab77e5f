"""Where the time goes: summaries of py-spy's collapsed stacks (``py-spy record --format raw``).

``python -m tillpay.bench.profile FILE...`` (files as ``tillpay bench --profile`` names them:
``<database>-<workload>-<N>p-*.txt``) prints the share of samples spent in each function
(inclusive: anywhere on the stack; self: at the top) and in a few named buckets (signing, SQL driver,
SQLAlchemy, HTTP, logging), which is how docs/benchmark.md explains the pay rate.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: bucket → patterns of frames (``function (file)``) whose time counts there. A sample goes to the
#: bucket of the topmost frame that matches any pattern (walking from the top of the stack down), so a
#: bucket is where the CPU actually was; within one frame the first pattern listed wins.
SQLITE = "SQLite statements (sqlite3, in C)"
#: sqlite3 runs in C with no Python frame of its own: on SQLite, time at the top of the pay path's
#: driver calls is the statements'.
SQLITE_CALLER = re.compile(r"Driver\.(rows|many) \(tillpay/store/driver")
BUCKETS: list[tuple[str, re.Pattern[str]]] = [
    ("RSA sign/verify (cryptography)", re.compile(r"\b(sign|verify) \(cryptography/|rsa_(sign|verify) ")),
    # The server uses threads only for SQLite's COMMIT (its fsync) and for waiting on another
    # process's write lock.
    ("SQLite COMMIT and lock waits (worker thread)", re.compile(r"concurrent/futures/thread\.py")),
    (SQLITE, re.compile(r"aiosqlite/|sqlite3|sqlite_inline")),
    ("asyncpg (driver)", re.compile(r"asyncpg/")),
    ("SQLAlchemy (compile, execute, rows)", re.compile(r"sqlalchemy/")),
    ("logging (structlog)", re.compile(r"structlog/|logging/")),
    ("HTTP server (uvicorn, starlette)", re.compile(r"uvicorn/|starlette/|httptools")),
    ("event loop", re.compile(r"asyncio/|uvloop")),
    ("Tillpay code", re.compile(r"tillpay/")),
]


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    return stack.split(";"), int(count)


def _bucket(frames: list[str], sqlite: bool = False) -> str:
    if sqlite and SQLITE_CALLER.search(frames[-1]):
        return SQLITE
    for f in reversed(frames):
        for name, rx in BUCKETS:
            if rx.search(f):
                return name
    return "other"


def summarize(paths: list[Path], top: int = 30) -> str:
    """A text report of one or more collapsed-stack files."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    idle = 0
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            frames, n = _frames(line)
            total += n
            top_frame = frames[-1]
            if "select (selectors" in top_frame or ("_run_once" in top_frame and len(frames) < 6):
                idle += n
            own[top_frame] += n
            for f in set(frames):
                inclusive[f] += n
            buckets[_bucket(frames, path.name.startswith("sqlite"))] += n
    if not total:
        return "no samples"
    pct = 100 / total
    out = [f"{total} samples ({idle * pct:.1f} % idle in the event loop's select)", "", "by bucket:"]
    out += [f"  {n * pct:5.1f} %  {name}" for name, n in buckets.most_common()]
    out += ["", "self (top of stack):"]
    out += [f"  {n * pct:5.1f} %  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive (anywhere on the stack), Tillpay functions:"]
    out += [f"  {n * pct:5.1f} %  {f}" for f, n in inclusive.most_common() if "tillpay/" in f][:top]
    return "\n".join(out)


def main() -> None:
    """Print the summary of the files given."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    print(summarize(a.files, a.top))


if __name__ == "__main__":
    main()
