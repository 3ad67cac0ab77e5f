"""``tillpay ecr --kiosk``: self-checkout for the customer.

Large text, the customer's language chosen on screen, scan items, scan one's own payment code, take the
receipt; the paid screen shows what was paid until the shopper presses Enter or ``after_sale_seconds``
pass, and the screen resets after ``kiosk_idle_seconds`` without input. Refunds, reports and settings
sit behind the operator PIN (Ctrl+O); the operator's screens lock after the idle time too.
"""

from __future__ import annotations

import time
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Digits, Input, Static

from tillpay.domain.money import format_amount
from tillpay.ecr.app import EcrApp, RefundScreen, ReportScreen, ScanInput, TrainingBanner, training_banner
from tillpay.ecr.i18n import LANGUAGE_NAMES, MESSAGES, t
from tillpay.ecr.journal import Order
from tillpay.ecr.till import SaleOutcome, Till

KIOSK_CSS = """
#kiosk-prompt { text-style: bold; content-align: center middle; height: auto; min-height: 5;
    border: heavy $primary; }
#kiosk-prompt.paid { border: heavy $success; color: $success; }
#kiosk-prompt.failed, #kiosk-prompt.cancelled, #kiosk-prompt.unresolved { border: heavy $error; color: $error; }
#choose { align: center middle; }
#languages { height: auto; width: 100%; align: center middle; }
#languages Button { width: 30; margin: 0 0 1 0; }
#language-title { text-style: bold; text-align: center; width: 100%; height: auto; margin-bottom: 1; }
PinScreen, OperatorScreen { align: center middle; }
#pin-dialog, #operator-dialog { width: 60; max-width: 100%; height: auto; max-height: 100%;
    border: thick $primary; background: $surface; padding: 0 1; }
#operator-dialog Button { width: 100%; }
#operator-title { text-style: bold; }
"""


#: Keys a shopper presses that no PIN needs.
SHOPPER_KEYS = frozenset({"up", "down", "left", "right", "pageup", "pagedown", "home", "end", "tab", "space"})


class PinScreen(ModalScreen[bool]):
    """Asks for the operator PIN; dismisses with whether it was right."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Back")]

    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till

    def compose(self) -> ComposeResult:
        with Vertical(id="pin-dialog"):
            yield from training_banner(self.till)
            yield Static(t(self.till.language, "operator_pin"))
            yield Input(password=True, id="pin")
            yield Static("", id="pin-message")

    def on_mount(self) -> None:
        self.query_one("#pin", Input).focus()

    # A shopper who pressed a staff key by mistake does not know the PIN: their first key that cannot
    # be part of one (a letter, an arrow, a function key) or a scanned code closes the dialog.
    def on_input_changed(self, event: Input.Changed) -> None:
        if event.value and not event.value.isdigit():
            self.dismiss(False)

    def on_key(self, event: events.Key) -> None:
        if event.key in SHOPPER_KEYS or (event.key[:1] == "f" and event.key[1:].isdigit()):
            event.stop()
            event.prevent_default()
            self.dismiss(False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if len(event.value.strip()) > 12:  # longer than any PIN: an item or payment code was scanned
            self.dismiss(False)
            return
        if self.till.cfg.check_pin(event.value.strip()):
            self.dismiss(True)
            return
        event.input.value = ""
        msg = t(self.till.language, "wrong_pin" if self.till.cfg.operator_pin_hash else "no_pin")
        self.query_one("#pin-message", Static).update(msg)

    def action_cancel(self) -> None:
        self.dismiss(False)


class OperatorScreen(ModalScreen[str]):
    """What the operator may do: refund, report, reprint, see the settings, leave kiosk mode."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, till: Till) -> None:
        super().__init__()
        self.till = till

    def compose(self) -> ComposeResult:
        cfg = self.till.cfg
        lang = self.till.language
        with Vertical(id="operator-dialog"):
            yield from training_banner(self.till)
            yield Static(t(lang, "operator"), id="operator-title")
            for name in ("refund", "report", "reprint", "settings"):
                yield Button(t(lang, f"op_{name}"), id=f"op-{name}", compact=True)
            yield Button(t(lang, "op_exit"), id="op-exit", variant="error", compact=True)
            yield Button(t(lang, "back"), id="op-back", variant="primary", compact=True)
            yield Static("", id="op-settings-text")
            self._settings = (
                f"gateway {cfg.gateway_url}\npartner {cfg.partner}  sign {cfg.sign_type}\n"
                f"store {cfg.store_id}  terminal {cfg.terminal_id}  currency {cfg.currency}\n"
                f"printer {cfg.printer.kind} {cfg.printer.path or cfg.printer.host}\n"
                f"poll {cfg.poll_interval}s  merchant timeout {cfg.merchant_timeout}s  "
                f"idle reset {cfg.kiosk_idle_seconds}s\n(edit {cfg.source or 'the config file'} to change)"
            )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        name = (event.button.id or "").removeprefix("op-")
        if name == "settings":
            self.query_one("#op-settings-text", Static).update(self._settings)
            return
        self.dismiss(name)

    def action_back(self) -> None:
        self.dismiss("back")


