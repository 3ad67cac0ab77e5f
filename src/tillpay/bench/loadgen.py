"""Load generators that replay prepared request streams for a fixed time over keep-alive connections.

``wrk`` (C, one thread per stream, a Lua script that reads the stream files) is the default: it costs a
few percent of a core at these rates, so the server gets the CPU. The asyncio client (``python -m
tillpay.bench.loadgen``) is the fallback where wrk is not installed; it costs noticeably more CPU.

Both classify every answer from its body (the dialect's result fields) into a key such as
``mapi|alipay.acquire.overseas.spot.pay|T|SUCCESS|TRADE_SUCCESS|`` that :func:`outcome` reads.
"""

# The asyncio client blocks on nothing while measuring; its set-up reads files before the clock starts.
# ruff: noqa: S603, S607
from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: wrk runs this much longer than the pays: in-flight requests are answered, nothing new is sent.
DRAIN_SECONDS = 3

WRK_SCRIPT = r"""
local counter = 1
local threads = {}

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local f = assert(io.open("%(folder)s/req-" .. id, "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  local len = #data
  while pos <= len do
    local nl = string.find(data, "\n", pos, true)
    local n = tonumber(string.sub(data, pos, nl - 1))
    reqs[#reqs + 1] = string.sub(data, nl + 1, nl + n)
    pos = nl + n + 1
  end
  data = nil
  sent = 0
  exhausted = 0
  counts = {}
  stop_at = os.time() + %(seconds)d
end

-- After the deadline no connection sends again (a long delay), so every request sent is answered and
-- counted: the database and the generator agree on what was paid.
function delay()
  if os.time() >= stop_at then return 3600000 end
  return 0
end

function request()
  if os.time() >= stop_at then return wrk.format("GET", "/health") end
  sent = sent + 1
  if sent > #reqs then
    if %(cycle)s then return reqs[(sent - 1) %% #reqs + 1] end
    exhausted = exhausted + 1
    return wrk.format("GET", "/health")
  end
  return reqs[sent]
end

local function classify(status, body)
  if status ~= 200 then return "http|" .. status end
  if string.sub(body, 1, 5) == "<?xml" then
    local service = string.match(body, '<param name="service">([%%w%%._]+)</param>') or ""
    local ok = string.match(body, "<is_success>(%%u)</is_success>") or ""
    local rc = string.match(body, "<result_code>([%%u_]+)</result_code>") or ""
    local st = string.match(body, "<alipay_trans_status>([%%u_]+)</alipay_trans_status>") or ""
    local err = string.match(body, "<detail_error_code>([%%w_]+)</detail_error_code>")
      or string.match(body, "<error>([%%w_]+)</error>") or ""
    return "mapi|" .. service .. "|" .. ok .. "|" .. rc .. "|" .. st .. "|" .. err
  end
  local node = string.match(body, '"(alipay_[%%w_]+)_response"')
  if node then
    local code = string.match(body, '"code":"(%%d+)"') or ""
    local sub = string.match(body, '"sub_code":"([%%w%%._]+)"') or ""
    return "openapi|" .. node .. "|" .. code .. "|" .. sub
  end
  if string.find(body, '"status":"ok"', 1, true) then return "health" end
  local rs = string.match(body, '"resultStatus":"(%%u)"')
  if rs then
    local rc = string.match(body, '"resultCode":"([%%u_]+)"') or ""
    return "antom|" .. rs .. "|" .. rc
  end
  return "other|" .. string.sub(body, 1, 40)
end

function response(status, headers, body)
  local key = classify(status, body)
  counts[key] = (counts[key] or 0) + 1
end

local function quote(s)
  return '"' .. string.gsub(s, '[%%c"\\]', "?") .. '"'
end

function done(summary, latency, requests)
  local total = {}
  local sent_all, exhausted_all = 0, 0
  for _, t in ipairs(threads) do
    sent_all = sent_all + t:get("sent")
    exhausted_all = exhausted_all + t:get("exhausted")
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = quote(k) .. ":" .. v end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"seconds":%%.6f,"responses":%%d,"sent":%%d,"exhausted":%%d,' ..
    '"p50":%%d,"p90":%%d,"p95":%%d,"p99":%%d,"p999":%%d,"max":%%d,"mean":%%.1f,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},"counts":{%%s}}\n',
    summary.duration / 1e6, summary.requests, sent_all, exhausted_all,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
"""


