"""Migration 0103 gives merchants that existed before it an app id, a client id and key version 1."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import create_engine, text

from tillpay.store.engine import sync_url
from tillpay.store.migrate import downgrade, upgrade


def test_existing_merchants_get_credentials_derived_from_their_partner_id(db_url: str) -> None:
    downgrade(db_url, "0001")
    engine = create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            for pid, key in (("2088000000000042", "PEM"), ("2088000000000043", None)):
                conn.execute(
                    text(
                        "INSERT INTO merchants (partner_id, name, md5_key, public_key, gateway_private_key,"
                        " gateway_public_key, settlement_currency, mcc, status, created_at)"
                        " VALUES (:pid, 'Old', 'k', :key, 'priv', 'pub', 'USD', '5411', 'active', :now)"
                    ),
                    {"pid": pid, "key": key, "now": datetime(2026, 1, 1)},
                )
        upgrade(db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT partner_id, app_id, client_id FROM merchants ORDER BY id")).all()
            keys = conn.execute(text("SELECT merchant_id, key_version, public_key FROM merchant_keys")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("2088000000000042", "2021000000000042", "TP000000000042"),
        ("2088000000000043", "2021000000000043", "TP000000000043"),
    ]
    assert [(r.key_version, r.public_key) for r in keys] == [(1, "PEM")]
