"""Wallet catalogs, language negotiation, CLDR formatting, and the JavaScript payment-code vectors."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po

from tillpay.web.wallet import i18n
from tillpay.web.wallet.messages import extract
from tillpay.web.wallet.pages import STATIC

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("locale", sorted(i18n.LANGUAGES))
def test_every_template_message_is_translated_in_every_catalog(locale: str) -> None:
    wanted = {m.id for m in extract() if m.id}
    with i18n.po_path(locale).open("rb") as f:
        catalog = read_po(f, locale=locale)
    have = {m.id: m for m in catalog if m.id}
    missing = wanted - set(have)
    assert not missing, f"run python -m tillpay.web.wallet.messages, then translate: {missing}"
    assert not set(have) - wanted, "the catalog has messages no template uses any more"
    for msgid, m in have.items():
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        assert all(strings) and not m.fuzzy, f"{locale}: {msgid!r} is untranslated or fuzzy"
        # Placeholders must survive translation, or formatting fails at run time.
        ids = msgid if isinstance(msgid, tuple) else (msgid,)
        for s in strings:
            assert sorted(set(_placeholders(ids[0]))) == sorted(set(_placeholders(s))), (locale, msgid)
    assert not catalog.fuzzy


def _placeholders(text: str) -> list[str]:
    import re

    return re.findall(r"%\(\w+\)s", text)


def test_catalogs_translate_at_run_time_from_the_po_files() -> None:
    assert i18n.translations("ja").gettext("Payment code") == "支払いコード"
    assert i18n.translations("zh_Hans").gettext("Payment code") == "付款码"
    assert i18n.translations("ko").gettext("Payment code") == "결제 코드"
    assert i18n.translations("ko").ngettext(
        "Wrong PIN. %(n)s attempt left.", "Wrong PIN. %(n)s attempts left.", 2
    ) == ("PIN이 틀렸습니다. %(n)s번 더 시도할 수 있습니다.")
    with pytest.raises(ValueError):
        i18n.translations("fr")


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh_Hans"),
        ("zh-Hans-HK", "zh_Hans"),
        ("zh", "zh_Hans"),
        ("zh-TW,zh-Hant;q=0.9,ko;q=0.5", "ko"),
        ("ja-JP", "ja"),
        ("ko-KR,ko;q=0.9", "ko"),
        ("en-GB", "en"),
        ("de-DE, fr;q=0.8", "en"),
        ("fr;q=0.9, ja;q=0.1, ko;q=0.5", "ko"),
        ("ja;q=0, ko", "ko"),
        ("", "en"),
        (None, "en"),
        ("ja;q=bogus, ko;q=0.2", "ko"),
    ],
)
def test_the_browsers_preference_picks_the_language(header: str | None, locale: str) -> None:
    assert i18n.negotiate(header) == locale


def test_amounts_dates_and_rates_follow_the_locale() -> None:
    tokyo = i18n.zone("Asia/Tokyo")
    en = i18n.Formatter("en", tokyo)
    ja = i18n.Formatter("ja", tokyo)
    zh = i18n.Formatter("zh_Hans", i18n.zone("Asia/Shanghai"))
    assert en.money(123456, "USD") == "$1,234.56"
    assert ja.money(1234, "JPY") == "￥1,234"  # no minor units in yen
    assert zh.money(3551, "CNY") == "¥35.51"
    assert i18n.Formatter("ko", tokyo).money(5000, "KRW") == "₩5,000"
    when = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    assert en.datetime(when) == "Nov 26, 2026, 11:00:00\u202fAM"
    assert zh.datetime(when) == "2026年11月26日 10:00:00"
    assert en.rate(Decimal("7.1023"), "USD", "CNY") == "1 USD = 7.1023 CNY"
    assert en.rate(Decimal("1"), "CNY", "CNY") == ""
    assert i18n.zone("Not/AZone").key == "UTC" and i18n.zone(None).key == "UTC"


def test_the_javascript_payment_codes_match_the_shared_vectors() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for this check (the browser tests check the vectors in Chromium too)"
    proc = subprocess.run(
        [
            node,
            str(Path(__file__).with_name("paycode_vectors.js")),
            str(STATIC / "paycode.js"),
            str(ROOT / "tests" / "vectors" / "paycode.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("passed, 0 failed")


def test_the_time_zone_cookie_is_read_as_wallet_js_writes_it_url_encoded() -> None:
    assert i18n.zone("Asia%2FShanghai") == ZoneInfo("Asia/Shanghai")
    assert i18n.zone("America/Los_Angeles") == ZoneInfo("America/Los_Angeles")
    for bad in (None, "", "Nowhere%2FLand", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Flocaltime", "x" * 80):
        assert i18n.zone(bad) == ZoneInfo("UTC"), bad
    at = datetime(2026, 11, 30, 21, 10, 11, tzinfo=UTC)  # 05:10:11 on 1 December in Shanghai
    fmt = i18n.Formatter("en", i18n.zone("Asia%2FShanghai"))
    assert "Dec 1, 2026" in fmt.datetime(at) and "5:10" in fmt.datetime(at)
