"""``tillpay ecr --training``: the till on the merchant's test credentials, against a real ``tillpay
serve``. A training sale pays at the test merchant, every screen shows the TRAINING banner and still
fits 80x24 and 120x40, every receipt and slip is marked at the top and the bottom, and the live journal
(its reports and reconciliation) never sees a training sale."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness import CROISSANT, FLAT_WHITE, OPERATOR_PIN, Shop, cli, run_in_thread, scan, shop, until
from screen_fit import assert_fits
from textual.widgets import Static

from conftest import test_settings
from tillpay.ecr.app import EcrApp, RefundScreen, ReportScreen
from tillpay.ecr.cli import ecr
from tillpay.ecr.config import ConfigError, EcrConfig, TrainingConfig
from tillpay.ecr.i18n import t
from tillpay.ecr.journal import Journal
from tillpay.ecr.kiosk import KioskApp, OperatorScreen, PinScreen
from tillpay.ecr.report import build_report
from tillpay.ecr.till import Till, make_client
from tillpay.services import merchants, wallets
from tillpay.services.platform import Platform

pytestmark = pytest.mark.anyio
__all__ = ["shop"]

TRAINEE = "trainee@sandbox.test"
TRAINEE_PIN = "135790"
MARK = "*** TRAINING - NOT VALID ***"
SIZES = [(80, 24), (120, 40)]


async def _with_training(s: Shop) -> EcrConfig:
    """The shop's till with a [training] section: the test merchant's MD5 credentials, and a sandbox
    wallet for the trainee to pay with."""

    async def setup() -> tuple[str, str]:
        p = Platform(test_settings(s.db))
        try:
            test = (await merchants.test_merchant_of(p, s.cfg.partner)).merchant
            await wallets.add_user(p, login_id=TRAINEE, currency="CNY", pin=TRAINEE_PIN, sandbox=True)
            await wallets.fund(p, TRAINEE, 100_000, "training-float-1", sandbox=True)
            return test.partner_id, test.md5_key
        finally:
            await p.close()

    partner, md5_key = await setup()
    return replace(
        s.cfg,
        training=TrainingConfig(
            partner=partner, md5_key=md5_key, journal="training-journal.db", text_copy="training.txt"
        ),
    )


def _trainee_code(s: Shop) -> str:
    return str(json.loads(cli(s.db, "wallet", "code", "--login", TRAINEE).stdout)["code"])


def _banner(app: EcrApp) -> str:
    return str(app.screen.query_one("#training-banner", Static).render())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_training_sale_pays_at_the_test_merchant_and_never_reaches_the_live_journal(
    shop: Shop, size: tuple[int, int]
) -> None:
    cfg = await _with_training(shop)
    # A live sale first: the live journal, its report and its reconciliation have one sale.
    live_till = Till(cfg)
    live_app = EcrApp(live_till)
    async with live_app.run_test(size=size) as pilot:
        assert not live_app.query("#training-banner")
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, await run_in_thread(shop.code))
        await until(
            pilot, lambda: live_app.last_outcome is not None and live_app.last_outcome.outcome == "PAID"
        )
        assert live_app.last_outcome is not None
        live_order = live_app.last_outcome.order
        assert "TRAINING" not in str(live_app.query_one("#receipt", Static).render())
    live_till.close()

    till = Till(cfg.for_training())
    app = EcrApp(till)
    async with app.run_test(size=size) as pilot:
        assert "TRAINING MODE" in _banner(app) and "TRAINING" in app.title
        assert_fits(app, "the training till's main screen")
        await scan(pilot, FLAT_WHITE)
        await scan(pilot, "2*" + CROISSANT)
        assert_fits(app, "the training till with a basket")
        await scan(pilot, await run_in_thread(lambda: _trainee_code(shop)))
        await until(pilot, lambda: app.last_outcome is not None and app.last_outcome.outcome == "PAID")
        assert_fits(app, "the training till, paid, with the receipt")
        assert app.last_outcome is not None
        order = app.last_outcome.order
        assert order.trade_no and order.total == 450 + 2 * 320
        on_screen = str(app.query_one("#receipt", Static).render()).strip("\n").split("\n")
        assert on_screen[0].strip() == MARK and on_screen[-1].strip() == MARK

        # The refund dialog and its slip.
        await pilot.press("f5")
        refund = app.screen
        assert isinstance(refund, RefundScreen) and "TRAINING" in _banner(app)
        await scan(pilot, order.trade_no)
        await until(pilot, lambda: refund.target is not None)
        assert_fits(app, "the training refund dialog")
        await scan(pilot, CROISSANT)
        await pilot.press("enter")
        await until(pilot, lambda: refund.done is not None)
        assert_fits(app, "the training refund dialog after the refund")
        await pilot.press("escape")

        # The shift report: the training journal's, checked against the test merchant.
        await pilot.press("f7")
        report = app.screen
        assert isinstance(report, ReportScreen) and "TRAINING" in _banner(app)
        await until(pilot, lambda: report.report is not None)
        assert report.report is not None and report.report.matches
        assert_fits(app, "the training shift report")
        await pilot.press("escape")
    till.close()

    # At the gateway: the sale is the test merchant's; the live merchant has no such order.
    with make_client(cfg.for_training()) as c:
        assert c.query(order.partner_trans_id).fields["alipay_trans_status"] == "TRADE_SUCCESS"
    with make_client(cfg) as c:
        assert c.query(order.partner_trans_id).error == "TRADE_NOT_EXIST"

    # The journals are apart: the live one has only the live sale, the training one only the training's.
    live = Journal(cfg.path(cfg.journal))
    training = Journal(cfg.path("training-journal.db"))
    try:
        assert [o.partner_trans_id for o in live.orders()] == [live_order.partner_trans_id]
        assert live.refunds() == [] and live.order(order.partner_trans_id) is None
        assert [o.partner_trans_id for o in training.orders()] == [order.partner_trans_id]
        assert len(training.refunds(state="done")) == 1
        with make_client(cfg) as c:
            rep = build_report(live, c, shift_id=live.current_shift().id)
        assert rep.matches and rep.checked == 1
        assert sum(n for n, _ in rep.by_state.values()) == 1
        # Every training receipt kept is marked; no live one is.
        assert all(data.get("training") for *_, data in training.receipts())
        assert not any(data.get("training") for *_, data in live.receipts())
    finally:
        live.close()
        training.close()

    # Paper: the shared printer got the marked receipts; the live audit trail none of them.
    assert "TRAINING" not in (shop.dir / "receipts.txt").read_text(encoding="utf-8")
    slips = (shop.dir / "training.txt").read_text(encoding="utf-8").strip("\n").split("\n\n")
    assert len(slips) == 2  # the sale's receipt and the refund slip
    for slip in slips:
        lines = slip.strip("\n").split("\n")
        assert lines[0].strip() == MARK and lines[-1].strip() == MARK
    assert (shop.dir / "receipts.bin").read_bytes().count(MARK.encode()) == 4

    # `tillpay ecr report`: the live shift has the live sale; `--training` (after the group or the
    # subcommand) the training sale, at the test merchant.
    path = shop.dir / "tillpay-ecr.toml"
    cfg.save(path)
    runner = CliRunner()
    live_report = runner.invoke(ecr, ["--config", str(path), "report"])
    assert live_report.exit_code == 0, live_report.output
    assert "TRAINING" not in live_report.output and "(1 orders)" in live_report.output
    for args in (["report", "--training"], ["--training", "report"]):
        training_report = runner.invoke(ecr, ["--config", str(path), *args])
        assert training_report.exit_code == 0, training_report.output
        assert training_report.output.startswith("*** TRAINING") and "(1 orders)" in training_report.output


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_screen_of_the_kiosk_in_training_shows_the_banner_and_fits(
    shop: Shop, size: tuple[int, int]
) -> None:
    till = Till(replace(await _with_training(shop), kiosk_idle_seconds=600).for_training())
    app = KioskApp(till)
    async with app.run_test(size=size) as pilot:
        assert "TRAINING MODE" in _banner(app)
        assert_fits(app, "the training kiosk's language choice")
        for lang in ("ja", "ko", "zh", "en"):
            app.choose_language(lang)
            await scan(pilot, FLAT_WHITE)
            assert _banner(app) == t(lang, "training_banner")  # in the shopper's language
            assert_fits(app, f"the training kiosk in {lang}")
            app.reset()
            await pilot.pause()
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PinScreen) and _banner(app)
        assert_fits(app, "the training kiosk's PIN dialog")
        await pilot.press(*OPERATOR_PIN, "enter")
        assert isinstance(app.screen, OperatorScreen) and _banner(app)
        await pilot.click("#op-settings")
        assert_fits(app, "the training kiosk's operator menu")
    till.close()


def test_training_refuses_to_start_without_test_credentials(tmp_path: Path) -> None:
    base = EcrConfig(
        gateway_url="http://127.0.0.1:9",
        partner="2088000000000001",
        sign_type="MD5",
        md5_key="k" * 32,
        source=str(tmp_path / "tillpay-ecr.toml"),
    )
    with pytest.raises(ConfigError, match="test credentials"):
        base.for_training()
    same = replace(base, training=TrainingConfig(partner=base.partner, md5_key="t" * 32))
    with pytest.raises(ConfigError, match="live partner"):
        same.for_training()
    shared = replace(
        base, training=TrainingConfig(partner="2088000000000002", md5_key="t" * 32, journal=base.journal)
    )
    with pytest.raises(ConfigError, match="another file"):
        shared.for_training()
    with pytest.raises(ConfigError, match="md5_key"):
        replace(base, training=TrainingConfig(partner="2088000000000002"))

    # From the command line: `tillpay ecr --training` on a file without [training] stops, saying why.
    path = tmp_path / "tillpay-ecr.toml"
    base.save(path)
    (tmp_path / "catalog.csv").write_text("code,name,price\n1,Tea,1.00\n")
    result = CliRunner().invoke(ecr, ["--config", str(path), "--training"])
    assert result.exit_code == 1 and "training needs the merchant's test credentials" in result.output


def test_ecr_init_takes_the_test_credentials_json(tmp_path: Path) -> None:
    creds = tmp_path / "test-credentials.json"
    creds.write_text(
        json.dumps(
            {
                "partner_id": "2088000000000009",
                "md5_key": "m" * 32,
                "app_id": "2021000000000009",
                "client_id": "TPX",
            }
        )
    )
    path = tmp_path / "tillpay-ecr.toml"
    result = CliRunner().invoke(
        ecr,
        [
            "init",
            "--config",
            str(path),
            "--gateway-url",
            "http://127.0.0.1:9",
            "--partner",
            "2088000000000001",
            "--sign-type",
            "MD5",
            "--md5-key",
            "k" * 32,
            "--training-credentials",
            str(creds),
        ],
    )
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "[training]" in text and "in_training" not in text
    cfg = EcrConfig.load(path)
    assert cfg.training == TrainingConfig(partner="2088000000000009", sign_type="MD5", md5_key="m" * 32)
    tr = cfg.for_training()
    assert (tr.partner, tr.md5_key, tr.sign_type, tr.in_training) == (
        "2088000000000009",
        "m" * 32,
        "MD5",
        True,
    )
    assert tr.journal == "ecr-training-journal.db" and tr.printer.text_copy == ""
    assert not cfg.in_training and cfg.partner == "2088000000000001"
    # A file without training credentials has no [training] section at all.
    plain = tmp_path / "plain.toml"
    replace(cfg, training=TrainingConfig()).save(plain)
    assert "[training]" not in plain.read_text()
    assert not EcrConfig.load(plain).training.configured
