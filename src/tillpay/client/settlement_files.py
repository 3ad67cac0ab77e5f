"""Download a merchant's settlement and transaction files from Tillpay's signed file API.

Used by ``tillpay settle download`` and usable on its own::

    client = FileClient("http://127.0.0.1:8000", partner="2088...", md5_key="...")
    for f in client.list(date(2026, 11, 25)):
        client.download(f, Path("files"))

Every downloaded file is checked against the SHA-256 the listing gave, and written with its ``.sha256``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from tillpay.protocols.mapi import signing


class FileApiError(Exception):
    """The file API refused a request (bad signature, unknown file...)."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file as the listing describes it."""

    name: str
    kind: str
    settle_date: str
    sha256: str
    size: int


class FileClient:
    """A merchant's client for ``/settlement/files`` and ``/settlement/download``."""

    def __init__(
        self,
        base_url: str,
        *,
        partner: str,
        md5_key: str | None = None,
        private_key_pem: str | None = None,
        sign_type: str | None = None,
        timeout: float = 60.0,  # float-ok: an HTTP timeout, not money
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not md5_key and not private_key_pem:
            raise ValueError("give the MD5 key or the merchant's RSA private key")
        self.partner = partner
        self.md5_key = md5_key or ""
        self.private_key_pem = private_key_pem or ""
        self.sign_type = sign_type or ("RSA2" if private_key_pem else "MD5")
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _signed(self, service: str, **params: str) -> dict[str, str]:
        q = {"service": service, "partner": self.partner, "timestamp": str(int(time.time() * 1000)), **params}
        q["sign"] = signing.sign_request(
            q, sign_type=self.sign_type, md5_key=self.md5_key, private_key_pem=self.private_key_pem
        )
        q["sign_type"] = self.sign_type
        return q

    def _get(self, path: str, **params: str) -> httpx.Response:
        service = "tillpay.settlement." + path.rsplit("/", 1)[1]  # the endpoint the signature is for
        r = self._http.get(path, params=self._signed(service, **params))
        if r.status_code != 200:
            try:
                body: Any = r.json()
                message = f"{body.get('error')}: {body.get('message')}"
            except ValueError:
                message = r.text[:200]
            raise FileApiError(f"HTTP {r.status_code} {message}")
        return r

    def list(self, day: date | None = None) -> list[RemoteFile]:
        """The merchant's files (of one business day if given)."""
        extra = {"settle_date": day.isoformat()} if day else {}
        data = self._get("/settlement/files", **extra).json()
        return [
            RemoteFile(f["name"], f["kind"], f["settle_date"], f["sha256"], int(f["size"]))
            for f in data["files"]
        ]

    def download(self, f: RemoteFile, directory: Path) -> Path:
        """Fetch one file into ``directory`` (flat), check its digest, write its ``.sha256``."""
        data = self._get("/settlement/download", name=f.name).content
        digest = hashlib.sha256(data).hexdigest()
        if digest != f.sha256:
            raise FileApiError(f"{f.name}: SHA-256 {digest} does not match the listing's {f.sha256}")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f.name.rsplit("/", 1)[-1]
        target.write_bytes(data)
        target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
        return target
