"""``tillpay settle``, ``tillpay reconcile`` and ``tillpay simulate`` (registered in cli/__init__.py)."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import click

from tillpay.cli.common import Ctx
from tillpay.domain.money import format_amount
from tillpay.services import reconcile as reconcile_service
from tillpay.services import settlement as settlement_service
from tillpay.services import simulate as simulate_service
from tillpay.services.platform import Platform

#: main() puts the Ctx in ctx.obj.
pass_ctx = click.pass_obj


class Bars:
    """Progress bars on stderr, one per stage, fed by the services' ``progress(stage, done, total)``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: Any = None
        self.done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = click.progressbar(length=total, label=stage.ljust(24), file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
            self.stage = None


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"a date is YYYY-MM-DD, not {text!r}") from None


def _m(amount: int, currency: str) -> str:
    return format_amount(amount, currency)


def _batch_line(b: settlement_service.BatchView) -> str:
    c = b.currency
    return (
        f"{b.settle_date}  {b.partner_id}  {c}  pay {b.payment_count} x {_m(b.payments_amount, c)}  "
        f"ref {b.refund_count} x {_m(b.refunds_amount, c)}  rev {b.reversal_count} x {_m(b.reversals_amount, c)}  "
        f"fee {_m(b.fee, c)}  net {_m(b.net, c)}  payout {_m(b.payout_amount, c)} on {b.payout_date} "
        f"[{b.payout_status}]"
    )


# ---------------------------------------------------------------------------------------------- settle


@click.group()
def settle() -> None:
    """Settlement: close business days, pay merchants out, write the files."""


@settle.command("run")
@click.option("--date", "day", help="Business day YYYY-MM-DD (default: the last closed day).")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False), help="Where files go (default: settings)."
)
@pass_ctx
def settle_run(c: Ctx, day: str | None, directory: str | None) -> None:
    """Settle a business day, pay out what is due (T+N) and write the day's files."""
    bars = Bars(not c.as_json)
    started = time.monotonic()
    r = c.run(lambda p: settlement_service.run_day(p, _day(day), directory=directory, progress=bars))
    bars.close()
    data = {
        "settle_date": r.settle_date.isoformat(),
        "cutoff_at": r.cutoff_at.isoformat(),
        "rerun": r.rerun,
        "batches": [b.to_json() for b in r.batches],
        "payouts": [b.to_json() for b in r.payouts],
        "held": [b.to_json() for b in r.held],
        "files": [f.to_json() for f in r.files],
        "seconds": round(time.monotonic() - started, 2),
    }
    lines = [
        f"business day {r.settle_date} (closed {r.cutoff_at.isoformat()})"
        + (": already closed; files rewritten, identical" if r.rerun else ""),
        *(_batch_line(b) for b in r.batches),
    ]
    if not r.batches:
        lines.append("no transactions to settle")
    for b in r.payouts:
        lines.append(f"paid {b.end_to_end_id}  {_m(b.payout_amount, b.currency)} {b.currency}")
    for b in r.held:
        lines.append(f"held {b.end_to_end_id}: {b.partner_id} has no bank account (tillpay settle account)")
    lines.append(f"{len(r.files)} file(s) in {settlement_service.settlement_dir_for(c.settings, directory)}")
    c.out(data, "\n".join(lines))


@settle.command("list")
@click.option("--date", "day", help="Only this business day.")
@click.option("--partner", help="Only this merchant.")
@pass_ctx
def settle_list(c: Ctx, day: str | None, partner: str | None) -> None:
    """List settlement batches, newest first."""
    batches = c.run(lambda p: settlement_service.list_batches(p, day=_day(day), partner_id=partner))
    c.out({"batches": [b.to_json() for b in batches]}, "\n".join(map(_batch_line, batches)) or "no batches")


