"""Risk rules as data: stored per scheme, merchant and user; every decision stored and explainable."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tillpay.domain import risk
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.money import format_amount
from tillpay.services.platform import Platform
from tillpay.store.risk import RiskRepository
from tillpay.store.uow import Repositories

SCOPES = ("scheme", "merchant", "user")


def _default_scheme(p: Platform) -> dict[str, Any]:
    # The scheme starts from TILLPAY_CONFIRM_ABOVE until the operator stores rules of its own.
    return {"confirm_above": {c: format_amount(v, c) for c, v in p.confirm_above.items()}}


@functools.lru_cache(maxsize=4096)
def _built(scheme: str, merchant: str | None, user: str | None) -> tuple[risk.RiskConfig, str]:
    cfg = risk.build([json.loads(scheme), json.loads(merchant or "{}"), json.loads(user or "{}")])
    return cfg, json.dumps(risk.to_text(cfg))


_DEFAULT_SCHEME_TEXT: dict[tuple[tuple[str, int], ...], str] = {}


def config_of(
    p: Platform, scheme: str | None, merchant: str | None, user: str | None
) -> tuple[risk.RiskConfig, str]:
    """The rules in force from the stored layers' text (None: not stored), and their JSON for the record.

    Built once per distinct text: a pay reads the layers with its other statements, never from a cache,
    so a rule change applies to the very next payment.
    """
    if scheme is None:
        key = tuple(sorted(p.confirm_above.items()))
        scheme = _DEFAULT_SCHEME_TEXT.get(key)
        if scheme is None:
            scheme = _DEFAULT_SCHEME_TEXT[key] = json.dumps(_default_scheme(p))
    return _built(scheme, merchant, user)


async def _subject_exists(repo: RiskRepository, scope: str, subject: str) -> None:
    if scope == "scheme":
        if subject:
            raise TillpayError(Code.ILLEGAL_ARGUMENT, "the scheme scope takes no subject")
        return
    if not await repo.subject_exists(scope, subject):
        raise TillpayError(Code.NOT_FOUND, f"no {scope} {subject!r}")


async def _store(
    p: Platform, repo: RiskRepository, scope: str, subject: str, clean: dict[str, Any], replace: bool
) -> dict[str, Any]:
    await _subject_exists(repo, scope, subject)
    row = await repo.layer(scope, subject)
    if row is None:
        base = _default_scheme(p) if scope == "scheme" and not replace else {}
        merged = {**base, **clean}
        await repo.add_layer(scope, subject, json.dumps(merged), p.now())
    else:
        merged = clean if replace else {**json.loads(row.config), **clean}
        await repo.replace_layer(row.id, json.dumps(merged), p.now())
    return merged


async def set_rules(
    p: Platform, scope: str, subject: str, rules: dict[str, Any], *, replace: bool = False
) -> dict[str, Any]:
    """Store one scope's rules (merged into what is there unless ``replace``); returns the stored rules."""
    if scope not in SCOPES:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"scope is one of {', '.join(SCOPES)}")
    clean = risk.parse_config(rules)
    async with p.unit_of_work() as uow:
        merged = await _store(p, uow.risk, scope, subject, clean, replace)
        await uow.commit()
    return merged


async def import_rules(p: Platform, document: dict[str, Any]) -> dict[str, int]:
    """Load a whole rule document ``{scheme: {...}, merchants: {partner: {...}}, users: {login: {...}}}``.

    Each named scope is replaced by what the document says; everything is validated before anything is
    stored and stored in one transaction, so a bad document changes nothing.
    """
    if not isinstance(document, dict) or not set(document) <= {"scheme", "merchants", "users"}:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a rule document has the keys scheme, merchants, users")
    plan: list[tuple[str, str, dict[str, Any]]] = []
    if "scheme" in document:
        plan.append(("scheme", "", document["scheme"] or {}))
    for scope, key in (("merchant", "merchants"), ("user", "users")):
        section = document.get(key) or {}
        if not isinstance(section, dict):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"{key} maps ids to rule sets")
        plan.extend((scope, str(subject), rules or {}) for subject, rules in section.items())
    checked = [(scope, subject, risk.parse_config(rules)) for scope, subject, rules in plan]  # all first
    async with p.unit_of_work() as uow:
        for scope, subject, _ in checked:
            await _subject_exists(uow.risk, scope, subject)
        for scope, subject, clean in checked:
            await _store(p, uow.risk, scope, subject, clean, True)
        await uow.commit()
    return {"scopes": len(plan)}


