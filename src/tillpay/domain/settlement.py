"""Settlement rules: business days and cut-offs, fees, netting, ledger postings, file and payout layouts.

Pure functions only: no database, no clock, no files. The services feed them rows and write their bytes.

Facts and guesses (see docs/settlement.md):

- File layouts are Alipay's (reference §1.14): the transaction file of the HK barcode / merchant-QR
  products (a ``Partner:...|Payment_time: ...|Total_count:...`` line, the column line, ``|``-separated
  records, ``Transaction_type`` PAYMENT / REVERSAL / REFUND) and the settlement file's 20-column record
  layout (``Type`` P / R, ``Status`` L). Confirmed.
- A cancellation of a paid payment returns the fee, a refund does not: "Compared with refund, a cancelled
  paid txn also gets the Alipay fee refunded" (reference §1.8). Confirmed for Alipay, applied here.
- Amounts are positive in both files, the type giving the direction, as in Alipay's samples. Guessed for
  refund rows (the samples show only positive numbers).
- ``Transaction_id`` of a refund or reversal row is the original payment's id; a reversal row carries
  the merchant's transaction id (it has no refund id of its own, reference §1.14 field 1). Guessed.
- ``Order_scene`` values ``barCode`` (customer-presented code) and ``shopQrCode`` (merchant-presented
  QR, the value in Alipay's sample), ``Issue`` ``TILLPAY`` (the wallet, like ``ALIPAYCN``). Guessed.
- UTF-8 text with ``\\n`` line ends; file names; T+N counted in calendar days. Guessed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tillpay.domain import ledger
from tillpay.domain.money import format_amount

# ------------------------------------------------------------------------------------- days and cut-off

_CUTOFF_RE = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class SettlementConfigError(ValueError):
    """A settlement setting (time zone, cut-off, fee rate, account) is not usable."""


def parse_cutoff(text: str) -> tuple[int, int]:
    """``HH:MM`` from ``00:01`` to ``24:00``: the local time at which a business day closes."""
    m = _CUTOFF_RE.match(text.strip())
    if not m:
        raise SettlementConfigError(f"a cut-off is HH:MM, e.g. 24:00 or 23:00, not {text!r}")
    h, mi = int(m[1]), int(m[2])
    if (h, mi) == (0, 0) or (h == 24 and mi != 0):
        raise SettlementConfigError("a cut-off is between 00:01 and 24:00")
    return h, mi


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; SettlementConfigError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettlementConfigError(f"unknown time zone {name!r}") from None


def cutoff_at(day: date, tz: str, cutoff: str) -> datetime:
    """The UTC instant at which business day ``day`` closes (wall-clock time, so DST is respected)."""
    h, mi = parse_cutoff(cutoff)
    z = zone(tz)
    local = datetime.combine(day + timedelta(days=1), time(0, 0), z) if h == 24 else None
    if local is None:
        local = datetime.combine(day, time(h, mi), z)
    return local.astimezone(UTC)


def business_day(instant: datetime, tz: str, cutoff: str) -> date:
    """The business day an instant belongs to: the first day whose cut-off is after it."""
    local = instant.astimezone(zone(tz)).date()
    for day in (local - timedelta(days=1), local, local + timedelta(days=1)):
        if instant < cutoff_at(day, tz, cutoff):
            return day
    return local + timedelta(days=2)  # unreachable for cut-offs within the day; kept total


def payout_date(day: date, days: int) -> date:
    """The value date of a batch's payout: T+N calendar days."""
    if days < 0:
        raise SettlementConfigError("T+N needs N >= 0")
    return day + timedelta(days=days)


# ----------------------------------------------------------------------------------------------- fees

MAX_BPS = 10_000


def check_bps(bps: int) -> int:
    """A merchant discount rate in basis points, 0 to 10000 (100 %)."""
    if isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps <= MAX_BPS:
        raise SettlementConfigError("a fee rate is 0 to 10000 basis points")
    return bps


