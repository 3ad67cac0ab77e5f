"""Languages of the wallet app: the .po catalogs (read at run time), negotiation, and CLDR formatting.

The catalogs in ``locale/<locale>/LC_MESSAGES/wallet.po`` are compiled in memory when first used, so
there is no compiled ``.mo`` file that could go stale; ``tests/web`` checks that every message of the
templates is translated in every catalog.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

from tillpay.domain.money import exponent

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "wallet"
DEFAULT = "en"
#: The app's languages, each named in itself (for the switch).
LANGUAGES: dict[str, str] = {"zh_Hans": "简体中文", "en": "English", "ja": "日本語", "ko": "한국어"}


def po_path(locale: str) -> Path:
    """The catalog file of a locale."""
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(locale: str) -> Translations:
    """The gettext translations of a locale, compiled from its .po file in memory."""
    if locale not in LANGUAGES:
        raise ValueError(f"unsupported wallet language {locale!r}")
    with po_path(locale).open("rb") as f:
        catalog = read_po(f, locale=locale, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def html_lang(locale: str) -> str:
    """The BCP 47 tag for ``<html lang>``: ``zh_Hans`` -> ``zh-Hans``."""
    return locale.replace("_", "-")


def _match(tag: str) -> str | None:
    parts = tag.strip().lower().replace("_", "-").split("-")
    if not parts or not parts[0]:
        return None
    if parts[0] == "zh":
        # Simplified Chinese only: Traditional (Hant, or the regions that write it) is not served.
        rest = parts[1:]
        if "hans" in rest:
            return "zh_Hans"
        if "hant" in rest or any(r in ("tw", "hk", "mo") for r in rest):
            return None
        return "zh_Hans"
    return parts[0] if parts[0] in ("en", "ja", "ko") else None


def negotiate(accept_language: str | None) -> str:
    """The best of the app's languages for an ``Accept-Language`` header (English when none fits)."""
    ranked: list[tuple[float, int, str]] = []  # float-ok: HTTP quality values, not money
    for i, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > 0:
            ranked.append((-q, i, tag))
    for _, _, tag in sorted(ranked):
        found = _match(tag)
        if found:
            return found
    return DEFAULT


def zone(name: str | None) -> ZoneInfo:
    """A time zone by IANA name (as the browser reports it), UTC if unknown."""
    # wallet.js stores the name URL-encoded (Asia%2FShanghai), as a cookie value must be.
    name = unquote(name) if name else name
    if name and len(name) < 64:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


class Formatter:
    """Amounts, dates and rates formatted by the rules of one locale (CLDR, through Babel)."""

    def __init__(self, locale: str, tz: ZoneInfo) -> None:
        self.locale = Locale.parse(locale)
        self.tz = tz

    def money(self, minor: int | None, currency: str | None) -> str:
        """Minor units as the locale writes money, e.g. ``¥35.51`` or ``US$5.00``."""
        if minor is None or not currency:
            return ""
        # Decimal only here, at print time; scaleb is exact.
        return format_currency(Decimal(minor).scaleb(-exponent(currency)), currency, locale=self.locale)

    def datetime(self, when: datetime | None, fmt: str = "medium") -> str:
        """A UTC timestamp in the user's time zone and the locale's pattern."""
        if when is None:
            return ""
        return format_datetime(when.astimezone(UTC), fmt, tzinfo=self.tz, locale=self.locale)

    def rate(self, rate: Decimal | None, base: str, quote: str | None) -> str:
        """``1 USD = 7.1023 CNY`` with the locale's digits and separators."""
        if rate is None or not quote or base == quote:
            return ""
        number = format_decimal(rate, format="#,##0.00####", locale=self.locale)
        return f"1 {base} = {number} {quote}"

    def duration(self, seconds: int) -> str:
        """A short duration, e.g. ``3 minutes``."""
        return format_timedelta(seconds, threshold=1.5, locale=self.locale)