@settle.command("files")
@click.option("--date", "day", help="Only this business day.")
@click.option("--partner", help="Only this merchant's files.")
@click.option("--verify", is_flag=True, help="Check the files on disk against the digests recorded at close.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Settlement directory.")
@pass_ctx
def settle_files(c: Ctx, day: str | None, partner: str | None, verify: bool, directory: str | None) -> None:
    """List the files of closed days (and check them with --verify)."""
    d = _day(day)

    async def go(p: Platform) -> tuple[list[settlement_service.FileView], list[str]]:
        files = await settlement_service.list_files(p, day=d, partner_id=partner)
        problems: list[str] = []
        if verify:
            for one in sorted({f.settle_date for f in files}):
                problems += [
                    x
                    for x in await settlement_service.verify_files(p, one, directory)
                    if not partner or partner in x
                ]
        return files, problems

    files, problems = c.run(go)
    root = settlement_service.settlement_dir_for(c.settings, directory)
    text = "\n".join(f"{f.sha256}  {f.size:>10}  {root / f.name}" for f in files) or "no files"
    if verify:
        text += "\n" + (
            "\n".join(f"FAIL {x}" for x in problems) or f"ok: {len(files)} file(s) match their digests"
        )
    c.out({"files": [f.to_json() for f in files], "problems": problems}, text)
    if problems:
        sys.exit(1)


@settle.command("fee")
@click.argument("partner_id")
@click.argument("bps", required=False, type=int)
@click.option("--default", "use_default", is_flag=True, help="Go back to the scheme's default rate.")
@pass_ctx
def settle_fee(c: Ctx, partner_id: str, bps: int | None, use_default: bool) -> None:
    """Set a merchant's discount rate in basis points (250 = 2.50 %)."""
    if bps is None and not use_default:
        raise click.UsageError("give BPS or --default")
    rate = c.run(lambda p: settlement_service.set_fee(p, partner_id, None if use_default else bps))
    c.out({"partner_id": partner_id, "mdr_bps": rate}, f"{partner_id} pays {rate} bp ({rate / 100:.2f} %)")


@settle.command("account")
@click.argument("partner_id")
@click.option("--iban", required=True)
@click.option("--bic")
@click.option("--name", help="Account holder (default: the merchant's name).")
@pass_ctx
def settle_account(c: Ctx, partner_id: str, iban: str, bic: str | None, name: str | None) -> None:
    """Set the bank account a merchant's payouts go to."""
    clean = c.run(lambda p: settlement_service.set_account(p, partner_id, iban=iban, bic=bic, name=name))
    c.out({"partner_id": partner_id, "iban": clean}, f"{partner_id} is paid out to {clean}")


@settle.command("download")
@click.option("--url", "base_url", required=True, help="Tillpay's base URL, e.g. http://127.0.0.1:8000.")
@click.option("--partner", required=True)
@click.option("--md5-key", help="The merchant's MD5 key (or --private-key).")
@click.option(
    "--private-key", "private_key", type=click.Path(exists=True, dir_okay=False), help="RSA key (PEM)."
)
@click.option("--date", "day", help="Only this business day.")
@click.option("--dir", "directory", default="downloads", show_default=True, type=click.Path(file_okay=False))
@pass_ctx
def settle_download(
    c: Ctx,
    base_url: str,
    partner: str,
    md5_key: str | None,
    private_key: str | None,
    day: str | None,
    directory: str,
) -> None:
    """As a merchant: fetch your settlement and transaction files through the signed API."""
    from tillpay.client.settlement_files import FileApiError, FileClient

    if not md5_key and not private_key:
        raise click.UsageError("give --md5-key or --private-key")
    client = FileClient(
        base_url,
        partner=partner,
        md5_key=md5_key,
        private_key_pem=Path(private_key).read_text() if private_key else None,
    )
    try:
        files = client.list(_day(day))
        paths = [client.download(f, Path(directory)) for f in files]
    except FileApiError as e:
        c.fail("DOWNLOAD_FAILED", str(e))
    finally:
        client.close()
    c.out({"files": [str(x) for x in paths]}, "\n".join(str(x) for x in paths) or "no files")


# ------------------------------------------------------------------------------------------ reconcile


@click.group(invoke_without_command=True)
@click.option("--journal", type=click.Path(dir_okay=False), help="The merchant's journal: CSV or SQLite.")
@click.option("--query", help="For a SQLite journal: a SELECT giving the journal columns.")
@click.option(
    "--files",
    "files",
    multiple=True,
    type=click.Path(),
    help="Transaction/settlement files or directories (repeatable).",
)
@click.option("--mdr-bps", type=int, help="The contract fee rate, to check every fee against it.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Write the differences here.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write an HTML report here.")
@click.pass_context
def reconcile(
    ctx: click.Context,
    journal: str | None,
    query: str | None,
    files: tuple[str, ...],
    mdr_bps: int | None,
    csv_out: str | None,
    html_out: str | None,
) -> None:
    """Compare a merchant's records with Tillpay's files; exit 1 if anything differs.

    \b
    tillpay reconcile --journal journal.csv --files downloads/ --html report.html --csv diffs.csv
    tillpay reconcile payouts --statement statement.xml
    """
    if ctx.invoked_subcommand is not None:
        return
    c: Ctx = ctx.obj
    if not journal or not files:
        raise click.UsageError("give --journal and --files (or use: tillpay reconcile payouts)")
    bars = Bars(not c.as_json)
    started = time.monotonic()
    try:
        report = reconcile_service.reconcile_merchant(
            Path(journal), [Path(f) for f in files], query=query, mdr_bps=mdr_bps, progress=bars
        )
    except reconcile_service.SourceError as e:
        bars.close()
        c.fail("BAD_INPUT", str(e), exit_code=2)
    bars.close()
    _finish(c, report, csv_out, html_out, time.monotonic() - started)


