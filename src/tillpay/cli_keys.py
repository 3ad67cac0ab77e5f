"""``tillpay merchant key-add``: rotate a merchant's RSA public key (a new Antom ``keyVersion``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tillpay.services import merchants as merchant_service

if TYPE_CHECKING:  # tillpay.cli imports this module at its end
    from tillpay.cli import Ctx


@click.command("key-add")
@click.argument("partner_id")
@click.option(
    "--public-key",
    "public_key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The merchant's new RSA public key (PEM).",
)
@click.pass_obj
def key_add(c: Ctx, partner_id: str, public_key_file: str) -> None:
    """Register a new public key for a merchant; older Antom keyVersions keep verifying."""
    pem = Path(public_key_file).read_text()
    version = c.run(lambda p: merchant_service.add_key_version(p, partner_id, pem))
    c.out(
        {"partner_id": partner_id, "key_version": version},
        f"{partner_id}: key version {version} is now current (Antom keyVersion={version})",
    )
