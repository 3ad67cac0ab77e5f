"""What the SDK tests stand on: a TLS certificate, two ``tillpay serve`` processes, the SDK drivers.

``alipay-sdk-python`` connects to port 80 for ``http://`` whatever port the URL names, and
``global-open-sdk-python`` always to port 443 with certificate verification, so Tillpay is served on a
loopback address of its own, 127.0.0.2, on ports 80 (plain) and 443 (TLS with a self-signed certificate
for that IP, which the drivers trust through ``SSL_CERT_FILE``). ``python-alipay-sdk`` goes over HTTPS
too. The tests run as root (as CI does), so the low ports can be bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import select
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import factories as f
from conftest import LOOPBACK_RECEIVERS_ENV, make_database
from serving import stop_process_group, wait_until_healthy
from tillpay.config import Settings
from tillpay.services.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
DRIVERS = Path(__file__).parent / "drivers"
VENVS = ROOT / ".venv-sdk"
HOST = "127.0.0.2"
TILLPAY = [sys.executable, "-m", "tillpay.cli"]


def venv_python(name: str) -> Path:
    """The interpreter of one SDK's virtualenv; a clear failure if ``scripts/test`` has not made it."""
    py = VENVS / name / "bin" / "python"
    if not py.exists():
        pytest.fail(
            f"{py} is missing: run scripts/test (or scripts/sdk-venvs), which creates the SDK virtualenvs"
        )
    return py


def make_tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.2 (IP SAN) and its key, as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tillpay-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address(HOST)),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return d / "cert.pem", d / "key.pem"


class Served:
    """One ``tillpay serve`` process."""

    def __init__(self, db_url: str, port: int, *extra: str, url: str, cert: Path) -> None:
        self.url = url
        env = {
            **os.environ,
            "TILLPAY_DATABASE_URL": db_url,
            "TILLPAY_WORKER_POLL_SECONDS": "0.1",
            "TILLPAY_NOTIFY_SCHEDULE": "0,1,1,1",
            "TILLPAY_PUBLIC_URL": f"https://{HOST}",
            # The notification tests' receivers listen on loopback: the operator's allow-list, opted into.
            **LOOPBACK_RECEIVERS_ENV,
        }
        self.proc = subprocess.Popen(
            [*TILLPAY, "serve", "--host", HOST, "--port", str(port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        wait_until_healthy(self.proc, url, verify=ssl.create_default_context(cafile=cert))

    def stop(self) -> None:
        stop_process_group(self.proc)


class Driver:
    """One SDK in its own virtualenv, answering JSON-line requests (see drivers/rpc.py)."""

    def __init__(self, venv: str, script: str, cert: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["SSL_CERT_FILE"] = str(cert)  # the SDKs verify TLS against the test certificate
        # The Open Platform SDKs send the local time as ``timestamp``, which Alipay (and Tillpay) read as
        # GMT+8: run them as a till in China does.
        env["TZ"] = "Asia/Shanghai"
        self.proc = subprocess.Popen(
            [str(venv_python(venv)), str(DRIVERS / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=DRIVERS,
        )
        self.name = venv

    def call(self, op: str, **args: Any) -> Any:
        """Run one SDK operation; returns its result, or raises SdkError with the SDK's exception."""
        answer = self.raw(op, **args)
        if not answer["ok"]:
            raise SdkError(answer["error"], answer["message"], answer.get("trace", ""))
        return answer["result"]

    def raw(self, op: str, **args: Any) -> Any:
        """Send one request and read its answer line (60 s at most)."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            raise RuntimeError(f"{self.name} driver gave no answer to {op}: {err}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class SdkError(Exception):
    """An exception raised inside the SDK."""

    def __init__(self, kind: str, message: str, trace: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.trace = trace


class Env:
    """The database, the merchant made with ``tillpay merchant add``, the servers and the drivers."""

    def __init__(self, db_url: str, cert: Path, key: Path) -> None:
        self.db_url = db_url
        self.cert = cert
        env = {**os.environ, "TILLPAY_DATABASE_URL": db_url}
        out = subprocess.run(
            [*TILLPAY, "--json", "merchant", "add", "--name", "SDK Cafe", "--currency", "CNY"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        self.merchant: dict[str, Any] = json.loads(out.stdout)
        self.run(f.rates)
        # What has been started so far, stopped again if a later part fails to start (a server left
        # running would hold 127.0.0.2's ports 80 and 443 for the rest of the run).
        self.servers: list[Served] = []
        self.drivers: list[Driver] = []
        try:
            self._start(db_url, cert, key)
        except BaseException:
            self.close()
            raise

    def _start(self, db_url: str, cert: Path, key: Path) -> None:
        self.https = Served(
            db_url, 443, "--tls-cert", str(cert), "--tls-key", str(key), url=f"https://{HOST}", cert=cert
        )
        self.servers.append(self.https)
        self.http = Served(db_url, 80, "--no-worker", url=f"http://{HOST}", cert=cert)
        self.servers.append(self.http)
        m = self.merchant
        self.fzlee = Driver("fzlee", "fzlee.py", cert)
        self.drivers.append(self.fzlee)
        self.fzlee.call(
            "init",
            url=self.https.url,
            app_id=m["app_id"],
            private_key=m["merchant_private_key"],
            public_key=m["tillpay_public_key"],
        )
        self.official = Driver("official", "official.py", cert)
        self.drivers.append(self.official)
        self.official.call(
            "init",
            url=self.http.url,
            app_id=m["app_id"],
            private_key=m["merchant_private_key"],
            public_key_pem=m["tillpay_public_key"],
        )
        self.antom = Driver("antom", "antom.py", cert)
        self.drivers.append(self.antom)
        self.antom.call(
            "init",
            url=self.https.url,
            client_id=m["client_id"],
            private_key=m["merchant_private_key"],
            public_key_pem=m["tillpay_public_key"],
        )

    def run(self, fn: Any) -> Any:
        """``await fn(platform)`` on a platform of this test process over the same database."""

        async def go() -> Any:
            p = Platform(Settings(database_url=self.db_url, public_url=f"https://{HOST}"))
            try:
                return await fn(p)
            finally:
                await p.close()

        return asyncio.run(go())

    def close(self) -> None:
        for d in self.drivers:
            d.close()
        for server in self.servers:
            server.stop()


def make_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tls_cert: tuple[Path, Path]
) -> Iterator[Env]:
    """Tillpay served for the three SDKs, on SQLite and on PostgreSQL; the ledger audit is clean after."""
    from tillpay.services.audit import audit

    dbs = make_database(request.param, request, tmp_path_factory.mktemp("sdkdb"))
    db_url = next(dbs)
    try:
        env = Env(db_url, *tls_cert)
    except BaseException:
        for _ in dbs:  # the database is dropped all the same
            pass
        raise
    try:
        yield env
    finally:
        env.close()
        findings = env.run(audit)
        for _ in dbs:
            pass
    assert not findings, f"ledger audit failed: {findings}"
