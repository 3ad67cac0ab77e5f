"""The benchmark's request plan: every payment code fresh, references safely behind, clear limits."""

from __future__ import annotations

import os

import pytest

from tillpay.bench.data import BenchDevice, BenchMerchant
from tillpay.bench.requests import Order, continue_after, plan, wallets_for

MERCHANTS = [
    BenchMerchant("2088000000000001", "k" * 32, "key", "2021000000000001", "TPA", "CNY"),
    BenchMerchant("2088000000000002", "k" * 32, "key", "2021000000000002", "TPB", "USD"),
]


def devices(n: int) -> list[BenchDevice]:
    return [BenchDevice(20_000_000 + i, os.urandom(20), i) for i in range(1, n + 1)]


def test_no_payment_code_is_planned_twice_across_streams_and_runs() -> None:
    devs = devices(50)
    first = plan("dialects", MERCHANTS, devs, streams=3, per_stream=60, now_unix=1_800_000_000, run_id="a")
    used = sum(1 for s in first for o in s if o.code)
    second = plan(
        "pay",
        MERCHANTS,
        devs,
        streams=2,
        per_stream=100,
        now_unix=1_800_000_000,
        run_id="b",
        first_code=used,
    )
    codes = [o.code for run in (first, second) for s in run for o in s]
    assert len(codes) == 380 and len(set(codes)) == 380
    assert {o.kind for s in first for o in s} == {"mapi.pay", "openapi.pay", "antom.pay"}


def test_wallets_added_after_the_warm_up_never_replan_its_codes() -> None:
    # The warm-up plans 235 codes over 50 wallets (slots 0-4); the run needs 400 more, more than the 50
    # wallets have left, so wallets are added. Code j over more wallets names other (device, slot)
    # pairs: started at j = 235 it would hand out the warm-up's own codes again (CODE_USED).
    devs = devices(200)
    warm = plan("pay", MERCHANTS, devs[:50], streams=1, per_stream=235, now_unix=1_800_000_000, run_id="w")
    wallets = wallets_for(235, 50, 400)
    assert wallets > 50
    naive = plan(
        "pay",
        MERCHANTS,
        devs[:wallets],
        streams=1,
        per_stream=400,
        now_unix=1_800_000_000,
        run_id="n",
        first_code=235,
    )
    warm_codes = {o.code for s in warm for o in s}
    assert warm_codes & {o.code for s in naive for o in s}  # the collision this guards against
    main = plan(
        "pay",
        MERCHANTS,
        devs[:wallets],
        streams=1,
        per_stream=400,
        now_unix=1_800_000_000,
        run_id="m",
        first_code=continue_after(235, 50, wallets),
    )
    assert not warm_codes & {o.code for s in main for o in s}
    # With no wallets added the next plan simply goes on.
    assert wallets_for(100, 50, 300) == 50 and continue_after(100, 50, 50) == 100


def test_too_few_wallets_for_the_requests_is_refused_with_the_remedy() -> None:
    with pytest.raises(ValueError, match="more --users"):
        plan("pay", MERCHANTS, devices(5), streams=1, per_stream=51, now_unix=1_800_000_000, run_id="c")


def test_queries_and_refunds_name_only_paid_targets_each_stream_its_own_and_never_overrefund() -> None:
    targets = [Order("mapi.pay", i % 2, f"Bw-0-{i}", amount=1_000 + i) for i in range(6)]
    streams = plan(
        "mix",
        MERCHANTS,
        devices(100),
        streams=2,
        per_stream=400,
        now_unix=1_800_000_000,
        run_id="d",
        targets=targets,
    )
    by_ptid = {o.ptid: o for o in targets}
    seen: dict[str, int] = {}
    for n, s in enumerate(streams):
        kinds = {o.kind for o in s}
        assert kinds == {"mapi.pay", "mapi.query", "mapi.refund"}
        refunded: dict[str, int] = {}
        for o in s:
            if o.kind == "mapi.pay":
                assert o.ptid.startswith(f"Bd-{n}-") and o.code
                continue
            target = by_ptid[o.ptid]  # only paid targets are named
            assert o.merchant == target.merchant
            assert seen.setdefault(o.ptid, n) == n, "a target belongs to one stream"
            if o.kind == "mapi.refund":
                assert o.amount > 0 and o.refund_id
                refunded[o.ptid] = refunded.get(o.ptid, 0) + o.amount
        assert all(total < by_ptid[k].amount for k, total in refunded.items())


def test_the_mix_without_paid_targets_is_refused() -> None:
    with pytest.raises(ValueError, match="paid payment per stream"):
        plan("mix", MERCHANTS, devices(10), streams=2, per_stream=10, now_unix=1_800_000_000, run_id="f")


def test_a_quarter_of_confirm_workload_amounts_are_over_the_confirm_limit() -> None:
    streams = plan(
        "confirm",
        MERCHANTS[:1],
        devices(200),
        streams=1,
        per_stream=2000,
        now_unix=1_800_000_000,
        run_id="e",
    )
    big = sum(1 for o in streams[0] if o.amount > 10_000) / 2000
    assert 0.2 < big < 0.3