@dataclass
class LoadResult:
    """What a load generator saw: answers by kind, latency in milliseconds, and transport errors."""

    generator: str
    seconds: float  # float-ok: elapsed time
    responses: int
    sent: int
    exhausted: int
    latency_ms: dict[str, float]  # float-ok: milliseconds
    errors: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """A plain-JSON form."""
        return asdict(self)


def outcome(key: str) -> tuple[str, str]:
    """``(operation, result)`` of a classified answer; result is ``ok``, ``wait`` or ``fail:<why>``."""
    parts = key.split("|")
    if parts[0] == "mapi" and len(parts) == 6:
        _, service, is_success, rc, status, err = parts
        op = "mapi." + {
            "alipay.acquire.overseas.spot.pay": "pay",
            "alipay.acquire.overseas.query": "query",
            "alipay.acquire.overseas.spot.refund": "refund",
        }.get(service, service or "?")
        if is_success == "T" and rc == "SUCCESS":
            return op, "ok"
        if rc == "UNKNOW" and status == "WAIT_BUYER_PAY":
            return op, "wait"
        return op, f"fail:{err or rc or 'F'}"
    if parts[0] == "openapi" and len(parts) == 4:
        _, node, code, sub = parts
        op = "openapi." + node.removeprefix("alipay_trade_")
        if code == "10000":
            return op, "ok"
        if code == "10003":
            return op, "wait"
        return op, f"fail:{sub or code}"
    if parts[0] == "antom" and len(parts) == 3:
        _, status, rc = parts
        if status == "S":
            return "antom.pay", "ok"
        if rc == "PAYMENT_IN_PROCESS":
            return "antom.pay", "wait"
        return "antom.pay", f"fail:{rc}"
    if key == "health":
        return "health", "ok"
    return "other", f"fail:{key}"


def wrk_available() -> bool:
    """Whether the ``wrk`` program is on PATH."""
    return shutil.which("wrk") is not None


