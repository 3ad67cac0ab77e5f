"""``tillpay bench --in-process N``: the pay's own cost, without HTTP, a load generator or concurrency.

N signed MAPI pays and N signed no-op requests (``/bench/noop``: the same request, parsed, verified and
answered with a signature, without the database) are sent one after another straight into the ASGI app
in this process, in alternating blocks, and the process's CPU time is taken around each block. A pay's
CPU minus a no-op's is what the payment itself costs (the database driver's work and, on SQLite, the
commit's thread included; PostgreSQL's own work is in its server processes and not counted).

Under load the same figures move by a third from one run to the next on a shared 2-core machine; one
request at a time, in one process, they move by a few percent, so a change to the pay path shows. It is
not a rate: nothing waits for anything else here, so it says nothing of locks, pools or queues.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tillpay.bench import data, requests
from tillpay.config import Settings
from tillpay.services.platform import Platform
from tillpay.store.migrate import upgrade

#: Requests of each kind sent before the measured blocks (imports, caches, prepared statements).
WARM = 100
#: The measured requests of each kind are sent in this many blocks, no-op and pay in turn.
BLOCKS = 4
_SUCCESS = b"<result_code>SUCCESS</result_code>"


@dataclass(frozen=True, slots=True)
class CostResult:
    """CPU per request of the signed no-op and of the pay, one request at a time, in one process."""

    database: str
    pays: int
    noop_cpu_ms: float  # float-ok: a measured time
    pay_cpu_ms: float  # float-ok: a measured time
    pay_wall_ms: float  # float-ok: a measured time
    paid: int  # payments the database holds afterwards (warm-up included)
    #: The pay's own cost in each block (its pays' CPU minus its no-ops'): how far the machine moved
    #: while it measured.
    own_cost_blocks_ms: tuple[float, ...] = ()  # float-ok: measured times

    @property
    def own_cost_ms(self) -> float:  # float-ok: a measured time
        """The pay's own cost: its CPU above the no-op's."""
        return round(self.pay_cpu_ms - self.noop_cpu_ms, 3)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "own_cost_ms": self.own_cost_ms}


def _scope(app: Any, raw: bytes) -> tuple[dict[str, Any], bytes]:
    """The ASGI scope and body of one prepared HTTP request (as ``requests.render`` writes them)."""
    head, body = raw.split(b"\r\n\r\n", 1)
    first, *lines = head.split(b"\r\n")
    method, target, _ = first.split(b" ")
    path, _, query = target.partition(b"?")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in lines)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.decode(),
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "root_path": "",
        "app": app,
    }
    return scope, body


async def _send(app: Any, raw: bytes) -> bytes:
    """Send one request through the app; the answer's body."""
    scope, body = _scope(app, raw)
    sent = False
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            out.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(out)


