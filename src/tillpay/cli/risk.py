"""``tillpay risk``: the risk rules and why a payment was decided as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tillpay.cli.common import Ctx, pass_ctx

# ------------------------------------------------------------------------------------------------ risk


@click.group()
def risk() -> None:
    """Risk rules and limits: per scheme, with overrides per merchant and per user."""


def _scope(merchant_id: str | None, user: str | None) -> tuple[str, str]:
    if merchant_id and user:
        raise click.UsageError("give --merchant or --user, not both")
    if merchant_id:
        return "merchant", merchant_id
    if user:
        return "user", user
    return "scheme", ""


def _load_document(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON: both are accepted
    except yaml.YAMLError as e:
        raise click.BadParameter(f"{name} is not YAML or JSON: {e}") from None


@risk.command("show")
@click.option("--merchant", "merchant_id", help="Show what applies to this merchant (partner id).")
@click.option("--user", help="Show what applies to this wallet user (login id); with --merchant too.")
@click.option("--stored", is_flag=True, help="Show the stored rule document instead of the effective rules.")
@pass_ctx
def risk_show(c: Ctx, merchant_id: str | None, user: str | None, stored: bool) -> None:
    """Show the rules in force (scheme, merged with merchant and user overrides)."""
    import yaml

    from tillpay.domain import risk as risk_domain
    from tillpay.services import risk as risk_service

    if stored:
        doc = c.run(risk_service.stored_rules)
        c.out(doc, yaml.safe_dump(doc, sort_keys=True, allow_unicode=True).rstrip())
        return
    cfg = c.run(lambda p: risk_service.effective(p, merchant_id or "", user))
    data = risk_domain.to_text(cfg)
    c.out(data, yaml.safe_dump(data, sort_keys=True, allow_unicode=True).rstrip())


@risk.command("set")
@click.argument("rule")
@click.argument("value")
@click.option("--merchant", "merchant_id", help="Override for one merchant (partner id).")
@click.option("--user", help="Override for one wallet user (login id).")
@pass_ctx
def risk_set(c: Ctx, rule: str, value: str, merchant_id: str | None, user: str | None) -> None:
    """Set one rule, e.g. `risk set daily_limit '{CNY: "50000.00"}'` or `risk set velocity_count 10`."""
    from tillpay.services import risk as risk_service

    scope, subject = _scope(merchant_id, user)
    parsed = _load_document(value, "VALUE")
    stored = c.run(lambda p: risk_service.set_rules(p, scope, subject, {rule: parsed}))
    c.out(
        {"scope": scope, "subject": subject, "rules": stored},
        f"{scope} {subject} {rule} = {stored[rule]}".replace("  ", " "),
    )


@risk.command("import")
@click.argument("rules_file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def risk_import(c: Ctx, rules_file: str) -> None:
    """Load a rule document (YAML or JSON: scheme, merchants, users); each named scope is replaced."""
    from tillpay.services import risk as risk_service

    doc = _load_document(Path(rules_file).read_text(encoding="utf-8"), rules_file)
    res = c.run(lambda p: risk_service.import_rules(p, doc))
    c.out(res, f"imported {res['scopes']} rule scopes")


@risk.command("explain")
@click.argument("trade_no")
@pass_ctx
def risk_explain(c: Ctx, trade_no: str) -> None:
    """Why a payment was allowed, sent for confirmation or declined: the rules that fired and their inputs."""
    from tillpay.services import risk as risk_service

    e = c.run(lambda p: risk_service.explain(p, trade_no))
    data = {
        "trade_no": e.trade_no,
        "verdict": e.verdict,
        "rule": e.rule,
        "code": e.code,
        "fired": e.fired,
        "inputs": e.inputs,
        "rules": e.config,
        "decided_at": e.decided_at.isoformat(),
    }
    lines = [
        f"{e.trade_no}: {e.verdict} by rule {e.rule}" + (f" ({e.code})" if e.code else ""),
        f"rules that fired: {', '.join(e.fired) or 'none'}",
        "inputs:",
    ]
    lines += [f"  {k}: {v}" for k, v in e.inputs.items()]
    c.out(data, "\n".join(lines))