@reconcile.command("payouts")
@click.option(
    "--statement", required=True, type=click.Path(dir_okay=False), help="Bank statement: CSV or camt.053."
)
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False))
@click.option("--html", "html_out", type=click.Path(dir_okay=False))
@pass_ctx
def reconcile_payouts(c: Ctx, statement: str, csv_out: str | None, html_out: str | None) -> None:
    """Match the payouts Tillpay made against the scheme's bank statement."""
    started = time.monotonic()

    async def go(p: Platform) -> reconcile_service.Report:
        try:
            return await reconcile_service.reconcile_payouts(p, Path(statement))
        except reconcile_service.SourceError as e:
            c.fail("BAD_INPUT", str(e), exit_code=2)

    _finish(c, c.run(go), csv_out, html_out, time.monotonic() - started)


def _finish(
    c: Ctx, report: reconcile_service.Report, csv_out: str | None, html_out: str | None, secs: float
) -> None:  # float-ok: seconds
    if csv_out:
        report.write_csv(Path(csv_out))
    if html_out:
        report.write_html(Path(html_out))
    data = {
        "clean": report.clean,
        "summary": report.summary,
        "differences": report.differences.select(list(report.columns)).head(1000).to_dicts(),
        "seconds": round(secs, 2),
    }
    text = reconcile_service.summary_text(report)
    if csv_out or html_out:
        text += "\n  reports: " + ", ".join(x for x in (csv_out, html_out) if x)
    if c.as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text)
    sys.exit(0 if report.clean else 1)


# ------------------------------------------------------------------------------------------- simulate


@click.command()
@click.option("--date", "day", help="The business day to simulate (default: the last closed day).")
@click.option("-n", "--transactions", default=1000, show_default=True, type=int, help="Orders in the day.")
@click.option(
    "--merchants", default=3, show_default=True, type=int, help="Simulated merchants (created once)."
)
@click.option(
    "--partner", "partners", multiple=True, help="Also sell through this existing merchant (repeatable)."
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--bulk", is_flag=True, help="Write in large batches (for a million orders; see docs/settlement.md)."
)
@click.option(
    "--journal-dir",
    default="journals",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the merchants' own journals (CSV) are written.",
)
@pass_ctx
def simulate(
    c: Ctx,
    day: str | None,
    transactions: int,
    merchants: int,
    partners: tuple[str, ...],
    seed: int,
    bulk: bool,
    journal_dir: str,
) -> None:
    """Generate a realistic business day of transactions through the payment services."""
    bars = Bars(not c.as_json)
    started = time.monotonic()

    async def go(p: Platform) -> simulate_service.SimResult:
        d = _day(day) or settlement_service.last_closed_day(p)
        return await simulate_service.simulate(
            p,
            d,
            transactions,
            n_merchants=merchants,
            partners=list(partners),
            seed=seed,
            bulk=bulk,
            journal_dir=Path(journal_dir),
            progress=bars,
        )

    r = c.run(go)
    bars.close()
    data = r.to_json() | {"seconds": round(time.monotonic() - started, 2)}
    lines = [
        f"simulated {r.day}: {r.payments} payments, {r.failed} failed, {r.refunds} refunds, {r.cancels} cancellations "
        f"in {data['seconds']} s",
        *(
            f"  merchant {m.partner_id} {m.settlement_currency}  MD5 key {m.md5_key}  {m.name}"
            for m in r.merchants
        ),
        f"  journals: {', '.join(str(j) for j in r.journals)}",
        f"next: tillpay settle run --date {r.day}",
    ]
    c.out(data, "\n".join(lines))
