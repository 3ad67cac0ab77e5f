"""``tillpay audit``: the ledger invariants."""

from __future__ import annotations

import sys

import click

from tillpay.cli.common import Ctx, pass_ctx
from tillpay.services import audit as audit_service

# ----------------------------------------------------------------------------------------------- audit


@click.command()
@pass_ctx
def audit(c: Ctx) -> None:
    """Check every ledger invariant; exit 1 and name what broke if any fails."""
    findings = c.run(audit_service.audit)
    data = {
        "ok": not findings,
        "checks": list(audit_service.CHECKS),
        "findings": [
            {"check": f.check, "description": f.description, "count": f.count, "examples": f.examples}
            for f in findings
        ],
    }
    if findings:
        text = "\n".join(
            f"FAIL {f.check}: {f.description} ({f.count} rows)\n    " + "\n    ".join(f.examples)
            for f in findings
        )
    else:
        text = f"ok: all {len(audit_service.CHECKS)} ledger checks pass"
    c.out(data, text)
    sys.exit(1 if findings else 0)