async def stored_rules(p: Platform) -> dict[str, Any]:
    """Every stored scope, as a rule document (what ``import_rules`` takes)."""
    async with p.reader() as r:
        rows = await r.risk.layers()
    doc: dict[str, Any] = {"scheme": _default_scheme(p), "merchants": {}, "users": {}}
    for r in rows:
        cfg = json.loads(r.config)
        if r.scope == "scheme":
            doc["scheme"] = cfg
        else:
            doc["merchants" if r.scope == "merchant" else "users"][r.subject] = cfg
    return doc


async def layers_for(
    p: Platform, repos: Repositories, *, partner_id: str, login_id: str | None
) -> list[dict[str, Any]]:
    """The scheme, merchant and user rule layers that apply to one payment, in override order (read in
    the caller's unit of work or reader, inside its transaction)."""
    return _layers(p, await repos.risk.layers_for(partner_id, login_id))


def _layers(p: Platform, stored: dict[str, str]) -> list[dict[str, Any]]:
    by_scope = {scope: json.loads(config) for scope, config in stored.items()}
    return [
        by_scope.get("scheme", _default_scheme(p)),
        by_scope.get("merchant", {}),
        by_scope.get("user", {}),
    ]


async def effective(p: Platform, partner_id: str, login_id: str | None = None) -> risk.RiskConfig:
    """The rules in force for a merchant (and a customer)."""
    async with p.reader() as r:
        stored = await r.risk.layers_for(partner_id, login_id)
    return risk.build(_layers(p, stored))


def periods(p: Platform, now: datetime) -> tuple[datetime, datetime]:
    """The start of today and of this month in the scheme's time zone, as UTC instants."""
    local = now.astimezone(ZoneInfo(p.settings.timezone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


async def customer_totals(
    p: Platform, repos: Repositories, user_id: int, cfg: risk.RiskConfig
) -> tuple[int, int, int]:
    """Today's and this month's paid-or-waiting amounts, and the payments in the velocity window.

    Called with the customer's wallet row locked, so concurrent payments of one customer see each other
    and cannot both slip under a limit.
    """
    now = p.now()
    day, month = periods(p, now)
    since_velocity = now - timedelta(minutes=cfg.velocity_minutes)
    return await repos.risk.customer_totals(user_id, day, month, since_velocity)


async def record(
    repos: Repositories,
    payment_id: int,
    decision: risk.Decision,
    inputs: risk.RiskInputs,
    cfg: risk.RiskConfig,
    now: datetime,
    *,
    config_text: str | None = None,
) -> None:
    """Store a decision with the rules that fired, the facts they saw and the rules in force."""
    text = config_text if config_text is not None else json.dumps(risk.to_text(cfg))
    await repos.risk.add_decision(decision_values(payment_id, decision, inputs, text, now))


def decision_values(
    payment_id: int, decision: risk.Decision, inputs: risk.RiskInputs, config_text: str, now: datetime
) -> dict[str, Any]:
    """The ``risk_decisions`` row of a decision."""
    return {
        "payment_id": payment_id,
        "verdict": decision.verdict.value,
        "rule": decision.rule,
        "code": decision.code.value if decision.code else None,
        "fired": json.dumps(list(decision.fired)),
        "inputs": json.dumps(risk.inputs_json(inputs)),
        "config": config_text,
        "created_at": now,
    }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a payment was allowed, sent for confirmation or declined."""

    trade_no: str
    verdict: str
    rule: str
    code: str | None
    fired: list[str]
    inputs: dict[str, Any]
    config: dict[str, Any]
    decided_at: datetime


async def explain(p: Platform, trade_no: str) -> Explanation:
    """The stored decision of a payment; NOT_FOUND if the payment or its decision does not exist."""
    async with p.reader() as r:
        row = await r.risk.decision_of(trade_no)
    if row is None:
        raise TillpayError(Code.NOT_FOUND, f"no risk decision for payment {trade_no!r}")
    return Explanation(
        trade_no=row.trade_no,
        verdict=row.verdict,
        rule=row.rule,
        code=row.code,
        fired=json.loads(row.fired),
        inputs=json.loads(row.inputs),
        config=json.loads(row.config),
        decided_at=row.created_at,
    )
