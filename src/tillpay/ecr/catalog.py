"""The product catalog (CSV) and what a scan means: an item, a payment code, or neither."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tillpay.domain.money import InvalidAmount, UnknownCurrency, parse_amount

# Alipay's customer-presented codes are 16 to 24 digits starting 25 to 30 (alipay-protocols.md §5).
PAYMENT_CODE = re.compile(r"(2[5-9]|30)\d{14,22}")
ITEM_CODE = re.compile(r"[A-Za-z0-9\-_.]{1,32}")
# "3*4006381333931": a quantity typed before the scan, the usual till shorthand.
QUANTITY_PREFIX = re.compile(r"(?P<qty>[1-9]\d{0,2})\*(?P<code>.+)")
MAX_QUANTITY = 999


class CatalogError(ValueError):
    """The catalog file is malformed; the message names the line."""


@dataclass(frozen=True)
class Item:
    """One product: its code, name and unit price in minor units of the catalog currency."""

    code: str
    name: str
    price: int


def ean13_ok(code: str) -> bool:
    """Whether a 13-digit code carries a correct EAN-13 check digit."""
    if not re.fullmatch(r"\d{13}", code):
        return False
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(code[:12]))
    return (10 - total % 10) % 10 == int(code[12])


def is_payment_code(text: str) -> bool:
    """Whether a scan looks like a customer's payment code."""
    return PAYMENT_CODE.fullmatch(text) is not None


class Catalog:
    """Items by code, loaded from a CSV with the columns ``code,name,price`` (a header row)."""

    def __init__(self, items: list[Item], currency: str) -> None:
        self.currency = currency
        self.items = {i.code: i for i in items}

    def get(self, code: str) -> Item | None:
        """The item with this code, if any."""
        return self.items.get(code)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def load(cls, path: Path, currency: str) -> Catalog:
        """Read and validate a catalog; every problem names its line."""
        if not path.exists():
            raise CatalogError(f"catalog {path} does not exist")
        items: list[Item] = []
        seen: set[str] = set()
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"code", "name", "price"} <= set(reader.fieldnames):
                raise CatalogError(f"{path}: the first line must name the columns code,name,price")
            for row in reader:
                line = reader.line_num
                code = (row.get("code") or "").strip()
                name = (row.get("name") or "").strip()
                price = (row.get("price") or "").strip()
                if not ITEM_CODE.fullmatch(code):
                    raise CatalogError(f"{path}:{line}: item code {code!r} is empty or has odd characters")
                if len(code) == 13 and code.isdigit() and not ean13_ok(code):
                    raise CatalogError(f"{path}:{line}: {code} is not a valid EAN-13 (check digit)")
                if is_payment_code(code):
                    raise CatalogError(f"{path}:{line}: {code} would be read as a payment code")
                if code in seen:
                    raise CatalogError(f"{path}:{line}: item code {code} appears twice")
                if not name:
                    raise CatalogError(f"{path}:{line}: item {code} has no name")
                try:
                    minor = parse_amount(price, currency)
                except (InvalidAmount, UnknownCurrency) as e:
                    raise CatalogError(f"{path}:{line}: price {price!r}: {e}") from None
                if minor <= 0:
                    raise CatalogError(f"{path}:{line}: price of {code} must be more than zero")
                seen.add(code)
                items.append(Item(code, name, minor))
        if not items:
            raise CatalogError(f"{path}: no items")
        return cls(items, currency)


class ScanKind(StrEnum):
    """What a scanned or typed line is."""

    ITEM = "item"
    PAYMENT = "payment"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Scan:
    """A classified scan: the item and quantity, or the payment code."""

    kind: ScanKind
    text: str
    item: Item | None = None
    quantity: int = 1


def classify(text: str, catalog: Catalog) -> Scan:
    """Decide what one line from the scanner (or the keyboard) is."""
    text = text.strip()
    qty = 1
    m = QUANTITY_PREFIX.fullmatch(text)
    if m:
        qty, text = int(m["qty"]), m["code"].strip()
    item = catalog.get(text)
    if item is not None:
        return Scan(ScanKind.ITEM, text, item, qty)
    if is_payment_code(text) and not m:
        return Scan(ScanKind.PAYMENT, text)
    return Scan(ScanKind.UNKNOWN, text)
