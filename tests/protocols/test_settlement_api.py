"""The merchant file API over real HTTP: signed listing and download, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveServer
from tillpay.client.settlement_files import FileApiError, FileClient
from tillpay.protocols.mapi import signing
from tillpay.services import merchants, settlement, simulate
from tillpay.services.audit import audit
from tillpay.services.platform import Platform


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(db_url, settlement_dir=str(tmp_path / "settlements"))
    try:
        yield s
    finally:
        s.stop()
    assert not s.run(audit)


@pytest.fixture
def settled(server: LiveServer, tmp_path: Path) -> dict[str, Any]:
    """Two merchants with a settled day; the first one also has an RSA key pair."""

    async def go(p: Platform) -> dict[str, Any]:
        day = settlement.last_closed_day(p) - timedelta(days=1)
        result = await simulate.simulate(p, day, 300, n_merchants=2, bulk=True, journal_dir=tmp_path / "j")
        run = await settlement.run_day(p, day)
        rsa = await merchants.add_merchant(p, name="RSA shop", settlement_currency="USD")
        return {"day": day, "merchants": result.merchants, "files": run.files, "rsa": rsa}

    return server.run(go)  # type: ignore[no-any-return]


def signed(params: dict[str, str], md5_key: str) -> dict[str, str]:
    service = "tillpay.settlement." + ("download" if "name" in params else "files")
    q = {"service": service, "timestamp": str(int(time.time() * 1000)), **params}
    q["sign"] = signing.sign_request(q, sign_type="MD5", md5_key=md5_key)
    q["sign_type"] = "MD5"
    return q


def test_a_merchant_lists_and_downloads_only_its_own_files(
    server: LiveServer, settled: dict[str, Any], tmp_path: Path
) -> None:
    m, other = settled["merchants"]
    client = FileClient(server.url, partner=m.partner_id, md5_key=m.md5_key)
    try:
        files = client.list(settled["day"])
        assert sorted(f.kind for f in files) == ["settlement", "transaction"]
        assert all(m.partner_id in f.name for f in files)
        for f in files:
            path = client.download(f, tmp_path / "dl")
            original = (tmp_path / "settlements" / f.name).read_bytes()
            assert path.read_bytes() == original
            assert (
                path.with_name(path.name + ".sha256").read_text().split()[0]
                == hashlib.sha256(original).hexdigest()
            )
        # Another merchant's file does not exist as far as this merchant can tell.
        theirs = next(f for f in settled["files"] if f.partner_id == other.partner_id)
        r = httpx.get(
            f"{server.url}/settlement/download",
            params=signed({"partner": m.partner_id, "name": theirs.name}, m.md5_key),
        )
        assert r.status_code == 404 and r.json()["error"] == "NOT_FOUND"
        # Nor does the bank's payout file, or a path outside the directory.
        for name in ("../../etc/passwd", f"{settled['day']}/bank/x.xml"):
            r = httpx.get(
                f"{server.url}/settlement/download",
                params=signed({"partner": m.partner_id, "name": name}, m.md5_key),
            )
            assert r.status_code == 404
    finally:
        client.close()


def test_rsa2_signed_requests_work_too(server: LiveServer, settled: dict[str, Any]) -> None:
    rsa = settled["rsa"]
    client = FileClient(server.url, partner=rsa.merchant.partner_id, private_key_pem=rsa.merchant_private_key)
    try:
        assert client.list() == []  # a merchant with no settled day yet
    finally:
        client.close()


def test_bad_signatures_stale_timestamps_and_missing_parameters_are_refused(
    server: LiveServer, settled: dict[str, Any]
) -> None:
    m = settled["merchants"][0]
    url = f"{server.url}/settlement/files"
    good = signed({"partner": m.partner_id}, m.md5_key)
    assert httpx.get(url, params=good).status_code == 200
    tampered = dict(good, settle_date="2020-01-01")
    r = httpx.get(url, params=tampered)
    assert r.status_code == 401 and r.json()["error"] == "ILLEGAL_SIGN"
    stale = {
        "service": "tillpay.settlement.files",
        "partner": m.partner_id,
        "timestamp": str(int((time.time() - 3600) * 1000)),
    }
    stale["sign"] = signing.sign_request(stale, sign_type="MD5", md5_key=m.md5_key)
    stale["sign_type"] = "MD5"
    assert httpx.get(url, params=stale).status_code == 400
    assert httpx.get(url, params={"partner": m.partner_id}).status_code == 400
    unknown = signed({"partner": "2088999999999999"}, m.md5_key)
    assert httpx.get(url, params=unknown).status_code == 401
    wrong_key = FileClient(server.url, partner=m.partner_id, md5_key="x" * 32)
    with pytest.raises(FileApiError, match="ILLEGAL_SIGN"):
        wrong_key.list()
    wrong_key.close()
