"""The ECR's own configuration: one TOML file per till, written by ``tillpay ecr init``.

The ECR is a merchant-side program: it knows the gateway only by URL and keys, exactly like a
merchant's own till, and never reads the gateway's settings or database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tillpay.domain.money import UnknownCurrency, exponent

DEFAULT_PATH = Path("tillpay-ecr.toml")
LANGUAGES = ("en", "ja", "ko", "zh")
PRINTER_KINDS = ("file", "text", "network", "usb", "serial", "none")


class ConfigError(ValueError):
    """The ECR configuration is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class PrinterConfig:
    """Where receipts go.

    ``file``: ESC/POS bytes appended to ``path`` (a file, or a device such as /dev/usb/lp0);
    ``text``: plain-text receipts appended to ``path``; ``network``: ``host``:``port`` (raw 9100);
    ``usb``: ``vendor_id``/``product_id`` (needs pyusb); ``serial``: ``path`` at ``baudrate`` (needs
    pyserial); ``none``: receipts are only shown on screen and kept in the journal.
    """

    kind: str = "none"
    path: str = ""
    host: str = ""
    port: int = 9100
    vendor_id: str = ""
    product_id: str = ""
    baudrate: int = 19200
    profile: str = "TM-T88V"
    #: Characters per line: 42 on 80 mm paper (font A), 32 on 58 mm paper. CJK characters take two.
    columns: int = 42
    #: Plain text is also appended here for every receipt when set (a paper-less audit trail).
    text_copy: str = ""

    @classmethod
    def parse(cls, spec: str) -> PrinterConfig:
        """Parse the ``--printer`` shorthand: ``file:PATH``, ``text:PATH``, ``network:HOST[:PORT]``,
        ``usb:VID:PID``, ``serial:DEVICE[:BAUD]`` or ``none``."""
        kind, _, rest = spec.partition(":")
        if kind == "none" and not rest:
            return cls()
        if kind in ("file", "text") and rest:
            return cls(kind=kind, path=rest)
        if kind == "network" and rest:
            host, _, port = rest.partition(":")
            return cls(kind=kind, host=host, port=_int(port or "9100", "printer port"))
        if kind == "usb" and re.fullmatch(r"(0x)?[0-9a-fA-F]{1,4}:(0x)?[0-9a-fA-F]{1,4}", rest):
            vid, pid = rest.split(":")
            return cls(kind=kind, vendor_id=vid, product_id=pid)
        if kind == "serial" and rest:
            dev, _, baud = rest.partition(":")
            return cls(kind=kind, path=dev, baudrate=_int(baud or "19200", "baud rate"))
        raise ConfigError(
            f"printer {spec!r}: use file:PATH, text:PATH, network:HOST[:PORT], usb:VID:PID, "
            "serial:DEVICE[:BAUD] or none"
        )


