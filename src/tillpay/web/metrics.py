"""Prometheus ``/metrics``, and the middleware that gives every request an id and counts it.

What is measured from the outside, without touching the use cases (docs/operations.md lists every name):

- the middleware times each request and labels it by dialect and service: MAPI's ``service=``, the Open
  Platform's ``method=``, Antom's path; for the other pages the route's template. A name the gateway does
  not serve is counted as ``other``, so a client cannot make up label values (each value is a new series);
- pay answers are read back (result code, Open Platform ``code``/``sub_code``, Antom ``result``) and
  counted by outcome and code, each code checked against the dialect's own table;
- on each scrape, a few bounded reads of the database (store/metrics.py): risk verdicts, confirmations
  and QR orders waiting, the notification queue, settlement runs; and this process's connection pool.

Under ``tillpay serve`` the metrics live in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode, a fresh directory per ``serve``), so a scrape answered by any server process shows
the sum over all of them.
"""

from __future__ import annotations

import asyncio
import glob
import hmac
import ipaddress
import json
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from tillpay import __version__, logs
from tillpay.domain.errors import Code
from tillpay.protocols.antom import gateway as antom
from tillpay.protocols.antom.codes import ANTOM_RESULTS
from tillpay.protocols.antom.codes import SUCCESS as ANTOM_SUCCESS
from tillpay.protocols.heartbeat.gateway import PATH as HEARTBEAT_PATH
from tillpay.protocols.mapi import gateway as mapi
from tillpay.protocols.mapi.codes import MAPI_ERRORS
from tillpay.protocols.mapi.services import PAY as MAPI_PAY
from tillpay.protocols.openapi import codes as openapi_codes
from tillpay.protocols.openapi import gateway as openapi
from tillpay.protocols.openapi.codes import OPEN_CODES
from tillpay.services.platform import Platform
from tillpay.store.metrics import COUNT_CAP as COUNT_CAP
from tillpay.store.uow import Reader

