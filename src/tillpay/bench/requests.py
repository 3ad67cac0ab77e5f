"""Prepared requests: every request of a run signed in advance, as raw HTTP/1.1 bytes, one stream per
load-generator thread.

Each pay carries a fresh payment code: device ``j % D``, slot ``j // D`` of one time step, so no code is
used twice and a customer's payments are ``D`` requests apart (two requests rarely wait on one wallet
row). The step is the one after the current minute: the gateway accepts a code from one step ahead to
two behind, so the prepared codes stay valid for at least three minutes (``CODE_LIFETIME_SECONDS``).

Queries and refunds (the ``mix`` workload) name payments that the database already shows paid (the
warm-up's, ``targets``): a pay of the same run could still be in flight on another connection when its
query is sent, however far back in the stream it is. Each stream has targets of its own, so refunds of
one payment come from one stream and, each taking a quarter of what is left, never exceed it.

A stream file is a sequence of records ``<length>\\n<raw request>``; ``loadgen`` reads it from Lua and
from Python alike.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from tillpay import signing
from tillpay.bench.data import BenchDevice, BenchMerchant
from tillpay.domain import paycode
from tillpay.domain.money import format_amount
from tillpay.protocols.antom import signing as antom_signing
from tillpay.protocols.mapi import signing as mapi_signing
from tillpay.protocols.mapi.wire import form_body
from tillpay.protocols.openapi.wire import sign_content

WORKLOADS = ("pay", "mix", "confirm", "dialects")
#: ``noop``: the pay requests sent to ``/bench/noop`` (the stack's ceiling; codes are not used).
NOOP = "noop"
NOOP_CODE = "28" + "0" * 16
#: The gateway accepts codes of steps now-2..now+1; prepared codes use step now+1.
CODE_LIFETIME_SECONDS = 3 * paycode.TIME_STEP
#: The confirmation limit the ``confirm`` workload sets (wallet currency CNY); a quarter of its
#: payments are above it.
CONFIRM_ABOVE = "CNY:100.00"
ANTOM_PREFIX = "/ams/api/v1/payments/"


@dataclass(frozen=True, slots=True)
class Order:
    """One request to prepare: what it does and for which merchant."""

    kind: str  # mapi.pay | mapi.query | mapi.refund | openapi.pay | antom.pay
    merchant: int
    ptid: str
    amount: int = 0
    code: str = ""
    refund_id: str = ""


def _amount(rng: random.Random, currency: str, big: bool) -> int:
    # CNY 1.00-50.00 (USD 0.20-7.00); "big" ones (confirm workload) CNY 150-300 (USD 25-40), over the limit.
    if currency == "CNY":
        return rng.randint(15_000, 30_000) if big else rng.randint(100, 5_000)
    return rng.randint(2_500, 4_000) if big else rng.randint(20, 700)


def continue_after(used: int, devices_before: int, devices_now: int) -> int:
    """Where a plan over ``devices_now`` wallets starts so that it reuses no code of the ``used`` codes
    planned before over ``devices_before`` wallets (in the same minute).

    Code ``j`` is device ``j % n``, slot ``j // n``: with as many wallets as before, the next plan simply
    goes on at ``used``; with more, the same ``j`` names other (device, slot) pairs, so the plan starts at
    the first slot the earlier codes never reached.
    """
    if devices_now == devices_before:
        return used
    return -(-used // devices_before) * devices_now


def wallets_for(used: int, devices_before: int, more: int) -> int:
    """How many wallets give ``more`` codes after ``used`` ones over ``devices_before`` wallets (at least
    ``devices_before``; see ``continue_after``)."""
    if used + more <= devices_before * paycode.SLOTS:
        return devices_before
    free_slots = paycode.SLOTS - -(-used // devices_before)
    if free_slots <= 0:
        raise ValueError(f"{used} codes used every slot of {devices_before} wallets; give more --users")
    return max(devices_before, -(-more // free_slots))


def plan(
    workload: str,
    merchants: Sequence[BenchMerchant],
    devices: Sequence[BenchDevice],
    *,
    streams: int,
    per_stream: int,
    now_unix: int,
    run_id: str,
    first_code: int = 0,
    targets: Sequence[Order] = (),
    seed: int = 8,
) -> list[list[Order]]:
    """The orders of every stream; raises ValueError if the wallets have too few codes for them, or if
    the ``mix`` has no paid ``targets`` to query and refund."""
    if workload not in (*WORKLOADS, NOOP):
        raise ValueError(f"workload is one of {', '.join(WORKLOADS)}")
    if workload == "mix" and len(targets) < streams:
        raise ValueError("the mix needs at least one paid payment per stream to query and refund")
    rng = random.Random(seed)
    step_unix = (paycode.step_at(now_unix) + 1) * paycode.TIME_STEP
    n_dev = len(devices)
    if first_code + streams * per_stream > n_dev * paycode.SLOTS:
        raise ValueError(
            f"{first_code + streams * per_stream} requests need more codes than {n_dev} wallets have in "
            f"one minute ({n_dev * paycode.SLOTS}); give more --users"
        )
    # Which device and slot the next code comes from; runs of one database continue where the last ended.
    j = first_code
    out: list[list[Order]] = []
    for s in range(streams):
        orders: list[Order] = []
        mine = targets[s::streams]
        refundable: dict[str, int] = {}
        for i in range(per_stream):
            m = rng.randrange(len(merchants))
            ptid = f"B{run_id}-{s}-{i}"
            kind = "mapi.pay"
            if workload == "mix":
                roll = rng.random()
                # 60 % pay, 25 % query, 15 % partial refund of a paid target; a refund takes a quarter
                # of what is left, so refunds never exceed the payment or close it.
                if roll < 0.40:
                    done = mine[rng.randrange(len(mine))]
                    left = refundable.setdefault(done.ptid, done.amount)
                    if roll < 0.25 or left < 4:
                        orders.append(Order("mapi.query", done.merchant, done.ptid))
                    else:
                        refundable[done.ptid] = left - left // 4
                        orders.append(
                            Order(
                                "mapi.refund",
                                done.merchant,
                                done.ptid,
                                amount=left // 4,
                                refund_id=f"R{run_id}-{s}-{i}",
                            )
                        )
                    continue
            elif workload == "dialects":
                kind = ("mapi.pay", "openapi.pay", "antom.pay")[i % 3]
            elif workload == NOOP:
                orders.append(Order("noop", m, ptid, _amount(rng, merchants[m].currency, False), NOOP_CODE))
                continue
            dev = devices[j % n_dev]
            slot = j // n_dev
            j += 1
            code = paycode.generate(dev.secret, dev.device_no, step_unix, slot)
            big = workload == "confirm" and rng.random() < 0.25
            order = Order(kind, m, ptid, _amount(rng, merchants[m].currency, big), code)
            orders.append(order)
        out.append(orders)
    return out


def _http(path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _mapi(m: BenchMerchant, params: dict[str, str], path: str = "/gateway.do") -> bytes:
    params = {"partner": m.partner_id, "_input_charset": "UTF-8", "sign_type": "RSA2", **params}
    params["sign"] = mapi_signing.sign_request(params, sign_type="RSA2", private_key_pem=m.private_key)
    return _http(path, {"Content-Type": "application/x-www-form-urlencoded"}, form_body(params, "utf-8"))


def render(order: Order, m: BenchMerchant, when: datetime) -> bytes:
    """The signed HTTP request for one order, as the merchant's till would send it."""
    if order.kind in ("mapi.pay", "noop"):
        return _mapi(
            m,
            {
                "service": "alipay.acquire.overseas.spot.pay",
                "alipay_seller_id": m.partner_id,
                "quantity": "1",
                "trans_name": "Bench order",
                "partner_trans_id": order.ptid,
                "currency": m.currency,
                "trans_currency": m.currency,
                "trans_amount": format_amount(order.amount, m.currency),
                "buyer_identity_code": order.code,
                "identity_code_type": "barcode",
                "trans_create_time": when.strftime("%Y%m%d%H%M%S"),
                "biz_product": "OVERSEAS_MBARCODE_PAY",
                "extend_info": '{"store_id":"S01","terminal_id":"T01"}',
            },
            "/bench/noop" if order.kind == "noop" else "/gateway.do",
        )
    if order.kind == "mapi.query":
        return _mapi(m, {"service": "alipay.acquire.overseas.query", "partner_trans_id": order.ptid})
    if order.kind == "mapi.refund":
        return _mapi(
            m,
            {
                "service": "alipay.acquire.overseas.spot.refund",
                "partner_trans_id": order.ptid,
                "partner_refund_id": order.refund_id,
                "refund_amount": format_amount(order.amount, m.currency),
                "currency": m.currency,
                "is_sync": "Y",
            },
        )
    if order.kind == "openapi.pay":
        common = {
            "app_id": m.app_id,
            "method": "alipay.trade.pay",
            "charset": "utf-8",
            "format": "JSON",
            "sign_type": "RSA2",
            "timestamp": (when + timedelta(hours=8)).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),  # GMT+8, as Alipay reads it
            "version": "1.0",
        }
        biz = {
            "out_trade_no": order.ptid,
            "scene": "bar_code",
            "auth_code": order.code,
            "subject": "Bench order",
            "total_amount": format_amount(order.amount, m.currency),
            "trans_currency": m.currency,
            "settle_currency": m.currency,
            "terminal_id": "T01",
        }
        biz_text = json.dumps(biz, separators=(",", ":"))
        common["sign"] = signing.rsa_sign(
            sign_content({**common, "biz_content": biz_text}).encode(),
            signing.load_private_key(m.private_key),
            "RSA2",
        )
        body = urlencode({"biz_content": biz_text}).encode()
        return _http(
            "/gateway.do?" + urlencode(common),
            {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            body,
        )
    if order.kind == "antom.pay":
        value = str(order.amount)
        text = json.dumps(
            {
                "productCode": "IN_STORE_PAYMENT",
                "paymentRequestId": order.ptid,
                "paymentAmount": {"currency": m.currency, "value": value},
                "paymentMethod": {"paymentMethodType": "CONNECT_WALLET", "paymentMethodId": order.code},
                "paymentFactor": {"inStorePaymentScenario": "PaymentCode"},
                "order": {
                    "orderDescription": "Bench order",
                    "orderAmount": {"currency": m.currency, "value": value},
                    "merchant": {"referenceMerchantId": "M1", "store": {"referenceStoreId": "S01"}},
                    "env": {"storeTerminalId": "T01"},
                },
            },
            separators=(",", ":"),
        )
        path = ANTOM_PREFIX + "pay"
        rtime = when.replace(microsecond=0).isoformat()
        sig = antom_signing.sign(antom_signing.content("POST", path, m.client_id, rtime, text), m.private_key)
        return _http(
            path,
            {
                "Content-Type": "application/json; charset=UTF-8",
                "Client-Id": m.client_id,
                "Request-Time": rtime,
                "Signature": antom_signing.header(sig),
            },
            text.encode(),
        )
    raise ValueError(f"unknown order kind {order.kind!r}")


_WORKER_MERCHANTS: Sequence[BenchMerchant] = ()


def _init(merchants: Sequence[BenchMerchant]) -> None:
    global _WORKER_MERCHANTS
    _WORKER_MERCHANTS = merchants


def _render_stream(args: tuple[list[Order], str, float]) -> int:  # float-ok: unix time
    orders, path, when_unix = args
    when = datetime.fromtimestamp(when_unix, UTC)
    with open(path, "wb") as f:
        for o in orders:
            raw = render(o, _WORKER_MERCHANTS[o.merchant], when)
            f.write(b"%d\n" % len(raw))
            f.write(raw)
    return len(orders)


def write_streams(
    streams: list[list[Order]], merchants: Sequence[BenchMerchant], folder: Path, processes: int
) -> list[Path]:
    """Sign and write every stream (``folder/req-<n>``, n from 1) using ``processes`` processes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"req-{i + 1}" for i in range(len(streams))]
    # Split streams into pieces so both cores sign even when there is a single stream.
    pieces: list[tuple[list[Order], str, float]] = []  # float-ok: unix time
    parts = max(1, processes * 4 // max(1, len(streams)))
    now = datetime.now(UTC).timestamp()
    for orders, path in zip(streams, paths, strict=True):
        size = -(-len(orders) // parts) or 1
        for k in range(parts):
            pieces.append((orders[k * size : (k + 1) * size], f"{path}.part{k}", now))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_init, initargs=(list(merchants),)) as pool:
        pool.map(_render_stream, pieces)
    for path in paths:
        with open(path, "wb") as out:
            for k in range(parts):
                part = Path(f"{path}.part{k}")
                out.write(part.read_bytes())
                part.unlink()
    return paths


def read_stream(path: Path) -> list[bytes]:
    """The raw requests of a stream file."""
    data = path.read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        n = int(data[pos:nl])
        out.append(data[nl + 1 : nl + 1 + n])
        pos = nl + 1 + n
    return out


def kinds(streams: list[list[Order]]) -> dict[str, int]:
    """How many requests of each kind were prepared."""
    return dict(Counter(o.kind for s in streams for o in s))