def payment_fee(amount: int, bps: int) -> int:
    """The fee on a payment of ``amount`` minor units: amount x bps / 10000, rounded half up.

    The SQL that settles in bulk computes ``(amount * bps + 5000) / 10000`` in integers, the same
    number for every non-negative amount; the property tests hold the two together.
    """
    if amount < 0:
        raise ValueError("fees are computed on positive amounts")
    return (amount * bps + 5000) // 10000


# -------------------------------------------------------------------------------------------- netting

PAYMENT, REFUND, REVERSAL = "P", "R", "C"


@dataclass(frozen=True, slots=True)
class Item:
    """One settled movement: kind P/R/C, a positive amount and a positive fee (charged or returned)."""

    kind: str
    amount: int
    fee: int


@dataclass(frozen=True, slots=True)
class Totals:
    """A batch's figures, all in the settlement currency's minor units."""

    payment_count: int
    refund_count: int
    reversal_count: int
    payments_amount: int
    refunds_amount: int
    reversals_amount: int
    fee: int
    net: int
    carried_in: int
    payout_amount: int

    @property
    def carry_out(self) -> int:
        """What the next batch starts from: a negative balance, or 0."""
        return min(0, self.net + self.carried_in)


def totals(
    counts: dict[str, int], amounts: dict[str, int], fees: dict[str, int], carried_in: int = 0
) -> Totals:
    """Net a batch from per-kind counts and sums (what SQL aggregates give).

    Payments less refunds and reversals, less fees charged on payments, plus fees returned on
    reversals. A batch that comes out negative pays nothing and carries the shortfall forward.
    """
    if carried_in > 0:
        raise ValueError("only a negative balance is carried")
    unknown = (set(counts) | set(amounts) | set(fees)) - {PAYMENT, REFUND, REVERSAL}
    if unknown:
        raise ValueError(f"unknown item kinds {sorted(unknown)}")
    fee = fees.get(PAYMENT, 0) - fees.get(REVERSAL, 0)
    n = amounts.get(PAYMENT, 0) - amounts.get(REFUND, 0) - amounts.get(REVERSAL, 0) - fee
    return Totals(
        payment_count=counts.get(PAYMENT, 0),
        refund_count=counts.get(REFUND, 0),
        reversal_count=counts.get(REVERSAL, 0),
        payments_amount=amounts.get(PAYMENT, 0),
        refunds_amount=amounts.get(REFUND, 0),
        reversals_amount=amounts.get(REVERSAL, 0),
        fee=fee,
        net=n,
        carried_in=carried_in,
        payout_amount=max(0, n + carried_in),
    )


def net(items: Iterable[Item], carried_in: int = 0) -> Totals:
    """Net a batch item by item (the reference the SQL aggregation is tested against)."""
    counts: dict[str, int] = {}
    amounts: dict[str, int] = {}
    fees: dict[str, int] = {}
    for it in items:
        if it.amount < 0 or it.fee < 0:
            raise ValueError("item amounts and fees are positive; the kind gives the direction")
        counts[it.kind] = counts.get(it.kind, 0) + 1
        amounts[it.kind] = amounts.get(it.kind, 0) + it.amount
        fees[it.kind] = fees.get(it.kind, 0) + it.fee
    return totals(counts, amounts, fees, carried_in)


def settlement_postings(merchant_id: int, currency: str, fee: int, payout: int) -> list[ledger.Posting]:
    """The batch's entry: payable → fee revenue (the fee) and payable → settlement clearing (the payout).

    Empty when both are zero (a day whose payments were all cancelled, say): nothing moves.
    """
    lines = [
        ledger.Posting(ledger.merchant_payable(merchant_id), currency, -(fee + payout)),
        ledger.Posting(ledger.FEE_REVENUE, currency, fee),
        ledger.Posting(ledger.SETTLEMENT_CLEARING, currency, payout),
    ]
    if all(ln.amount == 0 for ln in lines):
        return []
    return ledger.check_balanced(lines)


