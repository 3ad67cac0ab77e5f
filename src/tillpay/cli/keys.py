"""A merchant's keys: ``tillpay merchant key-add``, ``keys``, ``key-revoke``, ``sign-types``, ``md5-rotate``.

A new RSA key becomes a new Antom ``keyVersion``; older versions keep verifying for a grace period
(``--grace-seconds``, default ``TILLPAY_KEY_GRACE_SECONDS``), then are refused. A version can be revoked
at once. The MD5 key is rotated the same way, and disabled by leaving ``MD5`` out of the sign types.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from tillpay.cli.common import Ctx
from tillpay.services import merchants as merchant_service


@click.command("key-add")
@click.argument("partner_id")
@click.option(
    "--public-key",
    "public_key_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The merchant's new RSA public key (PEM).",
)
@click.option(
    "--grace-seconds",
    type=click.IntRange(min=0),
    default=None,
    help="How long older key versions keep verifying (default TILLPAY_KEY_GRACE_SECONDS; 0: stop now).",
)
@click.pass_obj
def key_add(c: Ctx, partner_id: str, public_key_file: str, grace_seconds: int | None) -> None:
    """Register a new public key for a merchant; older Antom keyVersions verify until the grace ends."""
    pem = Path(public_key_file).read_text()
    version = c.run(lambda p: merchant_service.add_key_version(p, partner_id, pem, grace_seconds))
    c.out(
        {"partner_id": partner_id, "key_version": version},
        f"{partner_id}: key version {version} is now current (Antom keyVersion={version}); "
        "older versions stop verifying when their grace period ends",
    )


def _when(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


@click.command("keys")
@click.argument("partner_id")
@click.pass_obj
def keys(c: Ctx, partner_id: str) -> None:
    """List a merchant's key versions, their status, and its sign types and MD5 key's grace period."""

    async def go(p: Any) -> tuple[Any, list[merchant_service.KeyVersion]]:
        return await p.merchant_by_partner(partner_id, fresh=True), await merchant_service.key_versions(
            p, partner_id
        )

    m, versions = c.run(go)
    rows = [
        {
            "key_version": v.version,
            "status": v.status,
            "created_at": _when(v.created_at),
            "expires_at": _when(v.expires_at),
            "revoked_at": _when(v.revoked_at),
        }
        for v in versions
    ]
    sign_types = sorted(m.sign_types) if m.sign_types else None
    text = "\n".join(
        [
            f"{partner_id}: sign types {', '.join(sign_types) if sign_types else 'all'}"
            + (
                f"; previous MD5 key accepted until {_when(m.md5_key_previous_until)}"
                if m.md5_key_previous
                else ""
            ),
            *(
                f"  v{r['key_version']}: {r['status']}"
                + (f" (until {r['expires_at']})" if r["expires_at"] else "")
                for r in rows
            ),
        ]
    )
    c.out({"partner_id": partner_id, "sign_types": sign_types, "keys": rows}, text)


@click.command("key-revoke")
@click.argument("partner_id")
@click.argument("version", type=click.IntRange(min=1))
@click.pass_obj
def key_revoke(c: Ctx, partner_id: str, version: int) -> None:
    """Refuse requests signed with an Antom keyVersion from now on (not the current one)."""
    c.run(lambda p: merchant_service.revoke_key_version(p, partner_id, version))
    c.out(
        {"partner_id": partner_id, "key_version": version, "status": "revoked"},
        f"{partner_id}: key version {version} revoked",
    )


@click.command("sign-types")
@click.argument("partner_id")
@click.argument("types", nargs=-1)
@click.option("--all", "allow_all", is_flag=True, help="Allow every sign type again.")
@click.pass_obj
def sign_types(c: Ctx, partner_id: str, types: tuple[str, ...], allow_all: bool) -> None:
    """Allow only these sign types: MD5, RSA, RSA2 (MAPI, Open Platform), RSA256 (Antom).

    Leaving MD5 out disables the merchant's MD5 key, e.g. ``merchant sign-types P RSA2 RSA256``.
    """
    if allow_all == bool(types):
        raise click.UsageError("give the sign types to allow, or --all")
    m = c.run(lambda p: merchant_service.set_sign_types(p, partner_id, None if allow_all else list(types)))
    allowed = sorted(m.sign_types) if m.sign_types else None
    c.out(
        {"partner_id": partner_id, "sign_types": allowed},
        f"{partner_id}: sign types {', '.join(allowed) if allowed else 'all'}",
    )


@click.command("md5-rotate")
@click.argument("partner_id")
@click.option(
    "--grace-seconds",
    type=click.IntRange(min=0),
    default=None,
    help="How long the old MD5 key keeps verifying requests (default TILLPAY_KEY_GRACE_SECONDS; 0: stop now).",
)
@click.pass_obj
def md5_rotate(c: Ctx, partner_id: str, grace_seconds: int | None) -> None:
    """Give the merchant a new MD5 key (printed once); the old one verifies until the grace ends."""
    key = c.run(lambda p: merchant_service.rotate_md5_key(p, partner_id, grace_seconds))
    c.out({"partner_id": partner_id, "md5_key": key}, f"{partner_id}: new MD5 key {key}")
