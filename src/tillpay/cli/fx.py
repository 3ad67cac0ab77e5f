"""``tillpay fx``: exchange rates and margins."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from tillpay.cli.common import Ctx, pass_ctx
from tillpay.services import fx as fx_service

# -------------------------------------------------------------------------------------------------- fx


@click.group()
def fx() -> None:
    """Exchange rates."""


@fx.command("set")
@click.argument("base")
@click.argument("quote")
@click.argument("rate")
@click.option(
    "--effective",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="When the rate takes effect (ISO time, UTC if no offset; default: now).",
)
@pass_ctx
def fx_set(c: Ctx, base: str, quote: str, rate: str, effective: datetime | None) -> None:
    """Load a rate: RATE units of QUOTE per one unit of BASE (e.g. fx set USD CNY 7.1023)."""
    from datetime import UTC

    when = effective.replace(tzinfo=effective.tzinfo or UTC) if effective else None
    r = c.run(lambda p: fx_service.set_rate(p, base.upper(), quote.upper(), rate, when))
    c.out(
        {"base": r.base, "quote": r.quote, "rate": str(r.rate), "effective_at": r.effective_at.isoformat()},
        f"1 {r.base} = {r.rate} {r.quote} from {r.effective_at.isoformat()}",
    )


@fx.command("list")
@pass_ctx
def fx_list(c: Ctx) -> None:
    """Show the rates in effect now."""
    rates = c.run(fx_service.current_rates)
    c.out(
        {
            "rates": [
                {
                    "base": r.base,
                    "quote": r.quote,
                    "rate": str(r.rate),
                    "effective_at": r.effective_at.isoformat(),
                }
                for r in rates
            ]
        },
        "\n".join(f"{r.base}/{r.quote}  {r.rate}  since {r.effective_at.isoformat()}" for r in rates)
        or "no rates loaded",
    )


@fx.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def fx_import(c: Ctx, csv_file: str) -> None:
    """Load rates from a CSV file with the header base,quote,rate[,effective_at]; all or nothing."""
    text = Path(csv_file).read_text(encoding="utf-8")
    n = c.run(lambda p: fx_service.import_rates_csv(p, text))
    c.out({"imported": n}, f"imported {n} rates")


@fx.group("margin")
def fx_margin() -> None:
    """The FX margin the customer pays on a conversion, per currency pair."""


@fx_margin.command("set")
@click.argument("base")
@click.argument("quote")
@click.argument("bps", type=int)
@pass_ctx
def fx_margin_set(c: Ctx, base: str, quote: str, bps: int) -> None:
    """Set the margin for BASE/QUOTE (either direction) in basis points: 50 = 0.50%."""
    m = c.run(lambda p: fx_service.set_margin(p, base.upper(), quote.upper(), bps))
    c.out(
        {"base": m.base, "quote": m.quote, "bps": m.bps, "effective_at": m.effective_at.isoformat()},
        f"{m.base}/{m.quote} margin {m.bps} bps",
    )


@fx_margin.command("list")
@pass_ctx
def fx_margin_list(c: Ctx) -> None:
    """Show the margins in force (pairs without one use TILLPAY_FX_DEFAULT_MARGIN_BPS)."""
    ms = c.run(fx_service.current_margins)
    c.out(
        {
            "margins": [{"base": m.base, "quote": m.quote, "bps": m.bps} for m in ms],
            "default_bps": c.settings.fx_default_margin_bps,
        },
        "\n".join(f"{m.base}/{m.quote}  {m.bps} bps" for m in ms)
        + f"\nother pairs: {c.settings.fx_default_margin_bps} bps",
    )