def payout_postings(currency: str, amount: int) -> list[ledger.Posting]:
    """The payout's entry: settlement clearing → bank, on the value date."""
    if amount <= 0:
        raise ValueError("a payout moves a positive amount")
    return ledger.check_balanced(
        [
            ledger.Posting(ledger.SETTLEMENT_CLEARING, currency, -amount),
            ledger.Posting(ledger.BANK, currency, amount),
        ]
    )


# ------------------------------------------------------------------------------------------------ IBAN

_IBAN_RE = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_BIC_RE = re.compile(r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")


def _mod97(text: str) -> int:
    digits = "".join(str(int(c, 36)) for c in text)
    return int(digits) % 97


def check_iban(iban: str) -> str:
    """The IBAN without spaces, upper case, if its ISO 13616 check digits are right."""
    clean = "".join(iban.split()).upper()
    if not _IBAN_RE.match(clean) or _mod97(clean[4:] + clean[:4]) != 1:
        raise SettlementConfigError(f"not a valid IBAN: {iban!r}")
    return clean


def make_iban(country: str, bban: str) -> str:
    """An IBAN for ``country`` and a domestic account number, with computed check digits."""
    check = 98 - _mod97(bban + country + "00")
    return check_iban(f"{country}{check:02d}{bban}")


def check_bic(bic: str) -> str:
    """A BIC (ISO 9362), 8 or 11 characters, upper case."""
    clean = bic.strip().upper()
    if not _BIC_RE.match(clean):
        raise SettlementConfigError(f"not a valid BIC: {bic!r}")
    return clean


# -------------------------------------------------------------------------------------- file layouts

TRANSACTION_COLUMNS = (
    "Partner_transaction_id",
    "Transaction_id",
    "Transaction_amount",
    "Charge_amount",
    "Currency",
    "Payment_time",
    "Transaction_type",
    "Remark",
    "Secondary_merchant_industry",
    "Secondary_merchant_name",
    "Secondary_merchant_id",
    "Operator_name",
    "Order_scene",
    "Trans_currency",
    "Trans_amount",
    "Trans_forex_rate",
    "Issue",
)

SETTLEMENT_COLUMNS = (
    "Partner_transaction_id",
    "Transaction_id",
    "Amount",
    "Fee",
    "Settlement",
    "Currency",
    "Payment_time",
    "Settlement_time",
    "Type",
    "Status",
    "Remarks",
    "Secondary_merchant_industry",
    "Secondary_merchant_name",
    "Secondary_merchant_id",
    "Operator_name",
    "Order_scene",
    "Trans_currency",
    "Trans_amount",
    "Trans_forex_rate",
    "Issue",
)

TRANSACTION_TYPES = {PAYMENT: "PAYMENT", REFUND: "REFUND", REVERSAL: "REVERSAL"}
SETTLEMENT_TYPES = {PAYMENT: "P", REFUND: "R", REVERSAL: "R"}
REMARKS = {PAYMENT: "", REFUND: "Refund", REVERSAL: "Cancel"}
ISSUE = "TILLPAY"
#: Alipay's ``Status`` L: "Transaction Liquidated".
LIQUIDATED = "L"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def order_scene(payment_kind: str) -> str:
    """The ``Order_scene`` of a payment kind (guessed values, see the module doc)."""
    return "shopQrCode" if payment_kind == "precreate" else "barCode"


def clean(text: str | None) -> str:
    """A text field made safe for a ``|``-separated line."""
    if not text:
        return ""
    return text.replace("|", " ").replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True, slots=True)
class FileRow:
    """One settled item with everything both files show about it."""

    kind: str
    partner_transaction_id: str
    transaction_id: str
    amount: int
    fee: int
    currency: str
    occurred_at: datetime
    trans_currency: str
    trans_amount: int
    forex_rate: str
    mcc: str
    merchant_name: str
    store_id: str | None
    terminal_id: str | None
    payment_kind: str
    #: The pay's secondary merchant and store (MAPI ``extend_info``), when it named them.
    secondary_merchant_id: str | None = None
    secondary_merchant_name: str | None = None
    secondary_merchant_industry: str | None = None
    store_name: str | None = None

    def secondary_columns(self) -> tuple[str, str, str, str]:
        """``Secondary_merchant_industry``, ``_name``, ``_id`` and ``Operator_name``: the secondary
        merchant the pay named, else the merchant's own MCC and name, the store id and the terminal id.
        ``Operator_name`` is "store or driver name" (reference §1.14): the store name when the pay
        gave one."""
        return (
            self.secondary_merchant_industry or self.mcc,
            clean(self.secondary_merchant_name or self.merchant_name),
            clean(self.secondary_merchant_id or self.store_id),
            clean(self.store_name or self.terminal_id),
        )


