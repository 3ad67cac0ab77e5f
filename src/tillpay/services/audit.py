"""``tillpay audit``: every ledger invariant, checked from the database alone (the SQL: store/audit.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tillpay.services.platform import Platform
from tillpay.store.audit import CHECKS

__all__ = ["CHECKS", "Finding", "audit"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken invariant with a few of the rows that break it."""

    check: str
    description: str
    count: int
    examples: list[str]


async def audit(p: Platform, *, examples: int = 5) -> list[Finding]:
    """Run every check; an empty list means the ledger is sound."""
    findings = []
    async with p.reader() as r:
        for name, (description, _sql) in CHECKS.items():
            rows = await r.audit.violations(name)
            if rows:
                shown = [" ".join(str(v) for v in row) for row in rows[:examples]]
                findings.append(Finding(name, description, len(rows), shown))
    return findings
