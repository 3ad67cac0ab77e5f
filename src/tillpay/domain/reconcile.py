"""Reconciliation: the merchant's own records against Tillpay's transaction and settlement files.

Pure and columnar (polars): frames in, frames and figures out; reading and writing files is the
service's job. A million records reconcile in a few seconds, most of it parsing.

Matching key: the record type and the merchant's id, ``(PAYMENT, partner_transaction_id)``,
``(REFUND, partner_refund_id)``, ``(REVERSAL, partner_transaction_id)`` (a cancellation of a paid order
has no refund id of its own). Kinds of difference:

- ``missing_in_files``: the merchant has a SUCCESS record the files do not;
- ``missing_in_merchant``: the files have a record the merchant does not;
- ``status_mismatch``: the merchant recorded FAILED, the files show the money moved;
- ``amount_mismatch`` / ``currency_mismatch``: matched, but the amount or its currency differ (the
  merchant's amount is compared in its own currency: the order's, else the settlement currency);
- ``fee_mismatch``: the merchant's recorded fee (or, with a contract rate, the expected fee) differs
  from the files' fee;
- ``duplicate``: the same key twice in one side's records;
- ``file_inconsistency``: the transaction and settlement files disagree (never expected).

The totals close when, per currency, merchant net - files net equals the sum of the differences'
contributions: every gap between the two sides is accounted for by a listed difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tillpay.domain.money import CURRENCY_EXPONENTS

TYPES = ("PAYMENT", "REFUND", "REVERSAL")
STATUSES = ("SUCCESS", "FAILED")
#: The journal columns ``tillpay reconcile`` reads (docs/settlement.md, "The merchant journal").
JOURNAL_COLUMNS = (
    "record_type",
    "partner_transaction_id",
    "partner_refund_id",
    "transaction_id",
    "amount",
    "currency",
    "status",
    "time",
    "fee",
)
REQUIRED_JOURNAL_COLUMNS = ("record_type", "partner_transaction_id", "amount", "currency", "status")
DIFF_KINDS = (
    "missing_in_files",
    "missing_in_merchant",
    "status_mismatch",
    "amount_mismatch",
    "currency_mismatch",
    "fee_mismatch",
    "duplicate",
    "file_inconsistency",
)
DIFF_COLUMNS = (
    "kind",
    "record_type",
    "key",
    "transaction_id",
    "merchant_amount",
    "merchant_currency",
    "files_amount",
    "files_currency",
    "merchant_status",
    "merchant_fee",
    "files_fee",
    "fee_currency",
    "merchant_line",
    "detail",
)


class ReconcileInputError(ValueError):
    """The records cannot be read: the first bad lines are named."""


# ------------------------------------------------------------------------------------------ amounts


def _exp(currency: pl.Expr) -> pl.Expr:
    return currency.replace_strict(dict(CURRENCY_EXPONENTS), default=None, return_dtype=pl.Int64)


def minor(amount: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """Decimal text in major units → Int64 minor units; null where the text or the currency is bad."""
    exp = _exp(currency)
    text = amount.str.strip_chars()
    whole = text.str.extract(r"^([0-9]{1,15})(?:\.[0-9]+)?$", 1).cast(pl.Int64)
    frac = text.str.extract(r"^[0-9]+\.([0-9]+)$", 1)
    flen = frac.str.len_chars().cast(pl.Int64).fill_null(0)
    fval = frac.cast(pl.Int64, strict=False).fill_null(0)
    value = whole * pl.lit(10, dtype=pl.Int64).pow(exp) + fval * pl.lit(10, dtype=pl.Int64).pow(exp - flen)
    return pl.when(flen <= exp).then(value).otherwise(None)


def major(minor_units: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """Int64 minor units → canonical decimal text (``39.25``, ``100`` for JPY)."""
    exp = _exp(currency)
    scale = pl.lit(10, dtype=pl.Int64).pow(exp)
    whole = (minor_units.abs() // scale).cast(pl.String)
    frac = (minor_units.abs() % scale).cast(pl.String).str.zfill(exp.fill_null(0).cast(pl.Int64))
    sign = pl.when(minor_units < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(exp == 0).then(sign + whole).otherwise(sign + whole + pl.lit(".") + frac)


# -------------------------------------------------------------------------------------------- inputs


def normalise_journal(raw: pl.DataFrame) -> pl.DataFrame:
    """The merchant's records (all text, any column order) → typed records; ReconcileInputError if bad.

    Adds ``line`` (the record's line number in a CSV with a header: first record = line 2) unless given.
    """
    missing = [c for c in REQUIRED_JOURNAL_COLUMNS if c not in raw.columns]
    if missing:
        raise ReconcileInputError(f"the journal lacks the column(s) {', '.join(missing)}")
    df = raw
    for c in JOURNAL_COLUMNS:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    if "line" not in df.columns:
        df = df.with_row_index("line", offset=2)
    df = df.select(
        pl.col("line").cast(pl.Int64),
        pl.col("record_type").str.strip_chars().str.to_uppercase().alias("type"),
        pl.col("partner_transaction_id").str.strip_chars().alias("ptid"),
        pl.col("partner_refund_id").str.strip_chars().alias("prid"),
        pl.col("transaction_id").str.strip_chars().alias("transaction_id"),
        pl.col("amount").cast(pl.String).alias("amount_text"),
        pl.col("currency").str.strip_chars().str.to_uppercase().alias("currency"),
        pl.col("status").str.strip_chars().str.to_uppercase().alias("status"),
        pl.col("time").cast(pl.String).alias("time"),
        pl.col("fee").cast(pl.String).str.strip_chars().alias("fee_text"),
    ).with_columns(
        minor(pl.col("amount_text"), pl.col("currency")).alias("amount"),
        pl.when(pl.col("type") == "REFUND").then(pl.col("prid")).otherwise(pl.col("ptid")).alias("key"),
    )
    problems = df.select(
        pl.col("line"),
        pl.when(~pl.col("type").is_in(TYPES))
        .then(pl.lit("record_type is PAYMENT, REFUND or REVERSAL"))
        .when(pl.col("ptid").is_null() | (pl.col("ptid") == ""))
        .then(pl.lit("partner_transaction_id is missing"))
        .when(pl.col("key").is_null() | (pl.col("key") == ""))
        .then(pl.lit("a REFUND needs its partner_refund_id"))
        .when(_exp(pl.col("currency")).is_null())
        .then(pl.lit("unknown currency"))
        .when(pl.col("amount").is_null())
        .then(pl.lit("amount is not a plain decimal amount for its currency"))
        .when(~pl.col("status").is_in(STATUSES))
        .then(pl.lit("status is SUCCESS or FAILED"))
        .otherwise(None)
        .alias("problem"),
    ).filter(pl.col("problem").is_not_null())
    if problems.height:
        shown = "; ".join(
            f"line {r['line']}: {r['problem']}" for r in problems.head(10).iter_rows(named=True)
        )
        raise ReconcileInputError(f"{problems.height} bad record(s) in the journal: {shown}")
    return df.drop("amount_text")


def normalise_transaction_file(raw: pl.DataFrame) -> pl.DataFrame:
    """Rows of Tillpay transaction files (Alipay layout) → typed records."""
    df = raw.select(
        pl.col("Transaction_type").alias("type"),
        pl.col("Partner_transaction_id").alias("key"),
        pl.col("Transaction_id").alias("transaction_id"),
        pl.col("Trans_currency").alias("trans_currency"),
        minor(pl.col("Trans_amount"), pl.col("Trans_currency")).alias("trans_amount"),
        pl.col("Currency").alias("settle_currency"),
        minor(pl.col("Transaction_amount"), pl.col("Currency")).alias("settle_amount"),
        minor(pl.col("Charge_amount"), pl.col("Currency")).alias("fee"),
        pl.col("Payment_time").alias("time"),
    )
    bad = df.filter(
        ~pl.col("type").is_in(TYPES)
        | pl.col("trans_amount").is_null()
        | pl.col("settle_amount").is_null()
        | pl.col("fee").is_null()
    )
    if bad.height:
        raise ReconcileInputError(f"{bad.height} unreadable row(s) in the transaction file(s)")
    return df


def normalise_settlement_file(raw: pl.DataFrame) -> pl.DataFrame:
    """Rows of Tillpay settlement files → typed records keyed like the transaction file."""
    return raw.select(
        pl.when(pl.col("Type") == "P")
        .then(pl.lit("PAYMENT"))
        .when(pl.col("Remarks") == "Cancel")
        .then(pl.lit("REVERSAL"))
        .otherwise(pl.lit("REFUND"))
        .alias("type"),
        pl.col("Partner_transaction_id").alias("key"),
        pl.col("Currency").alias("s_currency"),
        minor(pl.col("Amount"), pl.col("Currency")).alias("s_amount"),
        minor(pl.col("Fee"), pl.col("Currency")).alias("s_fee"),
        minor(pl.col("Settlement"), pl.col("Currency")).alias("s_settlement"),
    )


# ---------------------------------------------------------------------------------------- reconcile


@dataclass
class Result:
    """Differences (a frame with DIFF_COLUMNS) and the summary figures."""

    differences: pl.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No differences and every currency's totals close."""
        return self.differences.height == 0 and all(t["closes"] for t in self.summary["totals"])


_DIFF_SCHEMA = {
    "kind": pl.String,
    "record_type": pl.String,
    "key": pl.String,
    "transaction_id": pl.String,
    "m_amount": pl.Int64,
    "merchant_currency": pl.String,
    "f_amount": pl.Int64,
    "files_currency": pl.String,
    "merchant_status": pl.String,
    "m_fee": pl.Int64,
    "f_fee": pl.Int64,
    "fee_currency": pl.String,
    "merchant_line": pl.Int64,
    "detail": pl.String,
    "m_contrib": pl.Int64,
    "f_contrib": pl.Int64,
}
_SIGN = pl.when(pl.col("type") == "PAYMENT").then(1).otherwise(-1)


def _diff(frame: pl.DataFrame, kind: str, **cols: pl.Expr) -> pl.DataFrame:
    """Shape some rows as differences of ``kind``."""
    base: dict[str, pl.Expr] = {
        "kind": pl.lit(kind),
        "record_type": pl.col("type"),
        "key": pl.col("key"),
        "transaction_id": pl.lit(None, dtype=pl.String),
        "m_amount": pl.lit(None, dtype=pl.Int64),
        "merchant_currency": pl.lit(None, dtype=pl.String),
        "f_amount": pl.lit(None, dtype=pl.Int64),
        "files_currency": pl.lit(None, dtype=pl.String),
        "merchant_status": pl.lit(None, dtype=pl.String),
        "m_fee": pl.lit(None, dtype=pl.Int64),
        "f_fee": pl.lit(None, dtype=pl.Int64),
        "fee_currency": pl.lit(None, dtype=pl.String),
        "merchant_line": pl.lit(None, dtype=pl.Int64),
        "detail": pl.lit("", dtype=pl.String),
        # Contributions to each side's net (sign by type), for the closing check.
        "m_contrib": pl.lit(0, dtype=pl.Int64),
        "f_contrib": pl.lit(0, dtype=pl.Int64),
    }
    base.update(cols)
    return frame.select(**base).cast(_DIFF_SCHEMA)  # type: ignore[arg-type]


def reconcile(
    journal: pl.DataFrame,
    transactions: pl.DataFrame,
    settlements: pl.DataFrame | None = None,
    *,
    mdr_bps: int | None = None,
) -> Result:
    """Compare normalised merchant records with normalised file records; every difference, once."""
    diffs: list[pl.DataFrame] = []

    # Duplicates on either side: reported, and only the first occurrence takes part in matching.
    jdup = journal.filter(pl.struct("type", "key").is_first_distinct().not_())
    if jdup.height:
        diffs.append(
            _diff(
                jdup,
                "duplicate",
                m_amount=pl.col("amount"),
                merchant_currency=pl.col("currency"),
                merchant_status=pl.col("status"),
                merchant_line=pl.col("line"),
                detail=pl.lit("the same record appears more than once in the merchant's journal"),
                m_contrib=pl.when(pl.col("status") == "SUCCESS").then(_SIGN * pl.col("amount")).otherwise(0),
            )
        )
    m = journal.filter(pl.struct("type", "key").is_first_distinct())
    fdup = transactions.filter(pl.struct("type", "key").is_first_distinct().not_())
    if fdup.height:
        diffs.append(
            _diff(
                fdup,
                "duplicate",
                transaction_id=pl.col("transaction_id"),
                f_amount=pl.col("trans_amount"),
                files_currency=pl.col("trans_currency"),
                detail=pl.lit("the same record appears more than once in the files"),
                f_contrib=_SIGN * pl.col("trans_amount"),
            )
        )
    fx = transactions.filter(pl.struct("type", "key").is_first_distinct())

    j = m.join(fx, on=["type", "key"], how="full", coalesce=True, suffix="_f")
    j = j.with_columns(
        pl.col("line").is_not_null().alias("in_m"),
        pl.col("trans_amount").is_not_null().alias("in_f"),
        (pl.col("status") == "SUCCESS").fill_null(False).alias("ok"),
    )
    # The merchant's amount is compared in its own currency: the order's, else the settlement currency.
    j = j.with_columns(
        pl.when(pl.col("currency") == pl.col("trans_currency"))
        .then(pl.col("trans_amount"))
        .when(pl.col("currency") == pl.col("settle_currency"))
        .then(pl.col("settle_amount"))
        .otherwise(None)
        .alias("f_same"),
        pl.when(pl.col("currency") == pl.col("settle_currency"))
        .then(pl.col("settle_currency"))
        .otherwise(pl.col("trans_currency"))
        .alias("f_basis_cur"),
    ).with_columns(
        pl.when(pl.col("f_same").is_not_null())
        .then(pl.col("f_same"))
        .otherwise(pl.col("trans_amount"))
        .alias("f_basis")
    )
    m_side = {
        "m_amount": pl.col("amount"),
        "merchant_currency": pl.col("currency"),
        "merchant_status": pl.col("status"),
        "merchant_line": pl.col("line"),
        "m_fee": minor(pl.col("fee_text"), pl.col("settle_currency")),
    }
    f_side = {
        "transaction_id": pl.col("transaction_id_f").fill_null(pl.col("transaction_id")),
        "f_amount": pl.col("f_basis"),
        "files_currency": pl.col("f_basis_cur"),
        "f_fee": pl.col("fee"),
        "fee_currency": pl.col("settle_currency"),
    }
    m_contrib = pl.when(pl.col("ok")).then(_SIGN * pl.col("amount")).otherwise(0)
    f_contrib = _SIGN * pl.col("f_basis")

    only_m = j.filter(pl.col("in_m") & ~pl.col("in_f") & pl.col("ok"))
    diffs.append(
        _diff(
            only_m,
            "missing_in_files",
            **m_side,
            transaction_id=pl.col("transaction_id"),
            detail=pl.lit("the merchant recorded it as successful; Tillpay's files do not have it"),
            m_contrib=m_contrib,
        )
    )
    only_f = j.filter(~pl.col("in_m") & pl.col("in_f"))
    diffs.append(
        _diff(
            only_f,
            "missing_in_merchant",
            **f_side,
            detail=pl.lit("in Tillpay's files; not in the merchant's journal"),
            f_contrib=f_contrib,
        )
    )
    both = j.filter(pl.col("in_m") & pl.col("in_f"))
    failed = both.filter(~pl.col("ok"))
    diffs.append(
        _diff(
            failed,
            "status_mismatch",
            **m_side,
            **f_side,
            detail=pl.lit("the merchant recorded it as failed; the money moved in Tillpay's files"),
            f_contrib=f_contrib,
        )
    )
    good = both.filter(pl.col("ok"))
    cur_bad = good.filter(pl.col("f_same").is_null())
    diffs.append(
        _diff(
            cur_bad,
            "currency_mismatch",
            **m_side,
            **f_side,
            detail=pl.lit("the merchant's currency is neither the order's nor the settlement currency"),
            m_contrib=m_contrib,
            f_contrib=f_contrib,
        )
    )
    amt_bad = good.filter(pl.col("f_same").is_not_null() & (pl.col("f_same") != pl.col("amount")))
    diffs.append(
        _diff(
            amt_bad,
            "amount_mismatch",
            **m_side,
            **f_side,
            detail=pl.lit("the amounts differ"),
            m_contrib=m_contrib,
            f_contrib=f_contrib,
        )
    )
    fee_given = good.with_columns(minor(pl.col("fee_text"), pl.col("settle_currency")).alias("m_fee_v"))
    fee_bad = fee_given.filter(
        pl.col("fee_text").is_not_null()
        & (pl.col("fee_text") != "")
        & (pl.col("m_fee_v").is_null() | (pl.col("m_fee_v") != pl.col("fee")))
    )
    diffs.append(
        _diff(
            fee_bad,
            "fee_mismatch",
            **m_side,
            **f_side,
            detail=pl.lit("the merchant's fee differs from the files'"),
        )
    )
    if mdr_bps is not None:
        # The contract: a payment's fee is amount x rate rounded half up, a refund keeps its fee (0 here).
        expected = (
            pl.when(pl.col("type") == "PAYMENT")
            .then((pl.col("settle_amount") * mdr_bps + 5000) // 10000)
            .when(pl.col("type") == "REFUND")
            .then(0)
            .otherwise(None)
        )
        contract = fx.with_columns(expected.alias("expected_fee")).filter(
            pl.col("expected_fee").is_not_null() & (pl.col("expected_fee") != pl.col("fee"))
        )
        # Rows already reported for their recorded fee are not reported twice.
        contract = contract.join(fee_bad.select("type", "key"), on=["type", "key"], how="anti")
        diffs.append(
            _diff(
                contract,
                "fee_mismatch",
                transaction_id=pl.col("transaction_id"),
                f_fee=pl.col("fee"),
                m_fee=pl.col("expected_fee"),
                fee_currency=pl.col("settle_currency"),
                detail=pl.lit(f"the files' fee is not the contract rate of {mdr_bps} bp"),
            )
        )
    if settlements is not None:
        sx = settlements.join(fx, on=["type", "key"], how="full", coalesce=True)
        incons = sx.filter(
            pl.col("s_amount").is_null()
            | pl.col("settle_amount").is_null()
            | (pl.col("s_amount") != pl.col("settle_amount"))
            | (pl.col("s_fee") != pl.col("fee"))
            | (pl.col("s_currency") != pl.col("settle_currency"))
            | (pl.col("s_settlement") != pl.col("s_amount") - pl.col("s_fee"))
        )
        diffs.append(
            _diff(
                incons,
                "file_inconsistency",
                transaction_id=pl.col("transaction_id"),
                f_amount=pl.col("settle_amount"),
                files_currency=pl.col("settle_currency"),
                detail=pl.lit("the transaction and settlement files disagree on this record"),
            )
        )

    d = pl.concat([x for x in diffs if x.height], how="vertical") if any(x.height for x in diffs) else None
    if d is None:
        d = _diff(
            pl.DataFrame({"type": [], "key": []}, schema={"type": pl.String, "key": pl.String}), "duplicate"
        )
    d = d.sort(["kind", "record_type", "key"], maintain_order=True)
    summary = _summary(journal, m, transactions, d, settlements)
    summary["journal_records"] = journal.height
    summary["file_records"] = transactions.height
    return Result(_render(d), summary)


def _render(d: pl.DataFrame) -> pl.DataFrame:
    return d.select(
        "kind",
        "record_type",
        "key",
        "transaction_id",
        major(pl.col("m_amount"), pl.col("merchant_currency")).alias("merchant_amount"),
        "merchant_currency",
        major(pl.col("f_amount"), pl.col("files_currency")).alias("files_amount"),
        "files_currency",
        "merchant_status",
        major(pl.col("m_fee"), pl.col("fee_currency")).alias("merchant_fee"),
        major(pl.col("f_fee"), pl.col("fee_currency")).alias("files_fee"),
        "fee_currency",
        "merchant_line",
        "detail",
        "m_contrib",
        "f_contrib",
    )


def _summary(
    journal: pl.DataFrame,
    m: pl.DataFrame,
    fx: pl.DataFrame,
    d: pl.DataFrame,
    settlements: pl.DataFrame | None,
) -> dict[str, Any]:
    """Each side's totals over all its records (duplicates too: they are part of that side's sum)."""
    sign = _SIGN
    m_net = (
        journal.filter(pl.col("status") == "SUCCESS")
        .group_by("currency")
        .agg(
            (sign * pl.col("amount")).sum().alias("merchant_net"),
            pl.len().alias("merchant_count"),
        )
    )
    # The files' side is counted in the currency each record is compared in (see f_basis above).
    basis = fx.join(
        m.select("type", "key", pl.col("currency").alias("m_cur")), on=["type", "key"], how="left"
    )
    basis = basis.with_columns(
        pl.when(pl.col("m_cur") == pl.col("settle_currency"))
        .then(pl.col("settle_currency"))
        .otherwise(pl.col("trans_currency"))
        .alias("currency"),
        pl.when(pl.col("m_cur") == pl.col("settle_currency"))
        .then(pl.col("settle_amount"))
        .otherwise(pl.col("trans_amount"))
        .alias("amount"),
    )
    f_net = basis.group_by("currency").agg(
        (sign * pl.col("amount")).sum().alias("files_net"), pl.len().alias("files_count")
    )
    dm = d.group_by(pl.col("merchant_currency").alias("currency")).agg(pl.col("m_contrib").sum().alias("dm"))
    df_ = d.group_by(pl.col("files_currency").alias("currency")).agg(pl.col("f_contrib").sum().alias("df"))
    t = (
        m_net.join(f_net, on="currency", how="full", coalesce=True)
        .join(dm.filter(pl.col("currency").is_not_null()), on="currency", how="left")
        .join(df_.filter(pl.col("currency").is_not_null()), on="currency", how="left")
        .fill_null(0)
        .sort("currency")
    )
    totals = []
    for r in t.iter_rows(named=True):
        gap = r["merchant_net"] - r["files_net"]
        explained = r["dm"] - r["df"]
        totals.append(
            {
                "currency": r["currency"],
                "merchant_records": r["merchant_count"],
                "merchant_net": r["merchant_net"],
                "file_records": r["files_count"],
                "files_net": r["files_net"],
                "gap": gap,
                "explained_by_differences": explained,
                "closes": gap == explained,
            }
        )
    by_type = (
        fx.group_by("settle_currency", "type")
        .agg(
            pl.len().alias("count"),
            pl.col("settle_amount").sum().alias("amount"),
            pl.col("fee").sum().alias("fee"),
        )
        .sort("settle_currency", "type")
    )
    settlement_totals: dict[str, dict[str, Any]] = {}
    for r in by_type.iter_rows(named=True):
        cur = settlement_totals.setdefault(
            r["settle_currency"], {"currency": r["settle_currency"], "fee": 0, "net": 0}
        )
        cur[r["type"].lower()] = {"count": r["count"], "amount": r["amount"], "fee": r["fee"]}
        sign_v = 1 if r["type"] == "PAYMENT" else -1
        fee_sign = 1 if r["type"] == "PAYMENT" else (-1 if r["type"] == "REVERSAL" else 0)
        cur["fee"] += fee_sign * r["fee"]
        cur["net"] += sign_v * r["amount"]
    for cur in settlement_totals.values():
        cur["net"] -= cur["fee"]
    if settlements is not None:
        s_net = (
            settlements.with_columns(
                pl.when(pl.col("type") == "PAYMENT")
                .then(pl.col("s_settlement"))
                .otherwise(-pl.col("s_settlement"))
                .alias("v")
            )
            .group_by("s_currency")
            .agg(pl.col("v").sum())
        )
        for r in s_net.iter_rows(named=True):
            if r["s_currency"] in settlement_totals:
                settlement_totals[r["s_currency"]]["settlement_file_net"] = r["v"]
    counts: Mapping[str, int] = dict(d.group_by("kind").agg(pl.len()).iter_rows())
    return {
        "differences": {k: int(counts.get(k, 0)) for k in DIFF_KINDS},
        "difference_count": d.height,
        "totals": totals,
        "settlement": list(settlement_totals.values()),
    }