def _int(text: str, what: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"{what} must be a whole number, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class TrainingConfig:
    """``[training]``: what ``tillpay ecr --training`` uses instead of the live settings.

    The merchant's test credentials (``tillpay merchant test-credentials``: a partner id of its own and
    its MD5 key, or RSA keys), and a journal of its own so that training sales never reach the live
    journal, its shift and day reports or its reconciliation. Receipts go to the same printer, marked
    as training at the top and the bottom; the live ``text_copy`` audit trail gets none of them
    (``text_copy`` here is training's own, off when empty).
    """

    partner: str = ""
    sign_type: str = "MD5"
    md5_key: str = ""
    merchant_private_key: str = ""
    gateway_public_key: str = ""
    journal: str = "ecr-training-journal.db"
    text_copy: str = ""

    @property
    def configured(self) -> bool:
        """Whether there are training credentials at all."""
        return bool(self.partner)


@dataclass(frozen=True)
class EcrConfig:
    """Everything one till needs; times are seconds."""

    gateway_url: str
    partner: str
    sign_type: str = "RSA2"
    md5_key: str = ""
    merchant_private_key: str = ""
    gateway_public_key: str = ""
    merchant_name: str = "Tillpay Store"
    store_id: str = "STORE-1"
    store_name: str = ""
    terminal_id: str = "T1"
    #: The price currency of the catalog (``trans_currency``).
    currency: str = "USD"
    #: The merchant's settlement currency (``currency`` on the wire); defaults to ``currency``.
    settle_currency: str = ""
    language: str = "en"
    catalog: str = "catalog.csv"
    journal: str = "ecr-journal.db"
    printer: PrinterConfig = field(default_factory=PrinterConfig)
    poll_interval: float = 3.0  # float-ok: seconds
    merchant_timeout: float = 60.0  # float-ok: seconds
    cancel_retry_interval: float = 5.0  # float-ok: seconds
    cancel_max_attempts: int = 60
    http_timeout: float = 10.0  # float-ok: seconds
    #: Kiosk: seconds without input before the screen resets for the next customer.
    kiosk_idle_seconds: float = 60.0  # float-ok: seconds
    #: Kiosk: after a sale, the paid screen stays this long (or until the shopper presses Enter), then
    #: the kiosk returns to the start in its default language; shorter than the idle time.
    after_sale_seconds: float = 15.0  # float-ok: seconds
    #: Seconds between heartbeats to the gateway (docs/heartbeat.md); 0 turns them off. They also need
    #: ``md5_key``, the digest's salt.
    heartbeat_interval: float = 60.0  # float-ok: seconds
    #: A heartbeat that gets no answer within this many seconds is given up (and logged).
    heartbeat_timeout: float = 3.0  # float-ok: seconds
    #: The ECR's log file (heartbeat failures and the like; never shown on the screen); empty: no log.
    log_file: str = "ecr.log"
    #: Kiosk: salted PBKDF2 hash of the operator PIN (``salt$hex``); refunds and settings need it.
    operator_pin_hash: str = ""
    #: ``[training]``: test credentials and the training journal (see ``for_training``).
    training: TrainingConfig = field(default_factory=TrainingConfig)
    #: Where this file was read from; relative paths inside it are resolved against its folder.
    source: str = ""
    #: Set on the configuration ``for_training`` makes (never written to the file).
    in_training: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"2088\d{12}", self.partner):
            raise ConfigError("partner must be 16 digits starting 2088")
        if not re.fullmatch(r"https?://\S+", self.gateway_url):
            raise ConfigError(f"gateway_url {self.gateway_url!r} is not an http(s) URL")
        if self.sign_type not in ("MD5", "RSA", "RSA2"):
            raise ConfigError("sign_type must be MD5, RSA or RSA2")
        if self.sign_type == "MD5" and not self.md5_key:
            raise ConfigError("MD5 signing needs md5_key")
        if self.sign_type != "MD5" and not (self.merchant_private_key and self.gateway_public_key):
            raise ConfigError("RSA signing needs merchant_private_key and gateway_public_key")
        for cur in (self.currency, self.settle_currency or self.currency):
            try:
                exponent(cur)
            except UnknownCurrency as e:
                raise ConfigError(str(e)) from None
        if self.language not in LANGUAGES:
            raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}")
        if not (0 < self.after_sale_seconds) or not (0 < self.kiosk_idle_seconds):
            raise ConfigError("kiosk_idle_seconds and after_sale_seconds must be positive")
        if not (24 <= self.printer.columns <= 64):
            raise ConfigError("printer columns must be between 24 and 64 (42 on 80 mm paper, 32 on 58 mm)")
        if self.printer.kind not in PRINTER_KINDS:
            raise ConfigError(f"printer kind must be one of {', '.join(PRINTER_KINDS)}")
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,16}", self.terminal_id):
            raise ConfigError("terminal_id: 1 to 16 letters, digits, '-' or '_'")
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,32}", self.store_id):
            raise ConfigError("store_id: 1 to 32 letters, digits, '-' or '_'")
        if not (0 < self.poll_interval <= self.merchant_timeout):
            raise ConfigError("poll_interval must be positive and at most merchant_timeout")
        if self.cancel_retry_interval <= 0 or self.cancel_max_attempts < 1:
            raise ConfigError("cancel_retry_interval must be positive, cancel_max_attempts at least 1")
        tr = self.training
        if tr.configured:
            if not re.fullmatch(r"2088\d{12}", tr.partner):
                raise ConfigError("[training] partner must be 16 digits starting 2088")
            if tr.sign_type not in ("MD5", "RSA", "RSA2"):
                raise ConfigError("[training] sign_type must be MD5, RSA or RSA2")
            if tr.sign_type == "MD5" and not tr.md5_key:
                raise ConfigError("[training] MD5 signing needs md5_key")
            if tr.sign_type != "MD5" and not (tr.merchant_private_key and tr.gateway_public_key):
                raise ConfigError("[training] RSA signing needs merchant_private_key and gateway_public_key")
        if self.heartbeat_interval < 0 or not (0 < self.heartbeat_timeout <= 30):
            raise ConfigError(
                "heartbeat_interval must be 0 (off) or positive, heartbeat_timeout between 0 and 30 seconds"
            )

    def for_training(self) -> EcrConfig:
        """The configuration of ``tillpay ecr --training``: the ``[training]`` credentials and journal in
        place of the live ones; ConfigError when there are none (training never runs on live ones)."""
        tr = self.training
        if not tr.configured:
            raise ConfigError(
                "training needs the merchant's test credentials: add a [training] section with partner "
                "and md5_key (or RSA keys), e.g. `tillpay ecr init --training-credentials FILE` with the "
                "JSON of `tillpay merchant test-credentials PARTNER --json`"
            )
        if tr.partner == self.partner:
            raise ConfigError("[training] partner is the live partner: training needs the test credentials")
        if self.path(tr.journal).resolve() == self.path(self.journal).resolve():
            raise ConfigError("[training] journal must be another file than the live journal")
        return replace(
            self,
            partner=tr.partner,
            sign_type=tr.sign_type,
            md5_key=tr.md5_key,
            merchant_private_key=tr.merchant_private_key,
            gateway_public_key=tr.gateway_public_key,
            journal=tr.journal,
            printer=replace(self.printer, text_copy=tr.text_copy),
            in_training=True,
        )

    @property
    def settlement(self) -> str:
        """The settlement currency actually sent."""
        return self.settle_currency or self.currency

    def path(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(value).expanduser()
        if p.is_absolute() or not self.source:
            return p
        return Path(self.source).parent / p

    def check_pin(self, pin: str) -> bool:
        """Whether ``pin`` is the operator PIN (always False when none is set)."""
        if not self.operator_pin_hash or "$" not in self.operator_pin_hash:
            return False
        salt, digest = self.operator_pin_hash.split("$", 1)
        return hmac.compare_digest(_pin_digest(pin, salt), digest)

    def with_changes(self, **changes: Any) -> EcrConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------------------------ the file

    @classmethod
    def load(cls, path: Path) -> EcrConfig:
        """Read and validate a config file."""
        if not path.exists():
            raise ConfigError(f"{path} does not exist: create it with `tillpay ecr init`")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from None
        return cls.from_dict(data, source=str(path.resolve()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> EcrConfig:
        """Build from the TOML table layout (``[printer]`` as a sub-table)."""
        data = dict(data)
        printer = data.pop("printer", {})
        training = data.pop("training", {})
        known = {f.name for f in fields(cls)} - {"printer", "training", "source", "in_training"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        pknown = {f.name for f in fields(PrinterConfig)}
        if not isinstance(printer, dict) or set(printer) - pknown:
            raise ConfigError(f"[printer] takes only: {', '.join(sorted(pknown))}")
        tknown = {f.name for f in fields(TrainingConfig)}
        if not isinstance(training, dict) or set(training) - tknown:
            raise ConfigError(f"[training] takes only: {', '.join(sorted(tknown))}")
        try:
            return cls(
                **data, printer=PrinterConfig(**printer), training=TrainingConfig(**training), source=source
            )
        except TypeError as e:
            raise ConfigError(str(e)) from None

    def to_toml(self) -> str:
        """The file's text (keys are written flat, the printer as a ``[printer]`` table)."""
        d = asdict(self)
        d.pop("source")
        d.pop("in_training")
        printer = d.pop("printer")
        training = d.pop("training")
        lines = ["# Tillpay ECR configuration (tillpay ecr init). Times are in seconds.", ""]
        lines += [f"{k} = {_toml(v)}" for k, v in d.items()]
        lines += ["", "[printer]"] + [f"{k} = {_toml(v)}" for k, v in printer.items()]
        if self.training.configured:
            lines += [
                "",
                "# tillpay ecr --training: the merchant's test credentials and a journal of its own.",
            ]
            lines += ["[training]"] + [f"{k} = {_toml(v)}" for k, v in training.items()]
        return "\n".join(lines) + "\n"

    def save(self, path: Path) -> None:
        """Write the file readable by its owner only (it holds the merchant's keys)."""
        path.write_text(self.to_toml(), encoding="utf-8")
        path.chmod(0o600)


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    # A JSON string is a valid TOML basic string for everything we write (keys, paths, PEM text).
    return json.dumps(str(v), ensure_ascii=False)


def _pin_digest(pin: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), 100_000).hex()


def hash_pin(pin: str) -> str:
    """The stored form of an operator PIN: ``salt$pbkdf2`` (4 to 12 digits)."""
    if not re.fullmatch(r"\d{4,12}", pin):
        raise ConfigError("the operator PIN must be 4 to 12 digits")
    salt = secrets.token_hex(8)
    return f"{salt}${_pin_digest(pin, salt)}"
