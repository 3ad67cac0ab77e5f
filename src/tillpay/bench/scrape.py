"""What a server's ``/metrics`` says during and after a benchmark run (docs/operations.md).

The benchmark's servers run on loopback, where a production server answers ``/metrics`` without a token.
A build without ``/metrics`` (``--server-pythonpath`` naming an older checkout) gives ``{}``.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

#: Gauges read as they are (one sample each, or summed over their samples).
GAUGES = (
    "tillpay_confirmations_waiting",
    "tillpay_notifications_queued",
    "tillpay_notifications_due",
    "tillpay_notification_oldest_age_seconds",
    "tillpay_db_pool_checked_out",
    "tillpay_db_pool_size",
    "tillpay_database_up",
)


def scrape(base_url: str, timeout: float = 10.0) -> dict[str, Any]:  # float-ok: seconds
    """The figures a dashboard would show: requests per dialect, pay answers per outcome, risk verdicts,
    the waiting confirmations, the notification queue and the database pool."""
    try:
        r = httpx.get(base_url + "/metrics", timeout=timeout)
    except httpx.HTTPError:
        return {}
    if r.status_code != 200:
        return {}
    requests: Counter[str] = Counter()
    pays: Counter[str] = Counter()
    risk: Counter[str] = Counter()
    gauges: dict[str, float] = {}  # float-ok: Prometheus sample values
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            if s.name == "tillpay_http_requests_total":
                requests[s.labels.get("dialect", "other")] += int(s.value)
            elif s.name == "tillpay_pay_answers_total":
                pays[s.labels.get("outcome", "other")] += int(s.value)
            elif s.name == "tillpay_risk_decisions_total":
                risk[s.labels.get("verdict", s.labels.get("decision", "other"))] += int(s.value)
            elif s.name in GAUGES:
                gauges[s.name.removeprefix("tillpay_")] = (
                    gauges.get(s.name.removeprefix("tillpay_"), 0) + s.value
                )
    return {
        "requests_by_dialect": dict(requests),
        "pay_answers": dict(pays),
        "risk_decisions": dict(risk),
        **{k: round(v, 3) for k, v in gauges.items()},
    }


class During:
    """Scrape once, ``after`` seconds from now, in a thread (the load generator holds the main one)."""

    def __init__(self, base_url: str, after: float) -> None:  # float-ok: seconds
        self.result: dict[str, Any] = {}
        self._timer = threading.Timer(after, self._run, args=(base_url,))
        self._timer.daemon = True
        self._timer.start()

    def _run(self, base_url: str) -> None:
        self.result = scrape(base_url)

    def join(self) -> dict[str, Any]:
        """The scrape's figures (``{}`` if it has not run or found no ``/metrics``)."""
        self._timer.cancel()
        if self._timer.is_alive():
            self._timer.join(timeout=15)
        return self.result
