"""Receipts: one data shape, rendered as plain text and as ESC/POS bytes (python-escpos), and sent to
the configured printer (file, network, USB, serial) or kept as text.

A receipt's data is stored in the journal when it is first printed, so a reprint is the same receipt,
marked as a copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from escpos.printer import Dummy, File, Network, Serial, Usb

from tillpay.domain.money import format_amount
from tillpay.ecr.config import PrinterConfig
from tillpay.ecr.i18n import t

WIDTH = 42  # characters on an 80 mm printer with font A


class PrinterError(Exception):
    """The receipt could not be sent to the printer (it is kept in the journal; reprint it)."""


def money(minor: int, currency: str) -> str:
    """``12.50 USD``."""
    return f"{format_amount(minor, currency)} {currency}"


def _row(left: str, right: str, width: int = WIDTH) -> str:
    room = max(1, width - len(right) - 1)
    return f"{left[:room]:<{room}} {right}"


def render_lines(data: dict[str, Any], *, copy: bool = False) -> list[str]:
    """The receipt as lines of at most ``WIDTH`` characters (the same lines go to paper)."""
    lang = data.get("language", "en")
    out = [data["merchant"].center(WIDTH).rstrip()]
    if data.get("store_name"):
        out.append(data["store_name"].center(WIDTH).rstrip())
    out.append(_row(f"{t(lang, 'store')} {data['store_id']}", f"{t(lang, 'terminal')} {data['terminal_id']}"))
    out.append(data["time"])
    if copy:
        out.append(f"*** {t(lang, 'copy')} ***".center(WIDTH).rstrip())
    out.append("-" * WIDTH)
    kind = data["kind"]
    if kind == "report":
        out.extend(data["lines"])
        out.append("=" * WIDTH)
        return out
    cur = data["currency"]
    if kind == "refund":
        out.append(t(lang, "refund_slip").center(WIDTH).rstrip())
    for it in data["items"]:
        out.append(it["name"][:WIDTH])
        out.append(
            _row(
                f"  {it['qty']} x {format_amount(it['price'], cur)}",
                format_amount(it["price"] * it["qty"], cur),
            )
        )
    if kind == "refund" and not data["items"]:
        # A refund of "everything that is left" (or an amount) names no items: say what it was.
        out.append(_row(t(lang, "remaining_amount"), format_amount(data["amount"], cur)))
    out.append("-" * WIDTH)
    if kind == "sale":
        out.append(_row(t(lang, "total"), money(data["total"], cur)))
        if data.get("buyer_amount") and data.get("buyer_currency"):
            out.append(_row(t(lang, "customer_paid"), f"{data['buyer_amount']} {data['buyer_currency']}"))
            if data.get("exchange_rate"):
                out.append(
                    _row(t(lang, "rate"), f"1 {cur} = {data['exchange_rate']} {data['buyer_currency']}")
                )
    else:
        out.append(_row(t(lang, "refunded"), money(data["amount"], cur)))
        if data.get("buyer_amount") and data.get("buyer_currency"):
            out.append(_row(t(lang, "customer_gets"), f"{data['buyer_amount']} {data['buyer_currency']}"))
        out.append(_row(t(lang, "refund_id"), data["refund_id"]))
    out.append(_row(t(lang, "order"), data["partner_trans_id"]))
    out.append(_row(t(lang, "transaction"), data["trade_no"] or "-"))
    out.append("=" * WIDTH)
    return out


def render_text(data: dict[str, Any], *, copy: bool = False) -> str:
    """The receipt as plain text."""
    lines = render_lines(data, copy=copy)
    if data["kind"] == "sale" and data.get("trade_no"):
        lines.append(t(data.get("language", "en"), "scan_to_refund").center(WIDTH).rstrip())
    return "\n".join(lines) + "\n"


def render_escpos(data: dict[str, Any], profile: str = "TM-T88V", *, copy: bool = False) -> bytes:
    """The receipt as ESC/POS bytes: header in double size, the lines, a QR code of the transaction
    id (what the refund screen scans), then a cut."""
    p = Dummy(profile=profile)
    lines = render_lines(data, copy=copy)
    p.set(align="center", bold=True, double_height=True, double_width=True)
    p.textln(data["merchant"][: WIDTH // 2])
    p.set(align="left", bold=False, normal_textsize=True)
    for line in lines[1:]:
        p.textln(line)
    if data["kind"] == "sale" and data.get("trade_no"):
        p.set(align="center")
        # Rendered by the printer itself (GS ( k): 126 bytes instead of a 3.4 KB raster image.
        p.qr(data["trade_no"], size=6, native=True)
        p.textln(t(data.get("language", "en"), "scan_to_refund"))
        p.set(align="left")
    p.cut()
    out: bytes = p.output
    return out


class _AppendFile(File):  # type: ignore[misc]  # python-escpos has no type hints
    """escpos's File printer, opened for appending so a day's receipts accumulate in one file."""

    def open(self, raise_not_found: bool = True) -> None:
        try:
            self.device = open(self.devfile, "ab")
        except OSError as e:
            raise PrinterError(f"cannot open {self.devfile}: {e}") from None


class ReceiptPrinter:
    """Sends receipts to the configured printer."""

    def __init__(self, cfg: PrinterConfig, resolve: Any = Path) -> None:
        self.cfg = cfg
        self._resolve = resolve

    def print(self, data: dict[str, Any], *, copy: bool = False) -> None:
        """Print one receipt; raise :class:`PrinterError` if the printer cannot take it."""
        cfg = self.cfg
        if cfg.text_copy:
            self._append_text(cfg.text_copy, render_text(data, copy=copy))
        if cfg.kind == "none":
            return
        if cfg.kind == "text":
            self._append_text(cfg.path, render_text(data, copy=copy))
            return
        payload = render_escpos(data, cfg.profile, copy=copy)
        try:
            device = self._device()
            try:
                device._raw(payload)
            finally:
                device.close()
        except PrinterError:
            raise
        except Exception as e:  # escpos raises its own and the OS's errors; all mean "not printed"
            raise PrinterError(f"{cfg.kind} printer: {type(e).__name__}: {e}") from e

    def _device(self) -> Any:
        cfg = self.cfg
        if cfg.kind == "file":
            return _AppendFile(str(self._resolve(cfg.path)), auto_flush=True, profile=cfg.profile)
        if cfg.kind == "network":
            p = Network(cfg.host, cfg.port, timeout=10, profile=cfg.profile)
            p.open()
            return p
        if cfg.kind == "usb":
            return Usb(int(cfg.vendor_id, 16), int(cfg.product_id, 16), profile=cfg.profile)
        if cfg.kind == "serial":
            return Serial(cfg.path, baudrate=cfg.baudrate, profile=cfg.profile)
        raise PrinterError(f"unknown printer kind {cfg.kind!r}")

    def _append_text(self, path: str, text: str) -> None:
        try:
            with open(self._resolve(path), "a", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as e:
            raise PrinterError(f"cannot write {path}: {e}") from None
