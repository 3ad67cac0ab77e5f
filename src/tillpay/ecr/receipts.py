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
from tillpay.ecr.textwidth import center, row, wrap

WIDTH = 42  # characters on an 80 mm printer with font A; a 58 mm printer has 32 (printer.columns)


class PrinterError(Exception):
    """The receipt could not be sent to the printer (it is kept in the journal; reprint it)."""


def money(minor: int, currency: str) -> str:
    """``12.50 USD``."""
    return f"{format_amount(minor, currency)} {currency}"


def training_mark(data: dict[str, Any], width: int = WIDTH) -> list[str]:
    """The lines that mark a training receipt at its top and its bottom (none on a real one)."""
    if not data.get("training"):
        return []
    text = f"*** {t(data.get('language', 'en'), 'training_mark')} ***"
    return [center(line, width) for line in wrap(text, width)]


def render_lines(data: dict[str, Any], *, copy: bool = False, width: int = WIDTH) -> list[str]:
    """The receipt as lines of at most ``width`` display columns (the same lines go to paper): a CJK
    character counts two. A label and its value share a line when they fit, else the value goes
    right-aligned on the next; long names and ids wrap instead of being cut. A training receipt
    starts with its mark (``training_mark``; the bottom one is added by the renderers, after the QR
    code's note)."""
    lang = data.get("language", "en")
    out = training_mark(data, width)
    out += [center(line, width) for line in wrap(data["merchant"], width)]
    if data.get("store_name"):
        out += [center(line, width) for line in wrap(data["store_name"], width)]
    out += row(
        f"{t(lang, 'store')} {data['store_id']}", f"{t(lang, 'terminal')} {data['terminal_id']}", width
    )
    out += wrap(data["time"], width)
    if copy:
        out.append(center(f"*** {t(lang, 'copy')} ***", width))
    out.append("-" * width)
    kind = data["kind"]
    if kind == "report":
        for line in data["lines"]:
            out += wrap(line, width, indent="  ")
        out.append("=" * width)
        return out
    cur = data["currency"]
    if kind == "refund":
        out.append(center(t(lang, "refund_slip"), width))
    elif kind == "cancelled":
        out.append(center(t(lang, "cancelled_slip"), width))
    for it in data["items"]:
        out += wrap(it["name"], width, indent="  ")
        out += row(
            f"  {it['qty']} x {format_amount(it['price'], cur)}",
            format_amount(it["price"] * it["qty"], cur),
            width,
        )
    if kind == "refund" and not data["items"]:
        # A refund of "everything that is left" (or an amount) names no items: say what it was.
        out += row(t(lang, "remaining_amount"), format_amount(data["amount"], cur), width)
    out.append("-" * width)
    if kind == "sale":
        out += row(t(lang, "total"), money(data["total"], cur), width)
        if data.get("buyer_amount") and data.get("buyer_currency"):
            out += row(t(lang, "customer_paid"), f"{data['buyer_amount']} {data['buyer_currency']}", width)
            if data.get("exchange_rate"):
                out += row(
                    t(lang, "rate"), f"1 {cur} = {data['exchange_rate']} {data['buyer_currency']}", width
                )
    elif kind == "cancelled":
        # Printed when the customer had paid just as the till gave up: the cancel gave it all back.
        out += row(t(lang, "total"), money(data["total"], cur), width)
        out += wrap(t(lang, "cancel_refunded"), width)
        if data.get("buyer_amount") and data.get("buyer_currency"):
            out += row(t(lang, "customer_gets"), f"{data['buyer_amount']} {data['buyer_currency']}", width)
    else:
        out += row(t(lang, "refunded"), money(data["amount"], cur), width)
        if data.get("buyer_amount") and data.get("buyer_currency"):
            out += row(t(lang, "customer_gets"), f"{data['buyer_amount']} {data['buyer_currency']}", width)
        out += row(t(lang, "refund_id"), data["refund_id"], width)
    out += row(t(lang, "order"), data["partner_trans_id"], width)
    out += row(t(lang, "transaction"), data["trade_no"] or "-", width)
    out.append("=" * width)
    return out


def _refund_note(data: dict[str, Any], width: int) -> list[str]:
    return [center(line, width) for line in wrap(t(data.get("language", "en"), "scan_to_refund"), width)]


def render_text(data: dict[str, Any], *, copy: bool = False, width: int = WIDTH) -> str:
    """The receipt as plain text."""
    lines = render_lines(data, copy=copy, width=width)
    if data["kind"] == "sale" and data.get("trade_no"):
        lines += _refund_note(data, width)
    lines += training_mark(data, width)
    return "\n".join(lines) + "\n"


def render_escpos(
    data: dict[str, Any], profile: str = "TM-T88V", *, copy: bool = False, width: int = WIDTH
) -> bytes:
    """The receipt as ESC/POS bytes: header in double size, the lines, a QR code of the transaction
    id (what the refund screen scans), then a cut."""
    p = Dummy(profile=profile)
    lines = render_lines(data, copy=copy, width=width)
    mark = training_mark(data, width)
    header = len(mark) + len(wrap(data["merchant"], width))
    if mark:
        p.set(align="left", bold=True)
        for line in mark:
            p.textln(line)
    p.set(align="center", bold=True, double_height=True, double_width=True)
    for line in wrap(data["merchant"], width // 2):  # double width: half as many columns
        p.textln(line)
    p.set(align="left", bold=False, normal_textsize=True)
    for line in lines[header:]:
        p.textln(line)
    if data["kind"] == "sale" and data.get("trade_no"):
        p.set(align="center")
        # Rendered by the printer itself (GS ( k): 126 bytes instead of a 3.4 KB raster image.
        p.qr(data["trade_no"], size=6, native=True)
        for line in wrap(t(data.get("language", "en"), "scan_to_refund"), width):
            p.textln(line)
        p.set(align="left")
    if mark:
        p.set(align="left", bold=True)
        for line in mark:
            p.textln(line)
        p.set(bold=False)
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
            self._append_text(cfg.text_copy, render_text(data, copy=copy, width=cfg.columns))
        if cfg.kind == "none":
            return
        if cfg.kind == "text":
            self._append_text(cfg.path, render_text(data, copy=copy, width=cfg.columns))
            return
        payload = render_escpos(data, cfg.profile, copy=copy, width=cfg.columns)
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
