"""Where the time goes: summaries of py-spy's collapsed stacks (``py-spy record --format raw``).

``python -m tillpay.bench.profile FILE...`` prints the share of samples spent in each function
(inclusive: anywhere on the stack; self: at the top) and in a few named buckets (signing, SQL driver,
SQLAlchemy, HTTP, logging), which is how docs/benchmark.md explains the pay rate.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: bucket → patterns of frames (``function (file)``) whose time counts there; the first match wins,
#: walking from the top of the stack down, so a bucket is where the CPU actually was.
BUCKETS: list[tuple[str, re.Pattern[str]]] = [
    ("RSA sign/verify (cryptography)", re.compile(r"\b(sign|verify) \(cryptography/|rsa_(sign|verify) ")),
    ("SQLite (driver, in C)", re.compile(r"aiosqlite/|sqlite3")),
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
            for name, rx in BUCKETS:
                if any(rx.search(f) for f in reversed(frames[-6:])):
                    buckets[name] += n
                    break
            else:
                buckets["other"] += n
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
