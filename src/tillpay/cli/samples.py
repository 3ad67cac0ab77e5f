"""``tillpay merchant notify-samples``: one sample notification of each kind, to a merchant's notify URL."""

from __future__ import annotations

import click

from tillpay.cli.common import Ctx, pass_ctx
from tillpay.services import samples
from tillpay.services.platform import Platform


@click.command("notify-samples")
@click.argument("partner_id")
@click.option(
    "--dialect",
    "dialects",
    type=click.Choice(samples.DIALECTS),
    multiple=True,
    help="Only this dialect's kinds (repeat for several; default: all three).",
)
@pass_ctx
def notify_samples(c: Ctx, partner_id: str, dialects: tuple[str, ...]) -> None:
    """Queue one notification of each kind the merchant's dialects send, to its notify URL.

    Signed with the merchant's keys like real ones; ids start with SAMPLE and name no real payment.
    Only for a test merchant (its test credentials) or on a sandbox server; rate-limited per merchant.
    The worker (or `tillpay serve`'s embedded one) delivers them; see them in the console's log.
    """

    async def go(p: Platform) -> list[samples.Queued]:
        m = await p.merchant_by_partner(partner_id, fresh=True)
        return await samples.send_samples(p, m, dialects or samples.DIALECTS)

    queued = c.run(go)
    c.out(
        {
            "partner_id": partner_id,
            "samples": [
                {
                    "notify_id": q.notify_id,
                    "dialect": q.dialect,
                    "kind": q.kind,
                    "title": q.title,
                    "url": q.url,
                }
                for q in queued
            ],
        },
        "\n".join(f"{q.notify_id}  {q.dialect:7}  {q.kind:8}  {q.title}" for q in queued)
        + f"\nqueued {len(queued)} samples to {queued[0].url}",
    )