def _local(instant: datetime, z: ZoneInfo) -> str:
    return instant.astimezone(z).strftime(TIME_FORMAT)


def transaction_header(partner_id: str, day: date, count: int) -> str:
    """The first line of a transaction file, spaced exactly as Alipay's sample."""
    return f"Partner:{partner_id}|Payment_time: {day.isoformat()}|Total_count:{count}\n"


def transaction_line(r: FileRow, z: ZoneInfo) -> str:
    """One record of the transaction file."""
    return (
        "|".join(
            (
                clean(r.partner_transaction_id),
                r.transaction_id,
                format_amount(r.amount, r.currency),
                format_amount(r.fee, r.currency),
                r.currency,
                _local(r.occurred_at, z),
                TRANSACTION_TYPES[r.kind],
                REMARKS[r.kind],
                *r.secondary_columns(),
                order_scene(r.payment_kind),
                r.trans_currency,
                format_amount(r.trans_amount, r.trans_currency),
                r.forex_rate,
                ISSUE,
            )
        )
        + "\n"
    )


def settlement_line(r: FileRow, settled_at: datetime, z: ZoneInfo) -> str:
    """One record of the settlement file: Settlement = Amount - Fee, the type giving the direction."""
    return (
        "|".join(
            (
                clean(r.partner_transaction_id),
                r.transaction_id,
                format_amount(r.amount, r.currency),
                format_amount(r.fee, r.currency),
                format_amount(r.amount - r.fee, r.currency),
                r.currency,
                _local(r.occurred_at, z),
                _local(settled_at, z),
                SETTLEMENT_TYPES[r.kind],
                LIQUIDATED,
                REMARKS[r.kind],
                *r.secondary_columns(),
                order_scene(r.payment_kind),
                r.trans_currency,
                format_amount(r.trans_amount, r.trans_currency),
                r.forex_rate,
                ISSUE,
            )
        )
        + "\n"
    )


def column_line(columns: Sequence[str]) -> str:
    """The column-name line of a file."""
    return "|".join(columns) + "\n"


def file_names(partner_id: str, day: date, currency: str) -> tuple[str, str]:
    """(transaction file, settlement file) paths below the settlement directory."""
    d = day.strftime("%Y%m%d")
    base = f"{day.isoformat()}/{partner_id}/{partner_id}"
    return f"{base}_transaction_{d}_{currency}.txt", f"{base}_settlement_{d}_{currency}.txt"


def pain001_name(run_day: date) -> str:
    """The path of the bank payout file of a run."""
    return f"{run_day.isoformat()}/bank/pain001_{run_day.strftime('%Y%m%d')}.xml"


def digest_text(data_sha256: str, name: str) -> str:
    """The ``.sha256`` companion of a file, in ``sha256sum`` format so ``sha256sum -c`` checks it."""
    return f"{data_sha256}  {name.rsplit('/', 1)[-1]}\n"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------- pain.001

PAIN001_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"


@dataclass(frozen=True, slots=True)
class Payout:
    """One credit transfer to a merchant's account."""

    end_to_end_id: str
    amount: int
    currency: str
    value_date: date
    creditor_name: str
    creditor_iban: str
    creditor_bic: str | None
    remittance: str


def end_to_end_id(settle_day: date, partner_id: str, currency: str) -> str:
    """The payout's reference (max 35 characters): ``TP`` + day + partner + currency."""
    return f"TP{settle_day.strftime('%Y%m%d')}{partner_id}{currency}"


