"""Reconciliation sources and reports: read the merchant's journal and Tillpay's files, write the results.

The journal is a CSV in the documented layout (docs/settlement.md, "The merchant journal") or a SQLite
database (an ECR's local journal) with a table or view named ``tillpay_journal`` in that layout, or any
``SELECT`` that produces it. The files are Tillpay's transaction and settlement files, each checked
against its ``.sha256`` when one lies beside it.

``reconcile_payouts`` matches the scheme's paid payouts against a bank statement (CSV or ISO 20022
camt.053).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tillpay.domain import reconcile as dom
from tillpay.domain.money import InvalidAmount, UnknownCurrency, format_amount, parse_amount
from tillpay.services.platform import Platform
from tillpay.services.settlement import BatchView, batch_view

Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


class SourceError(ValueError):
    """A journal, file or statement cannot be used; the message says why and where."""


# ------------------------------------------------------------------------------------------ journals

SQLITE_MAGIC = b"SQLite format 3\x00"
JOURNAL_VIEW = "tillpay_journal"


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite database (by its header, whatever its name)."""
    with path.open("rb") as fh:
        return fh.read(16) == SQLITE_MAGIC


def read_journal(path: Path, *, query: str | None = None) -> pl.DataFrame:
    """The merchant's records from a CSV or a SQLite journal, normalised; SourceError if unreadable."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        if is_sqlite(path):
            raw = _read_sqlite_journal(path, query)
        else:
            raw = pl.read_csv(path, infer_schema=False, quote_char='"', encoding="utf8")
            raw = raw.rename({c: c.strip().lower() for c in raw.columns})
        return dom.normalise_journal(raw)
    except dom.ReconcileInputError as e:
        raise SourceError(f"{path}: {e}") from None
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not a readable CSV journal ({e.__class__.__name__}: {e})") from None


def _read_sqlite_journal(path: Path, query: str | None) -> pl.DataFrame:
    # Read-only: the ECR may be running, and reconciliation must never change its journal.
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = query or f"SELECT * FROM {JOURNAL_VIEW}"  # noqa: S608 - a fixed name, or the operator's own query
        try:
            cur = con.execute(sql)
        except sqlite3.Error as e:
            raise SourceError(
                f"{path}: cannot read the journal ({e}); give it a table or view named {JOURNAL_VIEW} "
                "with the documented columns, or pass --query"
            ) from None
        names = [d[0].lower() for d in cur.description]
        rows = cur.fetchall()
    finally:
        con.close()
    columns: dict[str, list[str | None]] = {n: [] for n in names}
    for r in rows:
        for n, v in zip(names, r, strict=True):
            columns[n].append(None if v is None else str(v))
    df = pl.DataFrame(columns, schema=dict.fromkeys(names, pl.String))
    return df.with_row_index("line", offset=1)


# -------------------------------------------------------------------------------------------- files


@dataclass
class FileSet:
    """Tillpay files read for a reconciliation."""

    transactions: pl.DataFrame
    settlements: pl.DataFrame | None
    names: list[str] = field(default_factory=list)
    digests_checked: int = 0


def _expand(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(
                x for x in p.rglob("*.txt") if "_transaction_" in x.name or "_settlement_" in x.name
            )
        elif p.is_file():
            out.append(p)
        else:
            raise SourceError(f"{p}: no such file or directory")
    return out


def _check_digest(path: Path) -> bool:
    side = path.with_name(path.name + ".sha256")
    if not side.exists():
        return False
    expected = side.read_text().split()[0].lower() if side.read_text().strip() else ""
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected != actual:
        raise SourceError(
            f"{path}: its content does not match {side.name}; the file was altered or cut short"
        )
    return True


def read_files(paths: Sequence[Path]) -> FileSet:
    """Transaction and settlement files (or directories of them), digests checked."""
    files = _expand(paths)
    tx: list[pl.DataFrame] = []
    st: list[pl.DataFrame] = []
    checked = 0
    for path in files:
        checked += _check_digest(path)
        with path.open("r", encoding="utf-8") as fh:
            first = fh.readline()
        try:
            if first.startswith("Partner:"):
                declared = int(first.rsplit("Total_count:", 1)[1])
                df = pl.read_csv(path, separator="|", skip_rows=1, infer_schema=False, quote_char=None)
                if df.height != declared:
                    raise SourceError(
                        f"{path}: Total_count says {declared}, the file has {df.height} records"
                    )
                tx.append(df)
            elif first.startswith("Partner_transaction_id|") and "Settlement_time" in first:
                st.append(pl.read_csv(path, separator="|", infer_schema=False, quote_char=None))
            else:
                raise SourceError(f"{path}: neither a transaction file nor a settlement file")
        except (pl.exceptions.PolarsError, ValueError, IndexError) as e:
            if isinstance(e, SourceError):
                raise
            raise SourceError(f"{path}: unreadable ({e})") from None
    if not tx:
        raise SourceError(
            "no transaction file given: the transaction files are what the journal is matched with"
        )
    try:
        transactions = dom.normalise_transaction_file(pl.concat(tx, how="vertical"))
        settlements = dom.normalise_settlement_file(pl.concat(st, how="vertical")) if st else None
    except (dom.ReconcileInputError, pl.exceptions.PolarsError) as e:
        raise SourceError(str(e)) from None
    return FileSet(transactions, settlements, [str(f) for f in files], checked)


# ------------------------------------------------------------------------------------------ reports


@dataclass
class Report:
    """A reconciliation's outcome, ready to print or save."""

    title: str
    differences: pl.DataFrame
    summary: dict[str, Any]
    columns: Sequence[str]

    @property
    def clean(self) -> bool:
        """Nothing to report and every total closes."""
        return self.differences.height == 0 and all(
            x.get("closes", True) for x in self.summary.get("totals", [])
        )

    def write_csv(self, path: Path) -> None:
        """The differences, one per line, with a header."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.differences.select(list(self.columns)).write_csv(path)

    def write_html(self, path: Path, limit: int = 2000) -> None:
        """A self-contained HTML page: the summary, the totals and the first ``limit`` differences."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(self, limit), encoding="utf-8")