class KioskApp(EcrApp):
    """Self-checkout: the customer is the cashier."""

    CSS = EcrApp.CSS + KIOSK_CSS
    TITLE = "Tillpay self-checkout"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "operator", "Staff"),
        Binding("escape", "abort", "Cancel payment"),
    ]

    def __init__(self, till: Till) -> None:
        super().__init__(till)
        self.last_input = time.monotonic()
        self.resets = 0
        #: How many times the operator's screens were closed and the kiosk locked (idle).
        self.locks = 0
        self.started = False
        #: The paid screen is up (what was paid stays until the shopper is done, or after_sale_seconds).
        self.showing_paid = False

    def compose(self) -> ComposeResult:
        yield from training_banner(self.till)
        with Vertical(id="choose"):
            yield Static(
                "\n".join(MESSAGES[k]["choose_language"] for k in LANGUAGE_NAMES), id="language-title"
            )
            with Vertical(id="languages"):
                for n, (code, name) in enumerate(LANGUAGE_NAMES.items(), start=1):
                    yield Button(f"{n}  {name}", id=f"lang-{code}", variant="primary")
        with Vertical(id="shop"):
            yield Static("", id="kiosk-prompt")
            with Horizontal(id="main"):
                table: DataTable[str] = DataTable(id="basket", cursor_type="row")
                yield table
                with Vertical(id="side"):
                    yield Digits("0.00", id="total")
                    yield Static("", id="state")
                    with VerticalScroll(id="receipt-box", can_focus=False):
                        yield Static("", id="receipt")
            yield Static("", id="message")
            yield ScanInput(placeholder="", id="scan")

    def setup(self) -> None:
        super().setup()
        self.set_interval(0.25, self._idle_check)
        self._show_languages()

    # --------------------------------------------------------------------------- screens in place

    def _show_languages(self) -> None:
        self.query_one("#shop").display = False
        self.query_one("#choose").display = True
        self.started = False
        self.query_one("#lang-" + self.till.cfg.language, Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id or ""
        if bid.startswith("lang-"):
            self.choose_language(bid.removeprefix("lang-"))

    def on_key(self, event: events.Key) -> None:
        """On the start screen, a language's number (1-4, as its button shows) takes it."""
        if len(self.screen_stack) > 1 or not self.query_one("#choose").display:
            return
        codes = list(LANGUAGE_NAMES)
        if event.character and event.character.isdigit() and 1 <= int(event.character) <= len(codes):
            event.stop()
            self.choose_language(codes[int(event.character) - 1])

    def action_cursor(self, step: int) -> None:
        """↑ ↓ move between the languages on the start screen (Enter takes one), else the basket."""
        if len(self.screen_stack) > 1:
            return  # an operator screen is on top: the arrows are its own
        if not self.query_one("#choose").display:
            super().action_cursor(step)
            return
        buttons = list(self.query("#languages Button").results(Button))
        at = buttons.index(self.focused) if self.focused in buttons else 0
        buttons[(at + step) % len(buttons)].focus()

    def choose_language(self, lang: str) -> None:
        """The customer picked a language: show the shop in it."""
        self.till.language = lang
        self._banner_language()
        self.query_one("#choose").display = False
        self.query_one("#shop").display = True
        self.started = True
        self.last_input = time.monotonic()
        self._prompt("ready", t(lang, "scan_items"))
        self._set_state("ready", "")
        self.query_one("#scan", Input).focus()

    def _prompt(self, state: str, text: str) -> None:
        w = self.query_one("#kiosk-prompt", Static)
        w.set_classes(state)
        w.update(text)

    def reset(self) -> None:
        """Back to the start, in the kiosk's own language, for the next customer."""
        self.resets += 1
        self.showing_paid = False
        self.till.basket.clear()
        self._refresh_basket()
        self.query_one("#receipt", Static).update("")
        self.message("")
        self.last_outcome = None
        self.till.language = self.till.cfg.language
        self._banner_language()
        self._show_languages()

    def _banner_language(self) -> None:
        """The training banner in the shopper's language."""
        for banner in self.query(TrainingBanner).results(TrainingBanner):
            banner.update(t(self.till.language, "training_banner"))

    def lock(self) -> None:
        """Close every operator screen and return to the start: the next person needs the PIN."""
        self.locks += 1
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.reset()

    def _idle_check(self) -> None:
        if self.paying or self.recovering:
            return
        quiet = time.monotonic() - self.last_input
        cfg = self.till.cfg
        if len(self.screen_stack) > 1:
            # The PIN dialog, the operator menu, a refund or a report left open: lock them, unless a
            # refund or a report is still talking to the gateway (its answer must land on its screen).
            busy = any(w.group in ("refund", "report") and not w.is_finished for w in self.workers)
            if quiet >= cfg.kiosk_idle_seconds and not busy:
                self.lock()
            return
        if not self.started:
            return
        if self.showing_paid and quiet >= cfg.after_sale_seconds:
            self.reset()
        elif quiet >= cfg.kiosk_idle_seconds:
            self.reset()

    # ------------------------------------------------------------------------------------ input

    async def on_event(self, event: events.Event) -> None:
        # Every key and click counts as activity, on the shop and on the operator's screens alike.
        if isinstance(event, events.Key | events.MouseDown):
            self.last_input = time.monotonic()
        await super().on_event(event)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.last_input = time.monotonic()  # every keystroke counts as activity, not just Enter

    def submitted(self, event: Input.Submitted) -> None:
        self.last_input = time.monotonic()
        if self.showing_paid and not self.paying:
            if not event.value.strip():
                self.reset()  # Enter: this shopper is done; the start screen for the next one
                return
            self.showing_paid = False  # a new customer starts scanning after the previous one paid
            self.last_outcome = None
        super().submitted(event)
        if self.till.basket.lines and not self.paying:
            self._prompt("ready", f"{t(self.lang(), 'scan_items')}\n{t(self.lang(), 'scan_code')}")

    def _on_state(self, state: str, order: Order) -> None:
        super()._on_state(state, order)
        if state == "waiting":
            self._prompt("waiting", t(self.lang(), "waiting_customer"))
        elif state in ("sending", "cancelling", "unknown"):
            self._prompt(state, t(self.lang(), state))

    def _finished(self, out: SaleOutcome) -> None:
        super()._finished(out)
        self.last_input = time.monotonic()
        if out.outcome == "PAID":
            # The basket is empty now; the screen shows what this shopper paid until they are done.
            o, lang = out.order, self.lang()
            paid = self.till.money(o.total, o.currency)
            if o.buyer_amount and o.buyer_currency:
                paid += f" ({o.buyer_amount} {o.buyer_currency})"
            self.query_one("#total", Digits).update(format_amount(o.total, o.currency))
            self.showing_paid = True
            self._prompt(
                "paid",
                f"{t(lang, 'paid')}: {t(lang, 'you_paid')} {paid}\n{t(lang, 'thanks')}\n{t(lang, 'done_key')}",
            )
        else:
            state = {"FAILED": "failed", "CANCELLED": "cancelled"}.get(out.outcome, "unresolved")
            self._prompt(state, out.message)

    # --------------------------------------------------------------------------------- operator

    def action_operator(self) -> None:
        """Ctrl+O: the operator PIN opens refunds, reports and settings."""
        if self.paying or len(self.screen_stack) > 1:
            return

        def after_pin(ok: bool | None) -> None:
            if ok:
                self.push_screen(OperatorScreen(self.till), self._operator_choice)

        self.push_screen(PinScreen(self.till), after_pin)

    def _operator_choice(self, choice: str | None) -> None:
        self.last_input = time.monotonic()
        if choice == "refund":
            self.push_screen(RefundScreen(self.till))
        elif choice == "report":
            self.push_screen(ReportScreen(self.till))
        elif choice == "reprint":
            EcrApp.action_reprint(self)
        elif choice == "exit":
            # Leaving the kiosk hands the machine over: the PIN once more, typed now.
            self.push_screen(PinScreen(self.till), lambda ok: self.exit() if ok else None)

    # The cashier's function keys that touch money or the journal ask for the operator PIN here.
    def action_refund(self) -> None:
        self.action_operator()

    def action_reprint(self) -> None:
        self.action_operator()

    def action_report(self) -> None:
        self.action_operator()

    def action_close_shift(self) -> None:
        self.action_operator()

    def action_clear(self) -> None:
        super().action_clear()
        self._prompt("ready", t(self.lang(), "scan_items"))