def run_wrk(
    url: str, folder: Path, streams: int, connections: int, seconds: int, *, cycle: bool = False
) -> LoadResult:
    """Replay ``folder/req-1..streams`` with wrk (one thread per stream) for ``seconds``; with ``cycle``
    the streams start over when they run out (requests that may repeat: the no-op endpoint)."""
    script = folder / "replay.lua"
    script.write_text(
        WRK_SCRIPT % {"folder": str(folder), "seconds": seconds, "cycle": "true" if cycle else "false"}
    )
    proc = subprocess.run(
        [
            "wrk",
            f"-t{streams}",
            f"-c{max(connections, streams)}",
            f"-d{seconds + DRAIN_SECONDS}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    d = json.loads(line.removeprefix("BENCH-JSON "))
    return LoadResult(
        generator=f"wrk {streams} threads, {max(connections, streams)} connections",
        seconds=d["seconds"],
        responses=d["responses"],
        sent=d["sent"],
        exhausted=d["exhausted"],
        latency_ms={k: d[k] / 1000 for k in ("p50", "p90", "p95", "p99", "p999", "max", "mean")},
        errors=d["errors"],
        counts=d["counts"],
    )


# ------------------------------------------------------------------------------ the asyncio client

_MAPI = [
    re.compile(rb'<param name="service">([\w.]+)</param>'),
    re.compile(rb"<is_success>([A-Z])</is_success>"),
    re.compile(rb"<result_code>([A-Z_]+)</result_code>"),
    re.compile(rb"<alipay_trans_status>([A-Z_]+)</alipay_trans_status>"),
]
_MAPI_ERR = (
    re.compile(rb"<detail_error_code>(\w+)</detail_error_code>"),
    re.compile(rb"<error>(\w+)</error>"),
)
_OPEN = (
    re.compile(rb'"(alipay_\w+)_response"'),
    re.compile(rb'"code":"(\d+)"'),
    re.compile(rb'"sub_code":"([\w.]+)"'),
)
_ANTOM = (re.compile(rb'"resultStatus":"([A-Z])"'), re.compile(rb'"resultCode":"([A-Z_]+)"'))


def _find(rx: re.Pattern[bytes], body: bytes) -> str:
    m = rx.search(body)
    return m.group(1).decode() if m else ""


def classify(status: int, body: bytes) -> str:
    """The same classification as the wrk script's."""
    if status != 200:
        return f"http|{status}"
    if body.startswith(b"<?xml"):
        err = _find(_MAPI_ERR[0], body) or _find(_MAPI_ERR[1], body)
        return "mapi|" + "|".join(_find(rx, body) for rx in _MAPI) + "|" + err
    if b'"status":"ok"' in body:
        return "health"
    node = _find(_OPEN[0], body)
    if node:
        return f"openapi|{node}|{_find(_OPEN[1], body)}|{_find(_OPEN[2], body)}"
    rs = _find(_ANTOM[0], body)
    if rs:
        return f"antom|{rs}|{_find(_ANTOM[1], body)}"
    return "other|" + body[:40].decode("ascii", "replace")


async def _connection(
    host: str,
    port: int,
    queue: list[bytes],
    deadline: float,  # float-ok: monotonic time
    lat: list[int],
    counts: dict[str, int],
    errors: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while queue and time.monotonic() < deadline:
            raw = queue.pop()
            t0 = time.perf_counter_ns()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            body = await reader.readexactly(int(m.group(1))) if m else b""
            lat.append(time.perf_counter_ns() - t0)
            key = classify(status, body)
            counts[key] = counts.get(key, 0) + 1
    except (OSError, asyncio.IncompleteReadError):
        errors["read"] = errors.get("read", 0) + 1
    finally:
        writer.close()


async def _pyload(
    host: str, port: int, paths: list[Path], connections: int, seconds: int, cycle: bool
) -> dict[str, object]:
    from tillpay.bench.requests import read_stream

    queue: list[bytes] = []
    for p in paths:
        queue.extend(read_stream(p))
    if cycle:
        queue *= 100
    queue.reverse()  # pop() from the end takes them in order
    prepared = len(queue)
    lat: list[int] = []
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(
        *(_connection(host, port, queue, deadline, lat, counts, errors) for _ in range(connections))
    )
    elapsed = time.monotonic() - start
    lat.sort()

    def pct(q: float) -> float:  # float-ok: a percentile
        return lat[min(len(lat) - 1, int(q / 100 * len(lat)))] / 1e6 if lat else 0.0

    return {
        "seconds": elapsed,
        "responses": len(lat),
        "sent": prepared - len(queue),
        "exhausted": 1 if not queue else 0,
        "latency_ms": {
            "p50": pct(50),
            "p90": pct(90),
            "p95": pct(95),
            "p99": pct(99),
            "p999": pct(99.9),
            "max": lat[-1] / 1e6 if lat else 0.0,
            "mean": sum(lat) / len(lat) / 1e6 if lat else 0.0,
        },
        "errors": errors,
        "counts": counts,
    }


def run_python(
    url: str, paths: list[Path], connections: int, seconds: int, *, cycle: bool = False
) -> LoadResult:
    """Replay the streams with the asyncio client in its own process."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tillpay.bench.loadgen",
            url,
            str(connections),
            str(seconds),
            *(["--cycle"] if cycle else []),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr[-3000:]}")
    d = json.loads(proc.stdout)
    return LoadResult(generator=f"asyncio client, {connections} connections", **d)


def main() -> None:
    """``python -m tillpay.bench.loadgen URL CONNECTIONS SECONDS STREAM...``: print the result as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("connections", type=int)
    ap.add_argument("seconds", type=int)
    ap.add_argument("--cycle", action="store_true")
    ap.add_argument("streams", nargs="+", type=Path)
    a = ap.parse_args()
    host, _, port = a.url.split("//", 1)[1].rstrip("/").partition(":")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        pass
    print(json.dumps(asyncio.run(_pyload(host, int(port), a.streams, a.connections, a.seconds, a.cycle))))


if __name__ == "__main__":
    main()
