"""``tillpay ecr``: the cashier's screen (Textual).

One input line takes everything a barcode scanner (a keyboard: digits, then Enter) or the cashier
types: an item code adds the item, a payment code (16-24 digits starting 25-30) pays the basket. The
gateway is called from a thread worker, so the screen (state, countdown, the abort key) stays live.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import date
from typing import ClassVar

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Digits, Footer, Header, Input, Static

from tillpay.domain.money import format_amount
from tillpay.ecr.catalog import ScanKind
from tillpay.ecr.i18n import t
from tillpay.ecr.journal import Line, Order
from tillpay.ecr.receipts import PrinterError
from tillpay.ecr.report import Report, build_report
from tillpay.ecr.till import Blocked, RefundTarget, SaleOutcome, Till, TillError

CSS = """
#main { height: 1fr; }
#basket { width: 3fr; }
#side { width: 2fr; padding: 0 1; }
#total { color: $success; }
#state { height: auto; min-height: 3; padding: 0 1; border: round $primary; }
#state.paid { border: round $success; color: $success; }
#state.failed, #state.cancelled, #state.unresolved { border: round $error; color: $error; }
#state.waiting, #state.sending, #state.unknown, #state.cancelling { border: round $warning; }
#receipt-box { height: 1fr; border: round $surface-lighten-2; }
#receipt { height: auto; }
#message { height: auto; padding: 0 1; }
#scan { dock: bottom; }
RefundScreen, ReportScreen { align: center middle; }
#dialog { width: 90%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
#dialog-body { height: 1fr; }
TrainingBanner { width: 100%; height: auto; background: $warning; color: $background; text-style: bold;
    text-align: center; }
