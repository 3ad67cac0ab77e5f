"""What every command shares: the settings, the output mode (text or ``--json``) and the database."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click

from tillpay.config import Settings
from tillpay.domain.errors import TillpayError
from tillpay.services.platform import Platform
from tillpay.store.migrate import ensure_current

T = TypeVar("T")


class Ctx:
    """What every command shares: settings and output mode."""

    def __init__(self, settings: Settings, as_json: bool) -> None:
        self.settings = settings
        self.as_json = as_json

    def run(self, fn: Callable[[Platform], Awaitable[T]]) -> T:
        """Migrate the database if needed, then run one use case on a fresh platform."""
        ensure_current(self.settings.database_url)

        async def go() -> T:
            p = Platform(self.settings)
            try:
                return await fn(p)
            finally:
                await p.close()

        try:
            return asyncio.run(go())
        except TillpayError as e:
            self.fail(e.code.value, e.detail)

    def fail(self, code: str, message: str, exit_code: int = 1) -> NoReturn:
        """Report an error in the chosen output mode and exit non-zero."""
        if self.as_json:
            click.echo(json.dumps({"error": code, "message": message}))
        else:
            click.echo(f"error: {code}: {message}", err=True)
        sys.exit(exit_code)

    def out(self, data: dict[str, Any], text: str) -> None:
        """Print ``data`` as JSON or ``text`` for people."""
        click.echo(json.dumps(data, indent=2, default=str) if self.as_json else text)


pass_ctx = click.make_pass_decorator(Ctx)