def _major(amount: int, currency: str) -> Decimal:
    return Decimal(format_amount(amount, currency))


def render_pain001(
    *,
    message_id: str,
    created_at: datetime,
    debtor_name: str,
    debtor_iban: str,
    debtor_bic: str,
    payouts: Sequence[Payout],
) -> bytes:
    """An ISO 20022 pain.001.001.09 credit-transfer initiation, one payment block per currency and date.

    Deterministic: the same payouts give the same bytes (the creation time is the caller's, taken
    from the run's cut-off, never the clock).
    """
    if not payouts:
        raise ValueError("a payout file needs at least one payout")
    ordered = sorted(payouts, key=lambda x: (x.currency, x.value_date, x.end_to_end_id))
    groups: dict[tuple[str, date], list[Payout]] = {}
    for po in ordered:
        groups.setdefault((po.currency, po.value_date), []).append(po)

    def total(ps: Iterable[Payout]) -> Decimal:
        return sum((_major(x.amount, x.currency) for x in ps), Decimal(0))

    e = escape
    out: list[str | None] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<Document xmlns={quoteattr(PAIN001_NS)}>",
        "  <CstmrCdtTrfInitn>",
        "    <GrpHdr>",
        f"      <MsgId>{e(message_id)}</MsgId>",
        f"      <CreDtTm>{created_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}</CreDtTm>",
        f"      <NbOfTxs>{len(ordered)}</NbOfTxs>",
        f"      <CtrlSum>{total(ordered)}</CtrlSum>",
        f"      <InitgPty><Nm>{e(debtor_name)}</Nm></InitgPty>",
        "    </GrpHdr>",
    ]
    for (currency, value_date), ps in groups.items():
        out += [
            "    <PmtInf>",
            f"      <PmtInfId>{e(message_id)}-{currency}-{value_date.strftime('%Y%m%d')}</PmtInfId>",
            "      <PmtMtd>TRF</PmtMtd>",
            f"      <NbOfTxs>{len(ps)}</NbOfTxs>",
            f"      <CtrlSum>{total(ps)}</CtrlSum>",
            f"      <ReqdExctnDt><Dt>{value_date.isoformat()}</Dt></ReqdExctnDt>",
            f"      <Dbtr><Nm>{e(debtor_name)}</Nm></Dbtr>",
            f"      <DbtrAcct><Id><IBAN>{e(debtor_iban)}</IBAN></Id><Ccy>{currency}</Ccy></DbtrAcct>",
            f"      <DbtrAgt><FinInstnId><BICFI>{e(debtor_bic)}</BICFI></FinInstnId></DbtrAgt>",
            "      <ChrgBr>SLEV</ChrgBr>" if currency == "EUR" else "      <ChrgBr>SHAR</ChrgBr>",
        ]
        for po in ps:
            agent = (
                f"<CdtrAgt><FinInstnId><BICFI>{e(po.creditor_bic)}</BICFI></FinInstnId></CdtrAgt>"
                if po.creditor_bic
                else ""
            )
            out += [
                "      <CdtTrfTxInf>",
                f"        <PmtId><InstrId>{e(po.end_to_end_id)}</InstrId>"
                f"<EndToEndId>{e(po.end_to_end_id)}</EndToEndId></PmtId>",
                f"        <Amt><InstdAmt Ccy={quoteattr(po.currency)}>"
                f"{format_amount(po.amount, po.currency)}</InstdAmt></Amt>",
                f"        {agent}" if agent else None,
                f"        <Cdtr><Nm>{e(po.creditor_name[:70])}</Nm></Cdtr>",
                f"        <CdtrAcct><Id><IBAN>{e(po.creditor_iban)}</IBAN></Id></CdtrAcct>",
                f"        <RmtInf><Ustrd>{e(po.remittance[:140])}</Ustrd></RmtInf>",
                "      </CdtTrfTxInf>",
            ]
        out.append("    </PmtInf>")
    out += ["  </CstmrCdtTrfInitn>", "</Document>", ""]
    return "\n".join(x for x in out if x is not None).encode("utf-8")
