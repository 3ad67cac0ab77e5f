"""docs/grafana-dashboard.json and docs/operations.md name only metrics that ``/metrics`` exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from conftest import LiveServer
from dialect_clients import make_shop
from metrics_scrape import parse
from tillpay.web.metrics import METRIC_NAMES

DOCS = Path(__file__).parents[2] / "docs"
_NAME = re.compile(r"\btillpay_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum")


def exposed_names(live: LiveServer) -> set[str]:
    """The sample names of a scrape after a pay (so that the labelled counters have series)."""
    shop = make_shop(live)
    with shop.mapi() as c:
        assert c.pay("D-1", shop.code(), "10.00", "USD", "Tea").ok
    samples = parse(httpx.get(live.url + "/metrics").text)
    return {name for name, _ in samples}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_every_dashboard_query_and_every_documented_metric_is_exposed(live: LiveServer) -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    exposed = exposed_names(live)
    queries = [t["expr"] for p in panels(dashboard) if p["type"] != "row" for t in p["targets"]]
    assert len(queries) >= 20
    for p in panels(dashboard):
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["type"] == "prometheus", p["title"]
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    used = {name for q in queries for name in _NAME.findall(q)}
    missing = {name for name in used if name not in exposed}
    assert not missing, f"the dashboard queries metrics /metrics does not expose: {sorted(missing)}"
    # Every metric is on the dashboard, in docs/operations.md, and exposed (histograms by their series).
    operations = (DOCS / "operations.md").read_text()
    for name in METRIC_NAMES:
        series = {name + s for s in _SUFFIXES} if name.endswith("_seconds") and "duration" in name else {name}
        assert series & exposed, name
        assert series & used or name in used, f"{name} is not on the dashboard"
        assert f"`{name}`" in operations, f"{name} is not in docs/operations.md"
    documented = set(_NAME.findall(operations))
    assert {n for n in documented if n.removesuffix("_bucket") not in METRIC_NAMES} <= exposed, documented