def _money(v: int | None, cur: str) -> str:
    if v is None:
        return ""
    try:
        return format_amount(v, cur)
    except (ValueError, TypeError):
        return str(v)


def summary_text(r: Report) -> str:
    """The terminal summary."""
    s = r.summary
    lines = [r.title]
    for k, v in s.get("inputs", {}).items():
        lines.append(f"  {k:<22} {v}")
    lines.append("")
    for tot in s.get("totals", []):
        cur = tot["currency"]
        lines.append(
            f"  {cur}: merchant {tot['merchant_records']} records net {_money(tot['merchant_net'], cur)}, "
            f"files {tot['file_records']} records net {_money(tot['files_net'], cur)}, "
            f"gap {_money(tot['gap'], cur)} — {'closes' if tot['closes'] else 'DOES NOT CLOSE'}"
        )
    for st in s.get("settlement", []):
        cur = st["currency"]
        parts = [
            f"{k} {v['count']} x {_money(v['amount'], cur)}"
            for k, v in st.items()
            if isinstance(v, dict) and "count" in v
        ]
        lines.append(
            f"  {cur} settled: {', '.join(parts)}; fee {_money(st['fee'], cur)}; net {_money(st['net'], cur)}"
        )
    lines.append("")
    diffs = {k: v for k, v in s.get("differences", {}).items() if v}
    if diffs:
        lines.append(
            f"  {r.differences.height} difference(s): " + ", ".join(f"{k} {v}" for k, v in diffs.items())
        )
        for row in r.differences.head(10).iter_rows(named=True):
            lines.append("    " + " ".join(f"{row[c]}" for c in r.columns[:4] if row.get(c) is not None))
        if r.differences.height > 10:
            lines.append("    ... (the CSV and HTML reports list them all)")
    else:
        lines.append("  no differences")
    return "\n".join(lines)


