"""Every kind of prepared request is answered by a real server as the benchmark counts it."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import LiveServer
from tillpay.bench import data, loadgen, requests
from tillpay.services.audit import audit


class Replayer:
    """Plans, signs and sends one workload's requests to a live server, one at a time."""

    def __init__(self, live: LiveServer, fixture: data.Fixture, tmp: Path) -> None:
        self.live, self.fixture, self.tmp = live, fixture, tmp
        self.codes_used = 0
        self.paid: list[requests.Order] = []  # the last pay workload's orders: the mix's targets

    def __call__(self, workload: str, per_stream: int) -> dict[str, dict[str, int]]:
        live, fixture, tmp = self.live, self.fixture, self.tmp
        streams = requests.plan(
            workload,
            fixture.merchants,
            fixture.devices,
            streams=1,
            per_stream=per_stream,
            now_unix=int(time.time()),
            run_id=workload[:3],
            first_code=self.codes_used,
            targets=self.paid,
        )
        self.codes_used += sum(1 for s in streams for o in s if o.kind != requests.NOOP)
        if workload == "pay":
            self.paid = [o for s in streams for o in s]
        paths = requests.write_streams(streams, fixture.merchants, tmp / workload, processes=2)
        # One connection: each request is answered before the next is sent (refunds follow their pay).
        result = loadgen.run_python(live.url, paths, connections=1, seconds=60)
        assert not result.errors and result.sent == result.responses == per_stream, result
        out: dict[str, dict[str, int]] = {}
        for key, n in result.counts.items():
            op, res = loadgen.outcome(key)
            out.setdefault(op, {}).setdefault(res, 0)
            out[op][res] += n
        return out


def test_prepared_requests_of_every_workload_succeed(db_url: str, tmp_path: Path) -> None:
    live = LiveServer(db_url, bench_routes=True, confirm_above=requests.CONFIRM_ABOVE)
    try:
        fixture = live.run(lambda p: data.populate(p, n_merchants=2, n_users=30))
        replay = Replayer(live, fixture, tmp_path)
        assert replay("dialects", 9) == {
            "mapi.pay": {"ok": 3},
            "openapi.pay": {"ok": 3},
            "antom.pay": {"ok": 3},
        }
        assert replay("pay", 6) == {"mapi.pay": {"ok": 6}}
        mix = replay("mix", 40)
        assert set(mix) == {"mapi.pay", "mapi.query", "mapi.refund"}
        assert all(set(c) == {"ok"} for c in mix.values()), mix
        confirm = replay("confirm", 40)
        assert set(confirm["mapi.pay"]) == {"ok", "wait"}, confirm
        assert replay(requests.NOOP, 5) == {"mapi.pay": {"ok": 5}}
    finally:
        live.stop()
    assert not live.run(audit)


def test_the_load_generators_read_every_dialects_answers_alike() -> None:
    bodies = {
        b'<?xml version="1.0"?><alipay><is_success>T</is_success><request><param name="service">'
        b"alipay.acquire.overseas.spot.pay</param></request><response><alipay><result_code>SUCCESS"
        b"</result_code><alipay_trans_status>TRADE_SUCCESS</alipay_trans_status></alipay></response>"
        b"</alipay>": ("mapi.pay", "ok"),
        b'<?xml version="1.0"?><alipay><is_success>T</is_success><request><param name="service">'
        b"alipay.acquire.overseas.spot.pay</param></request><response><alipay><result_code>UNKNOW"
        b"</result_code><alipay_trans_status>WAIT_BUYER_PAY</alipay_trans_status></alipay></response>"
        b"</alipay>": ("mapi.pay", "wait"),
        b'<?xml version="1.0"?><alipay><is_success>T</is_success><request><param name="service">'
        b"alipay.acquire.overseas.spot.pay</param></request><response><alipay><result_code>FAIL"
        b"</result_code><detail_error_code>CODE_USED</detail_error_code></alipay></response></alipay>": (
            "mapi.pay",
            "fail:CODE_USED",
        ),
        b'{"alipay_trade_pay_response":{"code":"10000","msg":"Success"},"sign":"x"}': ("openapi.pay", "ok"),
        b'{"alipay_trade_pay_response":{"code":"40004","sub_code":"ACQ.PAYMENT_AUTH_CODE_INVALID"}}': (
            "openapi.pay",
            "fail:ACQ.PAYMENT_AUTH_CODE_INVALID",
        ),
        b'{"result":{"resultStatus":"S","resultCode":"SUCCESS"}}': ("antom.pay", "ok"),
        b'{"result":{"resultStatus":"U","resultCode":"PAYMENT_IN_PROCESS"}}': ("antom.pay", "wait"),
    }
    for body, expected in bodies.items():
        assert loadgen.outcome(loadgen.classify(200, body)) == expected, body
    assert loadgen.outcome(loadgen.classify(500, b"oops")) == ("other", "fail:http|500")
