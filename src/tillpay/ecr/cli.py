"""``tillpay ecr``: run the till (or the kiosk), create its configuration, print its report."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import click

from tillpay.ecr.config import DEFAULT_PATH, ConfigError, EcrConfig, PrinterConfig, TrainingConfig, hash_pin

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PATH,
    envvar="TILLPAY_ECR_CONFIG",
    show_default=True,
    help="The till's configuration file.",
)
# On a subcommand --config may also come after its name; without it the group's value holds.
SUB_CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The till's configuration file (default: the group's --config).",
)


def _config_path(given: Path | None) -> Path:
    if given is not None:
        return given
    group = click.get_current_context().parent
    if group is not None and isinstance(group.params.get("config_path"), Path):
        return Path(group.params["config_path"])
    return DEFAULT_PATH


def _load(path: Path) -> EcrConfig:
    try:
        return EcrConfig.load(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _till(path: Path, training: bool = False):  # type: ignore[no-untyped-def]  # imported lazily: Textual is slow to import
    from tillpay.ecr.catalog import CatalogError
    from tillpay.ecr.till import Till

    cfg = _load(path)
    if training:
        try:
            cfg = cfg.for_training()
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
    try:
        return Till(cfg)
    except CatalogError as e:
        raise click.ClickException(str(e)) from None


def _log_to_file(cfg: EcrConfig) -> None:
    """Send the ECR's logs (heartbeat failures...) to its log file: a line on stderr would tear the
    cashier's screen."""
    logger = logging.getLogger("tillpay.ecr")
    logger.propagate = False
    if cfg.log_file:
        handler = logging.FileHandler(cfg.path(cfg.log_file), encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    else:
        logger.addHandler(logging.NullHandler())


@click.group("ecr", invoke_without_command=True)
@CONFIG_OPTION
@click.option("--kiosk", is_flag=True, help="Self-checkout: customer-facing, large text, operator PIN.")
@click.option(
    "--training",
    is_flag=True,
    help="Practice: the [training] test credentials and journal, a TRAINING banner, marked receipts.",
)
@click.pass_context
def ecr(ctx: click.Context, config_path: Path, kiosk: bool, training: bool) -> None:
    """The cashier's terminal: scan items, take payment codes, print receipts, refund, report."""
    if ctx.invoked_subcommand is not None:
        return
    till = _till(config_path, training)
    _log_to_file(till.cfg)
    try:
        if kiosk:
            from tillpay.ecr.kiosk import KioskApp

            KioskApp(till).run()
        else:
            from tillpay.ecr.app import EcrApp

            EcrApp(till).run()
    finally:
        till.close()


@ecr.command("init")
@SUB_CONFIG_OPTION
@click.option(
    "--demo-credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="tillpay-demo.json written by `tillpay serve --demo`: takes the URL, partner and keys from it.",
)
@click.option("--gateway-url", help="e.g. http://127.0.0.1:8000")
@click.option("--partner", help="The merchant's partner id (2088 and 12 digits).")
@click.option("--sign-type", type=click.Choice(["RSA2", "RSA", "MD5"]), default="RSA2", show_default=True)
@click.option("--md5-key")
@click.option("--private-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--gateway-public-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--merchant-name", default="Tillpay Store", show_default=True)
@click.option("--store-id", default="STORE-1", show_default=True)
@click.option("--store-name", default="")
@click.option("--terminal-id", default="T1", show_default=True)
@click.option("--currency", default="USD", show_default=True, help="The catalog's price currency.")
@click.option(
    "--settle-currency", default="", help="The merchant's settlement currency (default: --currency)."
)
@click.option("--language", type=click.Choice(["en", "ja", "ko", "zh"]), default="en", show_default=True)
@click.option("--catalog", default="catalog.csv", show_default=True, help="CSV with code,name,price.")
@click.option("--journal", default="ecr-journal.db", show_default=True)
@click.option(
    "--printer",
    default="none",
    show_default=True,
    help="file:PATH, text:PATH, network:HOST[:PORT], usb:VID:PID, serial:DEV[:BAUD] or none.",
)
@click.option("--text-copy", default="", help="Also append every receipt as plain text to this file.")
@click.option(
    "--paper-columns",
    type=click.IntRange(24, 64),
    default=42,
    show_default=True,
    help="Characters per receipt line: 42 on 80 mm paper, 32 on 58 mm.",
)
@click.option("--poll-interval", type=float, default=3.0, show_default=True)
@click.option("--merchant-timeout", type=float, default=60.0, show_default=True)
@click.option("--cancel-retry-interval", type=float, default=5.0, show_default=True)
@click.option("--kiosk-idle-seconds", type=float, default=60.0, show_default=True)
@click.option(
    "--after-sale-seconds",
    type=float,
    default=15.0,
    show_default=True,
    help="Kiosk: after a sale, back to the start this soon (or when the shopper presses Enter).",
)
@click.option(
    "--heartbeat-interval",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between heartbeats to the gateway; 0 turns them off (they need --md5-key).",
)
@click.option("--heartbeat-timeout", type=float, default=3.0, show_default=True)
@click.option("--operator-pin", help="4-12 digits; unlocks refunds and settings in kiosk mode.")
@click.option(
    "--training-credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The JSON of `tillpay merchant test-credentials PARTNER --json`: the [training] partner and keys.",
)
@click.option("--training-partner-id", help="The test merchant's partner id (for `tillpay ecr --training`).")
@click.option("--training-md5-key", help="The test merchant's MD5 key.")
@click.option(
    "--training-private-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The test merchant's RSA private key (with --training-gateway-public-key-file: RSA2 signing).",
)
@click.option(
    "--training-gateway-public-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--training-journal", default="ecr-training-journal.db", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(
    config_path: Path | None,
    demo_credentials: Path | None,
    gateway_url: str | None,
    partner: str | None,
    sign_type: str,
    md5_key: str | None,
    private_key_file: Path | None,
    gateway_public_key_file: Path | None,
    merchant_name: str,
    store_id: str,
    store_name: str,
    terminal_id: str,
    currency: str,
    settle_currency: str,
    language: str,
    catalog: str,
    journal: str,
    printer: str,
    text_copy: str,
    paper_columns: int,
    poll_interval: float,
    merchant_timeout: float,
    cancel_retry_interval: float,
    kiosk_idle_seconds: float,
    after_sale_seconds: float,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    operator_pin: str | None,
    training_credentials: Path | None,
    training_partner_id: str | None,
    training_md5_key: str | None,
    training_private_key_file: Path | None,
    training_gateway_public_key_file: Path | None,
    training_journal: str,
    force: bool,
) -> None:
    """Write the till's configuration file."""
    config_path = _config_path(config_path)
    if config_path.exists() and not force:
        raise click.ClickException(f"{config_path} exists; use --force to overwrite it")
    creds: dict[str, str] = {}
    if demo_credentials:
        try:
            creds = json.loads(demo_credentials.read_text())
        except ValueError as e:
            raise click.ClickException(f"{demo_credentials}: {e}") from None
        merchant_name = merchant_name if merchant_name != "Tillpay Store" else "Tillpay Demo Store"
    try:
        cfg = EcrConfig(
            gateway_url=gateway_url or creds.get("gateway_url", ""),
            partner=partner or creds.get("partner", ""),
            sign_type=sign_type,
            md5_key=md5_key or creds.get("md5_key", ""),
            merchant_private_key=(
                private_key_file.read_text() if private_key_file else creds.get("merchant_private_key", "")
            ),
            gateway_public_key=(
                gateway_public_key_file.read_text()
                if gateway_public_key_file
                else creds.get("tillpay_public_key", "")
            ),
            merchant_name=merchant_name,
            store_id=store_id,
            store_name=store_name,
            terminal_id=terminal_id,
            currency=currency.upper(),
            settle_currency=(settle_currency or creds.get("settlement_currency", "")).upper(),
            language=language,
            catalog=catalog,
            journal=journal,
            printer=replace(PrinterConfig.parse(printer), text_copy=text_copy, columns=paper_columns),
            poll_interval=poll_interval,
            merchant_timeout=merchant_timeout,
            cancel_retry_interval=cancel_retry_interval,
            kiosk_idle_seconds=kiosk_idle_seconds,
            after_sale_seconds=after_sale_seconds,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            operator_pin_hash=hash_pin(operator_pin) if operator_pin else "",
            training=_training(
                training_credentials,
                training_partner_id,
                training_md5_key,
                training_private_key_file,
                training_gateway_public_key_file,
                training_journal,
            ),
        )
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    cfg.save(config_path)
    click.echo(f"wrote {config_path} (terminal {cfg.terminal_id}, partner {cfg.partner}, {cfg.gateway_url})")
    cat = config_path.resolve().parent / catalog
    if not cat.exists():
        cat.write_bytes(resources.files("tillpay.ecr").joinpath("example_catalog.csv").read_bytes())
        click.echo(f"wrote the example catalog to {cat} (code,name,price; edit it)")


def _training(
    credentials: Path | None,
    partner: str | None,
    md5_key: str | None,
    private_key_file: Path | None,
    gateway_public_key_file: Path | None,
    journal: str,
) -> TrainingConfig:
    """The [training] section from ``ecr init``'s options; options override the credentials file.

    The file is the JSON ``tillpay merchant test-credentials --json`` prints: ``partner_id`` and
    ``md5_key``, and ``merchant_private_key`` and ``tillpay_public_key`` when it has them.
    """
    creds: dict[str, Any] = {}
    if credentials:
        try:
            loaded = json.loads(credentials.read_text())
        except ValueError as e:
            raise click.ClickException(f"{credentials}: {e}") from None
        if not isinstance(loaded, dict):
            raise click.ClickException(f"{credentials}: not a JSON object")
        creds = loaded
    partner = partner or str(creds.get("partner_id") or creds.get("partner") or "")
    if not partner:
        return TrainingConfig()
    private = (
        private_key_file.read_text() if private_key_file else str(creds.get("merchant_private_key") or "")
    )
    public = (
        gateway_public_key_file.read_text()
        if gateway_public_key_file
        else str(creds.get("tillpay_public_key") or creds.get("gateway_public_key") or "")
    )
    md5 = md5_key or str(creds.get("md5_key") or "")
    return TrainingConfig(
        partner=partner,
        # RSA2 when both RSA keys are known (the private key is printed only when the test merchant is
        # made), else the MD5 key every merchant has.
        sign_type="RSA2" if private and public else "MD5",
        md5_key=md5,
        merchant_private_key=private if private and public else "",
        gateway_public_key=public if private and public else "",
        journal=journal,
    )


@ecr.command("report")
@SUB_CONFIG_OPTION
@click.option(
    "--day",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="A day's report (default: the open shift).",
)
@click.option("--print", "do_print", is_flag=True, help="Also send it to the printer.")
@click.option("--training", is_flag=True, help="The training journal's report, at the test merchant.")
def report(config_path: Path | None, day: object, do_print: bool, training: bool) -> None:
    """Print the shift (or day) report, checked against the gateway; exit 1 on any difference."""
    config_path = _config_path(config_path)
    group = click.get_current_context().parent
    training = training or bool(group is not None and group.params.get("training"))  # `ecr --training report`
    from tillpay.ecr.report import build_report

    till = _till(config_path, training)
    try:
        j = till.journal
        when = day.date() if day is not None else None  # type: ignore[attr-defined]
        rep = (
            build_report(j, till.client, day=when)
            if isinstance(when, date)
            else build_report(j, till.client, shift_id=j.current_shift().id)
        )
        if training:
            click.echo("*** TRAINING: the training journal at the test merchant, not the live sales ***")
        click.echo("\n".join(rep.lines()))
        if do_print:
            till.printer.print(till.receipt_header("report") | {"lines": rep.lines(till.cfg.printer.columns)})
    finally:
        till.close()
    sys.exit(0 if rep.matches else 1)