log = structlog.get_logger("tillpay.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# ------------------------------------------------------------------------------------------ metrics

# ``*_created`` series exist only outside multiprocess mode: leave them out so both modes expose the same.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

#: This process's metrics when not in multiprocess mode (``uvicorn`` run by hand, the tests' apps).
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "tillpay_http_requests",
    "HTTP requests answered, by dialect, service and HTTP status.",
    ["dialect", "service", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "tillpay_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by dialect and service.",
    ["dialect", "service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
PAY_ANSWERS = Counter(
    "tillpay_pay_answers",
    "Pay requests answered, by dialect, outcome (success, waiting, failed, unknown, rejected) and the "
    "dialect's result code.",
    ["dialect", "outcome", "code"],
    registry=REGISTRY,
)
# livesum: the pool of each running process, summed; a dead process's part is dropped (_sweep_dead).
POOL_CHECKED_OUT = Gauge(
    "tillpay_db_pool_checked_out",
    "Database connections in use, summed over the server processes.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "tillpay_db_pool_size",
    "Database connections kept open (pool size), summed over the server processes.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "tillpay_db_pool_overflow",
    "Connections opened beyond the pool size (negative: pool slots not opened yet), summed over processes.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

#: Every name /metrics exposes (the dashboard test checks its queries against this list).
METRIC_NAMES = (
    "tillpay_http_requests_total",
    "tillpay_http_request_duration_seconds",
    "tillpay_pay_answers_total",
    "tillpay_db_pool_checked_out",
    "tillpay_db_pool_size",
    "tillpay_db_pool_overflow",
    "tillpay_build_info",
    "tillpay_database_up",
    "tillpay_risk_decisions_total",
    "tillpay_confirmations_waiting",
    "tillpay_confirmation_oldest_age_seconds",
    "tillpay_qr_orders_waiting",
    "tillpay_notifications_queued",
    "tillpay_notifications_due",
    "tillpay_notification_oldest_age_seconds",
    "tillpay_notifications_failed",
    "tillpay_settlement_runs_total",
    "tillpay_settlement_last_run_timestamp_seconds",
    "tillpay_settlement_payouts_held",
)


def multiprocess() -> bool:
    """Whether this process's metrics are kept in ``PROMETHEUS_MULTIPROC_DIR`` (chosen at import)."""
    return values.ValueClass is not values.MutexValue


def multiprocess_dir() -> str:
    """prometheus-client's metrics directory (its own variable, set by ``tillpay serve``, not a setting)."""
    return os.environ["PROMETHEUS_MULTIPROC_DIR"]


def forget_this_process() -> None:
    """At a server process's clean exit: its pool gauges stop counting in the sums."""
    if multiprocess():
        mark_process_dead(os.getpid(), multiprocess_dir())  # type: ignore[no-untyped-call]  # unannotated upstream


# ---------------------------------------------------------------------------------- classification

_MAPI_SERVICES = frozenset(mapi.HANDLERS)
_OPEN_METHODS = frozenset(openapi.HANDLERS)
_ANTOM_OPS = frozenset(antom.HANDLERS)
#: First path segments that name a part of the app (anything else is ``other``).
_SECTIONS = frozenset({"wallet", "console", "settlement", "qr", "health", "ready", "metrics", "bench"})
#: Enough of a form body to find ``service=`` or ``method=`` in; more is not kept.
_CAPTURE = 64 * 1024

_MAPI_CODES = frozenset(v for v, _ in MAPI_ERRORS.values()) | {"SUCCESS"}
_OPEN_SUB_CODES = frozenset(c.sub_code for c in OPEN_CODES.values()) | {f"ACQ.{c.value}" for c in Code}
_OPEN_TOP = frozenset(c[0] for c in (openapi_codes.SUCCESS, openapi_codes.WAITING, openapi_codes.UNKNOWN))
_ANTOM_CODES = frozenset(r.code for r in ANTOM_RESULTS.values()) | {ANTOM_SUCCESS.code}


def _form_value(raw: bytes, name: bytes) -> bytes | None:
    """The first ``name=value`` pair's value in form bytes (still quoted), or None. ``name`` ends with
    ``=``. A plain search, not a regular expression: it runs on every pay's whole body."""
    at = raw.find(name)
    while at != -1:
        if at == 0 or raw[at - 1] == 0x26:  # at the start of a pair (after "&")
            start = at + len(name)
            end = raw.find(b"&", start)
            return raw[start:] if end == -1 else raw[start:end]
        at = raw.find(name, at + 1)
    return None


def _first_value(query: bytes, body: bytes, name: bytes) -> bytes | None:
    """The query's value of ``name``, else the body's (as ``app.gateway`` reads them)."""
    found = _form_value(query, name)
    return found if found is not None else _form_value(body, name)


def _gateway_dialect(query: bytes, body: bytes) -> tuple[str, str]:
    """``/gateway.do``'s dialect and service, decided as ``app.gateway`` decides it."""
    service = _first_value(query, body, b"service=")
    if service is None:
        method = _first_value(query, body, b"method=")
        if method is not None:
            name = unquote_plus(method.decode("latin-1"))
            return "openapi", name if name in _OPEN_METHODS else "other"
    name = unquote_plus((service or b"").decode("latin-1"))
    return "mapi", name if name in _MAPI_SERVICES else "other"


def _route_dialect(scope: Scope) -> tuple[str, str]:
    path: str = scope.get("path", "")
    for prefix in (antom.PREFIX, antom.SANDBOX_PREFIX):  # the sandbox path serves the same operations
        if path.startswith(prefix):
            op = path[len(prefix) :]
            return "antom", op if op in _ANTOM_OPS else "other"
    if path == HEARTBEAT_PATH:
        return "heartbeat", "heartbeat"
    section = path.split("/", 2)[1] if path.count("/") else ""
    if section not in _SECTIONS:
        return "other", "other"
    route = scope.get("route")
    template = getattr(route, "path", None)
    # The route's template, never the path itself: ids in paths would make a series each.
    return section, template if isinstance(template, str) and template else "other"


def _allowed(code: str, known: frozenset[str]) -> str:
    return code if code in known else "other"


_MAPI_SUCCESS = re.compile(rb"<is_success>([TF])</is_success>")
_MAPI_TOP_ERROR = re.compile(rb"<is_success>F</is_success><error>([A-Za-z0-9_.]{1,64})</error>")
_MAPI_RESULT = re.compile(rb"<result_code>([A-Z_]{1,32})</result_code>")
_MAPI_ERROR = re.compile(rb"<response><alipay>.*?<error>([A-Za-z0-9_.]{1,64})</error>", re.S)


def pay_outcome(dialect: str, answer: bytes) -> tuple[str, str]:
    """(outcome, code) of a pay answer as the client reads it; codes outside the dialect's table are
    ``other``."""
    if dialect == "mapi":
        ok = _MAPI_SUCCESS.search(answer)
        if ok is None or ok.group(1) == b"F":
            top = _MAPI_TOP_ERROR.search(answer)
            return "rejected", _allowed(top.group(1).decode() if top else "", _MAPI_CODES)
        result = _MAPI_RESULT.search(answer)
        rc = result.group(1).decode() if result else ""
        if rc == "SUCCESS":  # the common answer: no error to look for (a scan of the whole answer)
            return "success", "SUCCESS"
        err = _MAPI_ERROR.search(answer)
        code = _allowed(err.group(1).decode() if err else rc, _MAPI_CODES)
        if rc in ("UNKNOW", "UNKNOWN"):
            return ("waiting" if code == "WAIT_BUYER_PAY" else "unknown"), code
        return "failed", code
    try:
        data = json.loads(answer)
    except ValueError:
        return "unknown", "other"
    if not isinstance(data, dict):
        return "unknown", "other"
    if dialect == "openapi":
        body = data.get(openapi.PAY.replace(".", "_") + "_response") or data.get("error_response") or {}
        if not isinstance(body, dict):
            return "unknown", "other"
        code = str(body.get("code", ""))
        sub = str(body.get("sub_code", ""))
        outcome = {"10000": "success", "10003": "waiting", "20000": "unknown", "40004": "failed"}
        # Success and waiting carry no sub-code: their public code is the code.
        return outcome.get(code, "rejected"), _allowed(sub, _OPEN_SUB_CODES) if sub else _allowed(
            code, _OPEN_TOP
        )
    result = data.get("result")
    if not isinstance(result, dict):
        return "unknown", "other"
    status, code = str(result.get("resultStatus", "")), str(result.get("resultCode", ""))
    if status == "S":
        return "success", ANTOM_SUCCESS.code
    if status == "U":
        return ("waiting" if code == "PAYMENT_IN_PROCESS" else "unknown"), _allowed(code, _ANTOM_CODES)
    return "failed", _allowed(code, _ANTOM_CODES)


def _is_pay(dialect: str, service: str) -> bool:
    return (dialect, service) in (("mapi", MAPI_PAY), ("openapi", openapi.PAY), ("antom", "pay"))


# -------------------------------------------------------------------------------------- request ids

#: A request id we accept from the caller: short, and only characters that are safe in a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` if well-formed, else a new random one (32 hex digits)."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return secrets.token_hex(16)


class Observe:
    """ASGI middleware: a request id for the logs and the answer, and the request metrics."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope.get("headers", ()))
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        is_gateway = scope.get("path") == "/gateway.do"
        is_antom_pay = scope.get("path") in (antom.PREFIX + "pay", antom.SANDBOX_PREFIX + "pay")
        body = bytearray() if is_gateway else None
        answer = bytearray() if is_gateway or is_antom_pay else None
        status = 500
        header = (b"x-request-id", rid.encode())

        async def tee_receive() -> Message:
            message = await receive()
            if body is not None and message["type"] == "http.request" and len(body) < _CAPTURE:
                body.extend(message.get("body", b"")[: _CAPTURE - len(body)])
            return message

        async def tag_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif message["type"] == "http.response.body" and answer is not None and len(answer) < _CAPTURE:
                answer.extend(message.get("body", b"")[: _CAPTURE - len(answer)])
            await send(message)

        try:
            await self.app(scope, tee_receive, tag_send)
        except BaseException:
            # The id stays set: the server logs this error next, in this request's own task.
            self._count(scope, 500, started, body, None)
            raise
        self._count(scope, status, started, body, answer)
        logs.request_id.reset(token)

    def _count(
        self, scope: Scope, status: int, started: float, body: bytearray | None, answer: bytearray | None
    ) -> None:
        if body is not None:
            dialect, service = _gateway_dialect(scope.get("query_string", b""), bytes(body))
        else:
            dialect, service = _route_dialect(scope)
        _child(REQUESTS, dialect, service, str(status)).inc()
        _child(LATENCY, dialect, service).observe(time.perf_counter() - started)
        if answer is not None and status == 200 and _is_pay(dialect, service):
            _child(PAY_ANSWERS, dialect, *pay_outcome(dialect, bytes(answer))).inc()
        observe_pool(self.platform.engine)


_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: label values are bounded, and the lookup is on every request."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


_pool_seen: list[tuple[int, int, int] | None] = [None]


def observe_pool(engine: AsyncEngine) -> None:
    """Record this process's connection pool in the pool gauges (written only when they change)."""
    pool: Any = engine.pool  # QueuePool's counters are not in the Pool base class
    if not hasattr(pool, "checkedout"):
        return
    now = (pool.checkedout(), pool.size(), pool.overflow())
    if now != _pool_seen[0]:
        _pool_seen[0] = now
        POOL_CHECKED_OUT.set(now[0])
        POOL_SIZE.set(now[1])
        POOL_OVERFLOW.set(now[2])


# ---------------------------------------------------------------------------------- database reads

#: A scrape waits this long for the database, then answers without the database's numbers.
SCRAPE_DB_SECONDS = 3.0  # float-ok: seconds


@dataclass
class Snapshot:
    """The database's numbers at one scrape."""

    risk: dict[tuple[str, str], int] = field(default_factory=dict)
    confirmations: int = 0
    confirmation_oldest: float = 0.0  # float-ok: seconds
    qr_orders: int = 0
    queued: dict[str, int] = field(default_factory=dict)
    due: int = 0
    queue_oldest: float = 0.0  # float-ok: seconds
    failed: int = 0
    settlement_runs: int = 0
    settlement_last_run: float = 0.0  # float-ok: a Unix timestamp
    payouts_held: int = 0


class RiskTally:
    """Risk verdicts counted from ``risk_decisions`` without reading the whole table on every scrape.

    Ids are handed out when a row is inserted, not when it commits, so a row may appear below an id seen
    before. Rows older than ``SETTLE_SECONDS`` are settled: counted once, below a watermark that never
    passes a younger row. The younger tail is counted again at each scrape. So the counts equal
    ``GROUP BY verdict, rule`` over the table (unless a pay's transaction stays open longer than
    ``SETTLE_SECONDS``), whichever server process answers, and a scrape reads about a minute of rows.
    """

    #: Older rows are counted once and not read again.
    SETTLE_SECONDS = 60

    def __init__(self) -> None:
        self.watermark = 0
        self.settled: dict[tuple[str, str], int] = {}
        self.lock = asyncio.Lock()

    async def refresh(self, engine: AsyncEngine, now: datetime) -> dict[tuple[str, str], int]:
        """The counts by (verdict, rule), settling the rows that became old enough."""
        young = now - timedelta(seconds=self.SETTLE_SECONDS)
        async with self.lock, Reader(engine) as r:
            first_young = await r.metrics.first_decision_after(self.watermark, young)
            top = first_young - 1 if first_young is not None else await r.metrics.last_decision()
            if top is not None and top > self.watermark:
                _add(self.settled, await r.metrics.decision_counts(self.watermark, top))
                self.watermark = top
            tail = dict(self.settled)
            _add(tail, await r.metrics.decision_counts(self.watermark))
        return tail


def _add(into: dict[tuple[str, str], int], rows: Iterable[Any]) -> None:
    for verdict, rule, count in rows:
        key = (_allowed(verdict, _VERDICTS), rule if _RULE.fullmatch(rule) else "other")
        into[key] = into.get(key, 0) + count


_VERDICTS = frozenset({"ALLOW", "CONFIRM", "DECLINE"})
#: Rule names are written by the risk engine (domain/risk.py); anything else is not a label.
_RULE = re.compile(r"[a-z_]{1,40}")


def _age(now: datetime, oldest: datetime | None) -> float:  # float-ok: seconds
    return max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0


async def read_snapshot(p: Platform, tally: RiskTally) -> Snapshot:
    """The database's numbers for one scrape; every read is on an index and bounded by COUNT_CAP."""
    now = p.now()
    snap = Snapshot(risk=await tally.refresh(p.engine, now))
    async with p.reader(snapshot=True) as r:  # the counts add up: one moment for all of them
        m = r.metrics
        snap.confirmations = await m.waiting("barcode")
        snap.qr_orders = await m.waiting("precreate")
        snap.confirmation_oldest = _age(now, await m.oldest_waiting("barcode"))
        for status in ("pending", "sending"):
            snap.queued[status] = await m.notifications(status)
        snap.due = await m.notifications_due(now)
        snap.queue_oldest = _age(now, await m.oldest_queued())
        snap.failed = await m.notifications("failed")
        snap.settlement_runs, last_run = await m.settlement_runs()
        snap.settlement_last_run = last_run.timestamp() if last_run is not None else 0.0
        snap.payouts_held = await m.payouts_held()
    return snap


class _Fixed(Collector):
    """Metric families computed before the scrape (collectors themselves cannot await)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def snapshot_families(p: Platform, snap: Snapshot | None) -> list[Metric]:
    """The scrape-time metric families: build info, and the database's numbers if it answered."""
    build = GaugeMetricFamily("tillpay_build_info", "Tillpay's version and mode.", labels=["version", "mode"])
    build.add_metric([__version__, p.settings.mode], 1)
    up = GaugeMetricFamily("tillpay_database_up", "1 if this scrape's database reads answered in time.")
    up.add_metric([], 1 if snap is not None else 0)
    families: list[Metric] = [build, up]
    if snap is None:
        return families
    risk = CounterMetricFamily(
        "tillpay_risk_decisions",
        "Risk verdicts recorded, by verdict and deciding rule.",
        labels=["verdict", "rule"],
    )
    for (verdict, rule), count in sorted(snap.risk.items()):
        risk.add_metric([verdict, rule], count)
    queued = GaugeMetricFamily(
        "tillpay_notifications_queued",
        f"Notifications not delivered yet and still being tried, by state (pending, sending); "
        f"at most {COUNT_CAP}.",
        labels=["state"],
    )
    for state, count in sorted(snap.queued.items()):
        queued.add_metric([state], count)
    runs = CounterMetricFamily("tillpay_settlement_runs", "Business days closed by settlement runs.")
    runs.add_metric([], snap.settlement_runs)

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:  # float-ok: a metric value
        g = GaugeMetricFamily(name, doc)
        g.add_metric([], value)
        return g

    return [
        *families,
        risk,
        gauge(
            "tillpay_confirmations_waiting",
            f"Payments waiting for the customer to confirm in the wallet; at most {COUNT_CAP}.",
            snap.confirmations,
        ),
        gauge(
            "tillpay_confirmation_oldest_age_seconds",
            "Age of the oldest payment waiting for the customer to confirm (0: none).",
            snap.confirmation_oldest,
        ),
        gauge(
            "tillpay_qr_orders_waiting",
            f"Precreated (QR) orders not paid or closed yet; at most {COUNT_CAP}.",
            snap.qr_orders,
        ),
        queued,
        gauge(
            "tillpay_notifications_due",
            f"Queued notifications whose next attempt is due now; at most {COUNT_CAP}.",
            snap.due,
        ),
        gauge(
            "tillpay_notification_oldest_age_seconds",
            "Age of the oldest notification not delivered yet and still being tried (0: none).",
            snap.queue_oldest,
        ),
        gauge(
            "tillpay_notifications_failed",
            f"Notifications given up after the last attempt of the schedule; at most {COUNT_CAP}.",
            snap.failed,
        ),
        runs,
        gauge(
            "tillpay_settlement_last_run_timestamp_seconds",
            "When the latest settlement run was recorded (Unix time; 0: never).",
            snap.settlement_last_run,
        ),
        gauge(
            "tillpay_settlement_payouts_held",
            f"Settlement batches whose payout is held (no bank account); at most {COUNT_CAP}.",
            snap.payouts_held,
        ),
    ]


# --------------------------------------------------------------------------------------- /metrics


_LOOPBACK_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def _direct_loopback(request: Request) -> bool:
    """A client on this machine, talking to us directly (not through a proxy that forwards for others)."""
    if any(name in _LOOPBACK_HEADERS for name, _ in request.scope.get("headers", ())):
        return False
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # A dual-stack socket shows an IPv4 client as ::ffff:127.0.0.1.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def access_problem(request: Request) -> Response | None:
    """None if ``request`` may read /metrics, else the refusal (docs/operations.md, "The token")."""
    settings = request.app.state.platform.settings
    token: str = settings.metrics_token
    if token:
        sent = request.headers.get("authorization", "")
        scheme, _, value = sent.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
            return None
        return Response(
            "metrics need the bearer token (TILLPAY_METRICS_TOKEN)\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="tillpay-metrics"'},
        )
    if settings.sandbox or _direct_loopback(request):
        return None
    return Response(
        "metrics are served to loopback clients, or to anyone with TILLPAY_METRICS_TOKEN set "
        "(docs/operations.md)\n",
        status_code=403,
    )


class _Scrape(Collector):
    def __init__(self, parts: list[Collector]) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def _sweep_dead(path: str) -> None:
    """Drop the pool gauges of server processes that died without saying so (``kill -9``)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = int(name.rsplit("_", 1)[1].removesuffix(".db"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # unannotated upstream
        except PermissionError:
            pass  # alive, someone else's


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text format, for loopback or the bearer token in production."""
    refused = access_problem(request)
    if refused is not None:
        return refused
    p: Platform = request.app.state.platform
    observe_pool(p.engine)
    tally: RiskTally = request.app.state.risk_tally
    try:
        snap: Snapshot | None = await asyncio.wait_for(read_snapshot(p, tally), SCRAPE_DB_SECONDS)
    except Exception as e:  # the numbers that do not need the database are still worth answering
        log.warning("metrics_database_read_failed", error=type(e).__name__, detail=str(e)[:200])
        snap = None
    parts: list[Collector] = [_Fixed(snapshot_families(p, snap))]
    if multiprocess():
        path = multiprocess_dir()
        await asyncio.to_thread(_sweep_dead, path)
        parts.append(MultiProcessCollector(None, path=path))  # type: ignore[no-untyped-call]  # unannotated upstream
    else:
        parts.append(REGISTRY)
    text = await asyncio.to_thread(generate_latest, _Scrape(parts))
    return Response(text, media_type=CONTENT_TYPE_LATEST)
