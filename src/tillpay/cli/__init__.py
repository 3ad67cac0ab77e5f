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

import importlib
import os

import click

from tillpay import __version__
from tillpay.cli.common import Ctx, pass_ctx
from tillpay.config import get_settings
from tillpay.logs import configure_logging

__all__ = ["Ctx", "main", "pass_ctx"]

#: Each command and the module that defines it, imported only when that command runs (or for the root
#: ``--help``): importing every command's services cost every call of one command most of a second.
COMMANDS: dict[str, str] = {
    "serve": "tillpay.cli.serve:serve",
    "migrate": "tillpay.cli.serve:migrate",
    "merchant": "tillpay.cli.merchants:merchant",
    "wallet": "tillpay.cli.wallets:wallet",
    "fx": "tillpay.cli.fx:fx",
    "risk": "tillpay.cli.risk:risk",
    "audit": "tillpay.cli.audit:audit",
    "ecr": "tillpay.ecr.cli:ecr",
    "settle": "tillpay.cli.settlement:settle",
    "reconcile": "tillpay.cli.settlement:reconcile",
    "simulate": "tillpay.cli.settlement:simulate",
    "console": "tillpay.cli.console:console",
    "worker": "tillpay.worker.cli:worker",
    "bench": "tillpay.bench.cli:bench",
    "ha": "tillpay.ops.cli:ha",
    "backup": "tillpay.ops.cli:backup",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported when first looked up (click's documented lazy pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