"""


class TrainingBanner(Static):
    """The TRAINING banner at the top of every screen of a till in training (``tillpay ecr --training``)."""


def training_banner(till: Till) -> list[TrainingBanner]:
    """The banner to put first on a screen: one in training, none otherwise."""
    if not till.cfg.in_training:
        return []
    return [TrainingBanner(t(till.language, "training_banner"), id="training-banner")]


class RefundScreen(ModalScreen[None]):
    """Refund: scan the receipt's QR (or type the id), then scan items, type an amount, or just Enter
    for everything that is left."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        self.target: RefundTarget | None = None
        self.selected: list[Line] = []
        self.done: str | None = None

    def _t(self, key: str) -> str:
        return t(self.till.language, key)  # the kiosk's shopper language, the till's own otherwise

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield from training_banner(self.till)
            yield Static(self._t("refund_title"), id="refund-title")
            yield Input(placeholder=self._t("refund_ref"), id="refund-ref")
            yield Static("", id="refund-info")
            yield Input(placeholder=self._t("refund_how"), id="refund-amount")
            with VerticalScroll(id="dialog-body"):
                yield Static("", id="refund-result")

    def on_mount(self) -> None:
        self.query_one("#refund-ref", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "refund-ref":
            self._lookup(event.value)
            return
        text = event.value.strip()
        event.input.value = ""
        tg = self.target
        if tg is None:
            self._show(self._t("refund_lookup_first"))
            return
        line = next((i for i in tg.items if i.code == text), None)
        if line is not None:
            already = sum(s.qty for s in self.selected if s.code == line.code)
            if already >= line.qty:
                self._show(self._t("refund_all_selected").format(qty=line.qty, name=line.name))
                return
            self.selected.append(Line(line.code, line.name, line.price, 1))
            self._info()
            return
        try:
            if text:
                amount = self.till.parse_money(text, tg.currency)
                items: list[Line] = []
            elif self.selected:
                amount = sum(s.amount for s in self.selected)
                items = _merge(self.selected)
            else:
                amount, items = tg.left, list(tg.items) if not tg.refunded else []
        except TillError as e:
            self._show(str(e))
            return
        self._refund(tg, amount, items)

    @work(thread=True, exclusive=True, group="refund")
    def _lookup(self, ref: str) -> None:
        try:
            target = self.till.find_for_refund(ref)
        except TillError as e:
            self.app.call_from_thread(self._show, str(e))
            return
        self.app.call_from_thread(self._found, target)

    def _found(self, target: RefundTarget) -> None:
        self.target = target
        self.selected = []
        self._info()
        self.query_one("#refund-amount", Input).focus()

    def _info(self, target: RefundTarget | None = None, note: str = "") -> None:
        tg = target or self.target
        assert tg is not None
        m = self.till.money
        items = "\n".join(f"  {i.code}  {i.qty} x {i.name}  {m(i.price, tg.currency)}" for i in tg.items)
        sel = ""
        if self.selected:
            sel = f"\n{self._t('refund_selected')}: " + ", ".join(
                f"{s.qty} x {s.name}" for s in _merge(self.selected)
            )
            sel += f" = {m(sum(s.amount for s in self.selected), tg.currency)}"
        self.query_one("#refund-info", Static).update(
            f"{self._t('order')} {tg.partner_trans_id}  {self._t('refund_trans')} {tg.trade_no}\n"
            f"{self._t('refund_paid')} {m(tg.total, tg.currency)}  "
            f"{self._t('refund_refunded')} {m(tg.refunded, tg.currency)}  "
            f"{self._t('refund_left')} {m(tg.left, tg.currency)}{note}\n{items}{sel}"
        )

    @work(thread=True, exclusive=True, group="refund")
    def _refund(self, target: RefundTarget, amount: int, items: list[Line]) -> None:
        try:
            _, text = self.till.refund(target, amount, items)
        except TillError as e:
            self.app.call_from_thread(self._show, str(e))
            return
        after = dataclasses.replace(target, refunded=target.refunded + amount)
        self.app.call_from_thread(self._refunded, text, after)

    def _refunded(self, text: str, after: RefundTarget) -> None:
        self.done = text
        self._show(text)
        self.selected = []
        self._info(after, f"  {self._t('refund_after')}")  # the figures now, not the ones before the refund
        self.query_one("#refund-ref", Input).value = ""
        self.query_one("#refund-ref", Input).focus()

    def _show(self, text: str) -> None:
        self.query_one("#refund-result", Static).update(text)


def _merge(lines: list[Line]) -> list[Line]:
    out: dict[str, Line] = {}
    for s in lines:
        o = out.get(s.code)
        out[s.code] = Line(s.code, s.name, s.price, s.qty + (o.qty if o else 0))
    return list(out.values())


class ReportScreen(ModalScreen[None]):
    """The shift report (``d`` switches to the day's), checked against the gateway; ``p`` prints it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("p", "print", "Print"),
        Binding("d", "day", "Day report"),
        Binding("s", "shift", "Shift report"),
    ]

    def __init__(self, till: Till, *, print_now: bool = False) -> None:
        super().__init__()
        self.till = till
        self.report: Report | None = None
        self.print_now = print_now

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield from training_banner(self.till)
            with VerticalScroll(id="dialog-body"):
                yield Static("Checking every order with the gateway…", id="report-body")
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self._build(shift=True)

    def action_day(self) -> None:
        self._build(shift=False)

    def action_shift(self) -> None:
        self._build(shift=True)

    @work(thread=True, exclusive=True, group="report")
    def _build(self, shift: bool) -> None:
        j = self.till.journal
        rep = (
            build_report(j, self.till.client, shift_id=j.current_shift().id)
            if shift
            else build_report(j, self.till.client, day=date.today())
        )
        self.app.call_from_thread(self._show, rep)

    def _show(self, rep: Report) -> None:
        self.report = rep
        self.query_one("#report-body", Static).update("\n".join(rep.lines()))
        if self.print_now:
            self.print_now = False
            self.action_print()

    def action_print(self) -> None:
        if self.report is None:
            return
        data = self.till.receipt_header("report") | {
            "lines": self.report.lines(self.till.cfg.printer.columns)
        }
        self.till.journal.add_receipt("report", self.report.title, data)
        try:
            self.till.printer.print(data)
        except PrinterError as e:
            self.notify(str(e), severity="error")


class ScanInput(Input):
    """The scan line. A USB scanner types a whole code and Enter within milliseconds, and the next scan
    follows at once: Enter takes the line and empties the field in the same key handler, before the next
    queued keystroke is read, so each code is handled once, whole and in order, however busy the screen
    is (clearing it later, when the line is handled, merged two scans into one or wiped the next one)."""

    async def _on_key(self, event: events.Key) -> None:
        # Enter is taken here, in the widget's own queue of keystrokes, not as a key binding: a binding
        # runs from the app's queue, after keystrokes the scanner already sent behind it.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            text = self.value
            self.value = ""
            self.post_message(self.Submitted(self, text, None))
            return
        await super()._on_key(event)


class EcrApp(App[None]):
    """The cashier's terminal."""

    #: Short labels and no command palette: every key fits an 80-column terminal's footer.
    ENABLE_COMMAND_PALETTE = False

    CSS = CSS
    TITLE = "Tillpay ECR"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "quantity", "Qty"),
        Binding("f3", "remove", "Del"),
        Binding("f4", "clear", "Clear"),
        Binding("f5", "refund", "Refund"),
        Binding("f6", "reprint", "Copy"),
        Binding("f7", "report", "Report"),
        Binding("f8", "close_shift", "Close"),
        Binding("f9", "resolve", "Resolve"),
        Binding("escape", "abort", "Abort"),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
    ]

    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till
        self.paying = False
        self.recovering = False
        self.abort_event = threading.Event()
        self.deadline: float | None = None
        self.state = "ready"
        self.last_outcome: SaleOutcome | None = None
        self.recovered: list[SaleOutcome] = []
        #: Seconds from Enter on the payment code to the receipt's last byte (the system's part).
        self.last_checkout_seconds: float | None = None
        self._t_enter = 0.0
        self._columns_set = False

    def lang(self) -> str:
        """The language on screen."""
        return self.till.language

    # ------------------------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        yield from training_banner(self.till)
        with Horizontal(id="main"):
            table: DataTable[str] = DataTable(id="basket", cursor_type="row", zebra_stripes=True)
            yield table
            with Vertical(id="side"):
                yield Digits("0.00", id="total")
                yield Static("", id="state")
                with VerticalScroll(id="receipt-box", can_focus=False):
                    yield Static("", id="receipt")
        yield Static("", id="message")
        yield ScanInput(placeholder="scan or type an item code or a payment code", id="scan")
        yield Footer(compact=True)

    # Textual calls a message handler on every class of the MRO that defines one, so subclasses (the
    # kiosk) override these hooks instead of the handlers.
    def on_mount(self) -> None:
        self.setup()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "scan":
            self.submitted(event)

    def setup(self) -> None:
        """Prepare the screen and resolve anything a crash left open."""
        cfg = self.till.cfg
        self.sub_title = f"{cfg.merchant_name} · {cfg.store_id} · {cfg.terminal_id}"
        if cfg.in_training:
            self.title = f"{self.title} · TRAINING"
        self._set_columns()
        self.query_one("#scan", Input).focus()
        self.set_interval(0.25, self._tick)
        self._set_state("ready", t(self.lang(), "ready"))
        self._refresh_basket()
        self.start_recovery()
        self.till.heartbeat.start()  # its own thread: a slow or absent gateway never holds the screen

    # ----------------------------------------------------------------------------------- helpers

    def on_resize(self, event: events.Resize) -> None:
        if self._columns_set:
            self._set_columns()
            self._refresh_basket()

    def _narrow(self) -> bool:
        # Below 100 columns the basket (3/5 of the width) has no room for the code and unit price.
        return self.size.width < 100

    def _set_columns(self) -> None:
        """The basket's columns for this width; the item's name takes what is left, so the table never
        needs a horizontal scrollbar."""
        table = self.query_one("#basket", DataTable)
        table.clear(columns=True)
        self._columns_set = True
        room = self.size.width * 3 // 5 - 2  # the basket's share, less its border and scrollbar
        pad = 2 * table.cell_padding
        if self._narrow():
            fixed = [("Qty", 3), ("Amount", 10)]
        else:
            fixed = [("Code", 13), ("Qty", 3), ("Price", 10), ("Amount", 10)]
        item = max(8, room - sum(w for _, w in fixed) - pad * (len(fixed) + 1))
        cols = [*fixed]
        cols.insert(1 if not self._narrow() else 0, ("Item", item))
        for label, width in cols:
            table.add_column(label, width=width, key=label.lower())

    def _set_state(self, state: str, text: str) -> None:
        self.state = state
        w = self.query_one("#state", Static)
        w.set_classes(state)
        w.update(text)

    def message(self, text: str) -> None:
        """Show a line to the cashier."""
        self.query_one("#message", Static).update(text)

    def _refresh_basket(self) -> None:
        table = self.query_one("#basket", DataTable)
        row = table.cursor_row
        table.clear()
        cur = self.till.cfg.currency
        for line in self.till.basket.lines:
            cells = {
                "code": line.code,
                "item": line.name,
                "qty": str(line.qty),
                "price": format_amount(line.price, cur),
                "amount": format_amount(line.amount, cur),
            }
            table.add_row(*(cells[str(key.value)] for key in table.columns))
        if self.till.basket.lines:
            table.move_cursor(row=min(max(row, 0), len(self.till.basket.lines) - 1))
        self.query_one("#total", Digits).update(format_amount(self.till.basket.total, cur))

    def _tick(self) -> None:
        if self.paying and self.deadline is not None and self.state in ("waiting", "unknown"):
            left = max(0, int(self.deadline - time.monotonic() + 0.999))
            base = t(self.lang(), "waiting") if self.state == "waiting" else t(self.lang(), "unknown")
            self.query_one("#state", Static).update(
                f"{base}\n{left} {t(self.lang(), 'seconds_left')}  (Esc: abort)"
            )

    def _busy(self) -> bool:
        if self.paying:
            self.message("a payment is in progress (Esc aborts it)")
            return True
        if self.recovering:
            self.message(t(self.lang(), "recovering"))
            return True
        return False

    # ------------------------------------------------------------------------------------- input

    def submitted(self, event: Input.Submitted) -> None:
        """One line from the scanner or the keyboard."""
        text = event.value.strip()  # ScanInput has emptied the field already
        if not text:
            return  # a stray Enter adds nothing
        t_enter = time.perf_counter()
        if self._busy():
            return
        scan = self.till.classify(text)
        if scan.kind is ScanKind.ITEM:
            try:
                idx = self.till.scan_item(scan)
            except TillError as e:
                self.message(str(e))
                return
            self._refresh_basket()
            self.query_one("#basket", DataTable).move_cursor(row=idx)
            line = self.till.basket.lines[idx]
            self.message(f"{line.qty} x {line.name}")
            if self.state in ("paid", "failed", "cancelled"):
                self._set_state("ready", t(self.lang(), "ready"))
        elif scan.kind is ScanKind.PAYMENT:
            self.pay(text, t_enter)
        else:
            self.message(f"{t(self.lang(), 'unknown_code')}: {text}")

    def pay(self, code: str, t_enter: float | None = None) -> None:
        """Start paying the basket with a customer's payment code."""
        if not self.till.basket.lines:
            self.message(t(self.lang(), "basket_empty"))
            return
        if self.till.journal.unfinished():
            self.message("an earlier order is not resolved yet: press F9 to resolve it")
            return
        self._t_enter = t_enter if t_enter is not None else time.perf_counter()
        self.query_one("#receipt", Static).update("")  # the previous customer's receipt is not this sale's
        self.paying = True
        self.abort_event = threading.Event()
        self.deadline = time.monotonic() + self.till.cfg.merchant_timeout
        self.last_outcome = None
        self._set_state("sending", t(self.lang(), "sending"))
        self._checkout(code)

    @work(thread=True, exclusive=True, group="pay")
    def _checkout(self, code: str) -> None:
        def on_state(state: str, order: Order) -> None:
            self.call_from_thread(self._on_state, state, order)

        try:
            out = self.till.checkout(code, on_state=on_state, abort=self.abort_event)
        except (Blocked, TillError) as e:
            self.call_from_thread(self._not_started, str(e))
            return
        self.call_from_thread(self._finished, out)

    def _on_state(self, state: str, order: Order) -> None:
        if state in ("waiting", "unknown"):
            self._set_state(state, t(self.lang(), state))
            self._tick()
        elif state in ("sending", "cancelling"):
            self._set_state(state, t(self.lang(), state))

    def _not_started(self, text: str) -> None:
        self.paying = False
        self._set_state("failed", text)
        self.message(text)

    def _finished(self, out: SaleOutcome) -> None:
        self.paying = False
        self.deadline = None
        self.last_outcome = out
        state = {"PAID": "paid", "FAILED": "failed", "CANCELLED": "cancelled"}.get(out.outcome, "unresolved")
        self._set_state(state, out.message)
        if out.printed_at is not None:
            self.last_checkout_seconds = out.printed_at - self._t_enter
        self.query_one("#receipt", Static).update(out.receipt or "")
        self.message(f"printer: {out.print_error} (F6 reprints)" if out.print_error else out.message)
        self._refresh_basket()

    # ---------------------------------------------------------------------------------- recovery

    def start_recovery(self) -> None:
        """Resolve unfinished orders and pending refunds with the gateway before the next sale."""
        j = self.till.journal
        if not j.unfinished() and not j.refunds(state="pending"):
            return
        self.recovering = True
        self._set_state("unknown", t(self.lang(), "recovering"))
        self._recover()

    @work(thread=True, exclusive=True, group="recover")
    def _recover(self) -> None:
        outs = self.till.recover(lambda s: self.call_from_thread(self.message, s))
        self.call_from_thread(self._recovered, outs)

    def _recovered(self, outs: list[SaleOutcome]) -> None:
        self.recovering = False
        self.recovered.extend(outs)
        left = self.till.journal.unfinished()
        text = "\n".join(o.message for o in outs)
        if left:
            self._set_state("unresolved", f"{text}\n{len(left)} order(s) still unresolved: F9 retries")
        else:
            self._set_state("ready", f"{text}\n{t(self.lang(), 'ready')}")
        receipts = [o.receipt for o in outs if o.receipt]
        if receipts:
            self.query_one("#receipt", Static).update(receipts[-1])
        self.message(text)

    # ----------------------------------------------------------------------------------- actions

    def action_abort(self) -> None:
        """The cashier gives up on a waiting payment: it is cancelled at the gateway."""
        if self.paying:
            self.abort_event.set()
            self._set_state("cancelling", t(self.lang(), "cancelling"))

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#basket", DataTable)
        if table.row_count:
            table.move_cursor(row=min(max(table.cursor_row + step, 0), table.row_count - 1))

    def _selected(self) -> int | None:
        table = self.query_one("#basket", DataTable)
        if not self.till.basket.lines:
            return None
        return min(max(table.cursor_row, 0), len(self.till.basket.lines) - 1)

    def action_quantity(self) -> None:
        """Type the quantity, then F2: the selected line gets it (0 removes it)."""
        if self._busy():
            return
        inp = self.query_one("#scan", Input)
        idx = self._selected()
        if idx is None:
            self.message(t(self.lang(), "basket_empty"))
            return
        text = inp.value.strip()
        if not text.isdigit():
            self.message("type the quantity first, then press F2")
            return
        try:
            self.till.basket.set_qty(idx, int(text))
        except TillError as e:
            self.message(str(e))
            return
        inp.value = ""
        self._refresh_basket()

    def action_remove(self) -> None:
        if self._busy():
            return
        idx = self._selected()
        if idx is not None:
            self.till.basket.remove(idx)
            self._refresh_basket()

    def action_clear(self) -> None:
        if self._busy():
            return
        self.till.basket.clear()
        self._refresh_basket()
        self._set_state("ready", t(self.lang(), "ready"))

    def action_refund(self) -> None:
        if not self._busy():
            self.push_screen(RefundScreen(self.till))

    def action_reprint(self) -> None:
        """Reprint the newest receipt, or the one whose id is typed in the input."""
        if self._busy():
            return
        inp = self.query_one("#scan", Input)
        ref = inp.value.strip() or None
        inp.value = ""
        try:
            text = self.till.reprint(ref)
        except (TillError, PrinterError) as e:
            self.message(str(e))
            return
        self.query_one("#receipt", Static).update(text)
        self.message("reprinted")

    def action_report(self) -> None:
        if not self._busy():
            self.push_screen(ReportScreen(self.till))

    def action_close_shift(self) -> None:
        """Print the shift's report and start the next shift."""
        if self._busy():
            return
        self.push_screen(ReportScreen(self.till, print_now=True), lambda _: self._next_shift())

    def _next_shift(self) -> None:
        closed, new = self.till.journal.close_shift()
        self.message(f"shift {closed.id} closed; shift {new.id} open")

    def action_resolve(self) -> None:
        if not self.paying and not self.recovering:
            self.start_recovery()
