"""``tillpay console``: the merchant console's accounts (registered in cli/__init__.py)."""

from __future__ import annotations

import click

from tillpay.cli.common import Ctx
from tillpay.services import console_auth
from tillpay.services.platform import Platform

pass_ctx = click.pass_obj


@click.group("console")
def console() -> None:
    """The merchant console under /console: its users."""


@console.group("user")
def user() -> None:
    """Console users: each belongs to one merchant and has a role."""


@user.command("add")
@click.option("--partner", "partner_id", required=True, help="The merchant's partner id (2088...).")
@click.option("--login", required=True, help="The login, e.g. an e-mail address.")
@click.option(
    "--role",
    type=click.Choice(console_auth.ROLES),
    default="owner",
    show_default=True,
    help="owner: everything; manager; cashier-supervisor; read-only.",
)
@click.option("--name", help="The person's name (default: the login).")
@click.password_option(
    "--password",
    envvar="TILLPAY_CONSOLE_PASSWORD",
    help=f"At least {console_auth.MIN_PASSWORD} characters (prompted if not given).",
)
@pass_ctx
def user_add(c: Ctx, partner_id: str, login: str, role: str, name: str | None, password: str) -> None:
    """Create a console user, e.g. a merchant's first owner."""

    async def go(p: Platform) -> console_auth.ConsoleUser:
        return await console_auth.add_user(
            p, partner_id=partner_id, login=login, password=password, role=role, name=name
        )

    u = c.run(go)
    c.out(
        {"login": u.login, "role": u.role, "partner_id": u.partner_id, "merchant": u.merchant_name},
        f"{u.login} ({u.role}) can sign in to {u.merchant_name}'s console at {c.settings.public_url}/console/",
    )


@user.command("list")
@click.option("--partner", "partner_id", required=True, help="The merchant's partner id.")
@pass_ctx
def user_list(c: Ctx, partner_id: str) -> None:
    """List a merchant's console users."""

    async def go(p: Platform) -> list[console_auth.ConsoleUser]:
        m = await p.merchant_by_partner(partner_id, fresh=True)
        return await console_auth.users_of(p, m.id)

    users = c.run(go)
    c.out(
        {"users": [{"login": u.login, "name": u.name, "role": u.role, "status": u.status} for u in users]},
        "\n".join(f"{u.login}  {u.role}  {u.status}  {u.name}" for u in users) or "no users",
    )