def render_html(r: Report, limit: int = 2000) -> str:
    """The HTML report."""
    e = html.escape
    s = r.summary
    out = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>{e(r.title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}.bad{color:#b00}.ok{color:#070}"
        "</style>",
        f"<h1>{e(r.title)}</h1>",
        f"<p class={'ok' if r.clean else 'bad'}><strong>"
        + ("No differences; every total closes." if r.clean else f"{r.differences.height} difference(s).")
        + "</strong></p>",
    ]
    if s.get("inputs"):
        out.append("<h2>Inputs</h2><table>")
        out += [f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in s["inputs"].items()]
        out.append("</table>")
    if s.get("totals"):
        out.append(
            "<h2>Totals</h2><table><tr><th>currency</th><th>merchant records</th><th>merchant net</th>"
            "<th>file records</th><th>files net</th><th>gap</th><th>explained by differences</th><th>closes</th></tr>"
        )
        for tot in s["totals"]:
            c = tot["currency"]
            out.append(
                f"<tr><td>{e(c)}</td><td>{tot['merchant_records']}</td><td>{_money(tot['merchant_net'], c)}</td>"
                f"<td>{tot['file_records']}</td><td>{_money(tot['files_net'], c)}</td><td>{_money(tot['gap'], c)}</td>"
                f"<td>{_money(tot['explained_by_differences'], c)}</td>"
                f"<td class={'ok' if tot['closes'] else 'bad'}>{'yes' if tot['closes'] else 'NO'}</td></tr>"
            )
        out.append("</table>")
    if s.get("settlement"):
        out.append(
            "<h2>Settled (from the files)</h2><table><tr><th>currency</th><th>records</th><th>fee</th><th>net</th></tr>"
        )
        for st in s["settlement"]:
            c = st["currency"]
            parts = ", ".join(
                f"{k}: {v['count']} × {_money(v['amount'], c)}" for k, v in st.items() if isinstance(v, dict)
            )
            out.append(
                f"<tr><td>{e(c)}</td><td>{e(parts)}</td><td>{_money(st['fee'], c)}</td><td>{_money(st['net'], c)}</td></tr>"
            )
        out.append("</table>")
    out.append("<h2>Differences</h2>")
    counts = {k: v for k, v in s.get("differences", {}).items() if v}
    if counts:
        out.append("<p>" + ", ".join(f"{e(k)}: {v}" for k, v in counts.items()) + "</p>")
        out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in r.columns) + "</tr>")
        for row in r.differences.head(limit).iter_rows(named=True):
            out.append(
                "<tr>"
                + "".join(f"<td>{e('' if row[c] is None else str(row[c]))}</td>" for c in r.columns)
                + "</tr>"
            )
        out.append("</table>")
        if r.differences.height > limit:
            out.append(f"<p>… and {r.differences.height - limit} more in the CSV report.</p>")
    else:
        out.append("<p>None.</p>")
    out.append("</html>\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- merchant


def reconcile_merchant(
    journal: Path,
    files: Sequence[Path],
    *,
    query: str | None = None,
    mdr_bps: int | None = None,
    progress: Progress | None = None,
) -> Report:
    """Reconcile a merchant's journal against Tillpay's files; SourceError if an input is unusable."""
    prog = progress or _no_progress
    prog("reconcile", 0, 4)
    j = read_journal(journal, query=query)
    prog("reconcile", 1, 4)
    fs = read_files(files)
    prog("reconcile", 2, 4)
    result = dom.reconcile(j, fs.transactions, fs.settlements, mdr_bps=mdr_bps)
    prog("reconcile", 3, 4)
    result.summary["inputs"] = {
        "journal": str(journal),
        "journal records": j.height,
        "files": len(fs.names),
        "file records": fs.transactions.height,
        "digests verified": fs.digests_checked,
    }
    prog("reconcile", 4, 4)
    return Report("Tillpay reconciliation", result.differences, result.summary, dom.DIFF_COLUMNS)


# ----------------------------------------------------------------------------------------- payouts

PAYOUT_DIFF_COLUMNS = (
    "kind",
    "reference",
    "partner_id",
    "tillpay_amount",
    "tillpay_currency",
    "tillpay_date",
    "statement_amount",
    "statement_currency",
    "statement_date",
    "detail",
)


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """A debit on the scheme's bank account."""

    reference: str
    amount: int
    currency: str
    booked: date
    line: int


def _amount(text: str, currency: str, where: str) -> int:
    try:
        return parse_amount(text.strip(), currency)
    except (InvalidAmount, UnknownCurrency) as e:
        raise SourceError(f"{where}: {e}") from None


def _date(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise SourceError(f"{where}: not a date: {text!r}") from None


def read_statement(path: Path) -> tuple[list[StatementEntry], date | None, date | None]:
    """Debits of a bank statement (CSV or camt.053), with the period it covers if it says so."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    data = path.read_bytes()
    if data.lstrip().startswith(b"<"):
        return _read_camt053(path, data)
    return _read_statement_csv(path, data)


def _read_statement_csv(path: Path, data: bytes) -> tuple[list[StatementEntry], date | None, date | None]:
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    except UnicodeDecodeError:
        raise SourceError(f"{path}: not UTF-8 text") from None
    need = {"date", "amount", "currency", "reference"}
    cols = {c.strip().lower() for c in reader.fieldnames or []}
    if not need <= cols:
        raise SourceError(f"{path}: a statement CSV has the columns date, amount, currency, reference")
    out = []
    for i, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        where = f"{path}:{i}"
        direction = row.get("direction", "DBIT").upper() or "DBIT"
        if direction not in ("DBIT", "CRDT"):
            raise SourceError(f"{where}: direction is DBIT or CRDT")
        if direction == "CRDT":
            continue
        cur = row["currency"].upper()
        amount_text = row["amount"].lstrip("-")  # a debit may be written negative
        out.append(
            StatementEntry(
                row["reference"], _amount(amount_text, cur, where), cur, _date(row["date"], where), i
            )
        )
    return out, None, None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(el: ET.Element, *path: str) -> ET.Element | None:
    cur: ET.Element | None = el
    for name in path:
        if cur is None:
            return None
        cur = next((c for c in cur if _local(c.tag) == name), None)
    return cur


def _first(*els: ET.Element | None) -> ET.Element | None:
    # Never ``a or b`` on elements: an element without children is falsy.
    return next((el for el in els if el is not None), None)


def _read_camt053(path: Path, data: bytes) -> tuple[list[StatementEntry], date | None, date | None]:
    try:
        root = ET.fromstring(data)  # noqa: S314 - the operator's own statement file
    except ET.ParseError as e:
        raise SourceError(f"{path}: not well-formed XML ({e})") from None
    stmts = [el for el in root.iter() if _local(el.tag) == "Stmt"]
    if not stmts:
        raise SourceError(f"{path}: no camt.053 statement (Stmt) in it")
    out: list[StatementEntry] = []
    start: date | None = None
    end: date | None = None
    n = 0
    for stmt in stmts:
        period = _find(stmt, "FrToDt")
        if period is not None:
            fr, to = _find(period, "FrDtTm"), _find(period, "ToDtTm")
            if fr is not None and fr.text and to is not None and to.text:
                f, t_ = _date(fr.text, str(path)), _date(to.text, str(path))
                start = min(start, f) if start else f
                end = max(end, t_) if end else t_
        for ntry in (c for c in stmt if _local(c.tag) == "Ntry"):
            n += 1
            where = f"{path}: entry {n}"
            ind = _find(ntry, "CdtDbtInd")
            if ind is None or ind.text != "DBIT":
                continue
            booked_el = _first(
                _find(ntry, "BookgDt", "Dt"), _find(ntry, "BookgDt", "DtTm"), _find(ntry, "ValDt", "Dt")
            )
            if booked_el is None or not booked_el.text:
                raise SourceError(f"{where}: no booking date")
            booked = _date(booked_el.text, where)
            details = [el for el in ntry.iter() if _local(el.tag) == "TxDtls"] or [ntry]
            for tx in details:
                amt = _first(_find(tx, "Amt"), _find(tx, "AmtDtls", "InstdAmt", "Amt"), _find(ntry, "Amt"))
                if amt is None or not amt.text or not amt.get("Ccy"):
                    raise SourceError(f"{where}: no amount with a currency")
                ref = _find(tx, "Refs", "EndToEndId")
                cur = str(amt.get("Ccy")).upper()
                out.append(
                    StatementEntry(
                        ref.text.strip() if ref is not None and ref.text else "",
                        _amount(amt.text, cur, where),
                        cur,
                        booked,
                        n,
                    )
                )
    return out, start, end


async def paid_payouts(p: Platform) -> list[BatchView]:
    """Every payout Tillpay has paid."""
    async with p.reader() as r:
        rows = await r.settlement.with_payout("paid")
    return [batch_view(x) for x in rows]


def _value_date(b: BatchView) -> date:
    run = b.payout_run_date or b.payout_date
    return max(run, b.payout_date)


def match_payouts(
    payouts: Sequence[BatchView], entries: Sequence[StatementEntry], start: date | None, end: date | None
) -> Report:
    """Payouts against statement debits, by end-to-end reference; every difference, once."""
    if entries and (start is None or end is None):
        start = start or min(e.booked for e in entries)
        end = end or max(e.booked for e in entries)
    by_ref: dict[str, list[StatementEntry]] = {}
    for e in entries:
        by_ref.setdefault(e.reference, []).append(e)
    known = {b.end_to_end_id: b for b in payouts}
    rows: list[dict[str, Any]] = []

    def add(kind: str, ref: str, b: BatchView | None, e: StatementEntry | None, detail: str) -> None:
        rows.append(
            {
                "kind": kind,
                "reference": ref,
                "partner_id": b.partner_id if b else None,
                "tillpay_amount": format_amount(b.payout_amount, b.currency) if b else None,
                "tillpay_currency": b.currency if b else None,
                "tillpay_date": _value_date(b).isoformat() if b else None,
                "statement_amount": format_amount(e.amount, e.currency) if e else None,
                "statement_currency": e.currency if e else None,
                "statement_date": e.booked.isoformat() if e else None,
                "detail": detail,
            }
        )

    matched = 0
    for ref, b in sorted(known.items()):
        got = by_ref.get(ref, [])
        if not got:
            if start is not None and end is not None and start <= _value_date(b) <= end:
                add("missing_in_statement", ref, b, None, "paid by Tillpay; no such debit on the statement")
            continue
        e = got[0]
        for extra in got[1:]:
            add("duplicate", ref, b, extra, "the statement debits this payout more than once")
        if e.currency != b.currency:
            add("currency_mismatch", ref, b, e, "the statement's currency differs")
        elif e.amount != b.payout_amount:
            add("amount_mismatch", ref, b, e, "the statement's amount differs")
        else:
            matched += 1
        if e.booked != _value_date(b):
            add("date_mismatch", ref, b, e, "booked on another day than the payout's value date")
    for ref, got in sorted(by_ref.items()):
        if ref not in known:
            for e in got:
                add("unknown_in_statement", ref, None, e, "a debit that is no Tillpay payout")
    diffs = pl.DataFrame(rows, schema=dict.fromkeys(PAYOUT_DIFF_COLUMNS, pl.String))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    summary = {
        "inputs": {
            "payouts paid": len(payouts),
            "statement debits": len(entries),
            "statement period": f"{start} .. {end}" if start else "empty",
            "matched": matched,
        },
        "differences": counts,
    }
    return Report("Tillpay payout reconciliation", diffs, summary, PAYOUT_DIFF_COLUMNS)


async def reconcile_payouts(p: Platform, statement: Path) -> Report:
    """Reconcile paid payouts against a bank statement (CSV or camt.053)."""
    entries, start, end = read_statement(statement)
    report = match_payouts(await paid_payouts(p), entries, start, end)
    report.summary["inputs"]["statement"] = str(statement)
    return report


def now_stamp(when: datetime) -> str:
    """A compact timestamp for report file names."""
    return when.strftime("%Y%m%dT%H%M%SZ")