async def _measure(url: str, label: str, pays: int, say: Callable[[str], None]) -> CostResult:
    from tillpay.bench.run import _db_counts
    from tillpay.web.app import create_app

    p = Platform(Settings(database_url=url))
    try:
        say("populating: 4 merchants and a funded wallet per pay")
        fixture = await data.populate(p, n_merchants=4, n_users=pays + WARM)
    finally:
        await p.close()
    now = int(time.time())
    kinds = {}
    for kind in ("pay", requests.NOOP):
        [stream] = requests.plan(
            kind,
            fixture.merchants,
            fixture.devices,
            streams=1,
            per_stream=pays + WARM,
            now_unix=now,
            run_id=f"ip{now % 100_000}{kind[0]}",
        )
        when = datetime.now(UTC)
        kinds[kind] = [requests.render(o, fixture.merchants[o.merchant], when) for o in stream]
    p = Platform(Settings(database_url=url, bench_routes=True))
    app = create_app(p, worker=False)
    try:
        for kind in ("pay", requests.NOOP):
            for raw in kinds[kind][:WARM]:
                answer = await _send(app, raw)
                if _SUCCESS not in answer:
                    raise RuntimeError(f"a warm-up {kind} failed: {answer[:400]!r}")
        cpu = {"pay": 0.0, requests.NOOP: 0.0}  # float-ok: seconds
        wall = 0.0  # float-ok: seconds
        blocks: list[float] = []  # float-ok: milliseconds
        size = -(-pays // BLOCKS)
        for block in range(BLOCKS):
            per_request: dict[str, float] = {}  # float-ok: seconds
            for kind in (requests.NOOP, "pay"):
                todo = kinds[kind][WARM + block * size : WARM + min(pays, (block + 1) * size)]
                say(f"block {block + 1}/{BLOCKS}: {len(todo)} {'no-op' if kind == requests.NOOP else kind}s")
                c0, w0 = time.process_time(), time.perf_counter()
                answers = [await _send(app, raw) for raw in todo]
                spent = time.process_time() - c0
                cpu[kind] += spent
                per_request[kind] = spent / len(todo) if todo else 0.0
                if kind == "pay":
                    wall += time.perf_counter() - w0
                failed = [a for a in answers if _SUCCESS not in a]
                if failed:
                    raise RuntimeError(f"{len(failed)} {kind}s failed, the first: {failed[0][:400]!r}")
            if todo:  # the last block is empty when PAYS leaves nothing for it (5 pays: 2, 2, 1, 0)
                blocks.append(round((per_request["pay"] - per_request[requests.NOOP]) * 1000, 3))
        paid = (await _db_counts(url, ""))["paid"]
        if paid != pays + WARM:  # every pay answered SUCCESS: the database must hold each of them
            raise RuntimeError(f"{pays + WARM} pays answered SUCCESS, the database holds {paid} payments")
    finally:
        await p.close()
    return CostResult(
        database=label,
        pays=pays,
        noop_cpu_ms=round(cpu[requests.NOOP] / pays * 1000, 3),
        pay_cpu_ms=round(cpu["pay"] / pays * 1000, 3),
        pay_wall_ms=round(wall / pays * 1000, 3),
        paid=paid,
        own_cost_blocks_ms=tuple(blocks),
    )


def measure(target: str, pays: int, *, say: Callable[[str], None] = print) -> CostResult:
    """Measure on a fresh database made on ``target`` ('sqlite', or a PostgreSQL server's URL), removed
    afterwards. Logging goes to nowhere meanwhile (the lines are still rendered, as a server's are)."""
    if pays < BLOCKS:
        raise ValueError(f"at least {BLOCKS} pays")
    workdir = Path(tempfile.mkdtemp(prefix="tillpay-cost-"))
    url = data.create_database(target, workdir)
    label = "sqlite" if target == "sqlite" else "postgresql"
    stderr = sys.stderr

    def progress(line: str) -> None:  # ``say`` sees the real stderr, the server's log lines do not
        muted, sys.stderr = sys.stderr, stderr
        try:
            say(line)
        finally:
            sys.stderr = muted

    try:
        say("migrating")
        upgrade(url)
        with open(os.devnull, "w") as nowhere:
            sys.stderr = nowhere
            try:
                return asyncio.run(_measure(url, label, pays, progress))
            finally:
                sys.stderr = stderr
    finally:
        data.drop_database(url)
        shutil.rmtree(workdir, ignore_errors=True)


def markdown(results: list[CostResult]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| database | pays | signed no-op CPU ms/request | pay CPU ms/pay | the pay's own cost ms "
        "| own cost, lowest–highest block ms | pay wall ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        spread = (
            f"{min(r.own_cost_blocks_ms):.2f}–{max(r.own_cost_blocks_ms):.2f}"
            if r.own_cost_blocks_ms
            else "–"
        )
        lines.append(
            f"| {r.database} | {r.pays:,} | {r.noop_cpu_ms:.2f} | {r.pay_cpu_ms:.2f} | "
            f"{r.own_cost_ms:.2f} | {spread} | {r.pay_wall_ms:.2f} |"
        )
    return "\n".join(lines) + "\n"
