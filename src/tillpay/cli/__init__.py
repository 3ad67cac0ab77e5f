"""``tillpay``: the operator's command line. Every command takes ``--json`` for scripts.

``main`` is the root group and this package registers every group on it. Each group lives in its own
module here and takes the shared context from ``cli/common.py``; none imports this package back, so the
modules form no cycle.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tillpay import shutdown

# Before the imports below (seconds on a loaded machine): a SIGTERM to a starting ``tillpay serve`` or
# ``tillpay worker`` is recorded, and start-up stops cleanly at its next stage (tillpay/shutdown.py).
# ``python -m tillpay.cli`` imports this package while ``sys.argv[0]`` is still ``-m``.
if {"serve", "worker"} & set(sys.argv[1:]) and (
    sys.argv[0] == "-m" or Path(sys.argv[0]).name in ("tillpay", "__main__.py")
):
    shutdown.install()

import os

import click

from tillpay import __version__
from tillpay.bench.cli import bench
from tillpay.cli.audit import audit
from tillpay.cli.common import Ctx, pass_ctx
from tillpay.cli.console import console
from tillpay.cli.fx import fx
from tillpay.cli.merchants import merchant
from tillpay.cli.risk import risk
from tillpay.cli.serve import migrate, serve
from tillpay.cli.settlement import reconcile, settle, simulate
from tillpay.cli.wallets import wallet
from tillpay.config import get_settings
from tillpay.ecr.cli import ecr
from tillpay.logs import configure_logging
from tillpay.ops.cli import backup, ha
from tillpay.worker.cli import worker

__all__ = ["Ctx", "main", "pass_ctx"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url", envvar="TILLPAY_DATABASE_URL", help="SQLAlchemy URL (default: sqlite file tillpay.db)."
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(__version__, prog_name="tillpay")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, as_json: bool) -> None:
    """Tillpay: a self-hostable in-store payment gateway speaking Alipay's wire protocols."""
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    configure_logging(
        os.environ.get("TILLPAY_LOG_LEVEL", "warning")
        if ctx.invoked_subcommand != "serve"
        else settings.log_level
    )
    if ctx.invoked_subcommand not in ("serve", "worker"):
        shutdown.uninstall()  # a one-off command keeps SIGTERM's default
    ctx.obj = Ctx(settings, as_json)


for _command in (
    serve,
    migrate,
    merchant,
    wallet,
    fx,
    risk,
    audit,
    ecr,
    settle,
    reconcile,
    simulate,
    console,
    worker,
    bench,
    ha,
    backup,
):
    main.add_command(_command)
