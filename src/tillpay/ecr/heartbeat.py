"""The till's heartbeat: tell the gateway every ``heartbeat_interval`` seconds that this terminal is on.

Shaped like Alipay's global heartbeat (``AD:global/heartbeat``; docs/heartbeat.md has the wire format
and which parts are guesses): ``POST /monitor/api/heartbeat/isv`` on the gateway the till is configured
with, JSON ``{"heartBeat": [HeartBeatInfo]}``, head fields as HTTP headers, ``digest`` the hex SHA-256
of the body followed by the salt, which for Tillpay is the merchant's MD5 key.

A heartbeat must never get in the cashier's way: it runs on a daemon thread of its own with its own
HTTP client and a short timeout, and a failure is only logged (to the ECR's log file, never the screen).
Without an MD5 key in the till's configuration there is no salt, and no heartbeat is sent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from tillpay import signing
from tillpay.ecr.config import EcrConfig

# Standard logging, not structlog's printer: a line on stderr would tear the cashier's screen; the
# ECR's command sends this logger to its log file (``log_file``).
log = logging.getLogger("tillpay.ecr.heartbeat")

#: The path of Alipay's global heartbeat service address (``AD:global/heartbeat``).
PATH = "/monitor/api/heartbeat/isv"
#: The page's default API version.
VERSION = "1.0.1"


def _local_now() -> datetime:
    return datetime.now(UTC).astimezone()


class HeartbeatSender:
    """Sends this till's heartbeat on a timer, in the background; never raises into the till."""

    def __init__(
        self,
        cfg: EcrConfig,
        *,
        equipment_type: str = "ECR",
        now: Callable[[], datetime] = _local_now,
    ) -> None:
        self.cfg = cfg
        self.equipment_type = equipment_type
        self.now = now
        self.url = cfg.gateway_url.rstrip("/") + PATH
        #: Heartbeats the gateway accepted, and the ones that failed (the last failure's reason).
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._last_time: datetime | None = None
        self._time_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether this till sends heartbeats: an interval is set and there is a salt (the MD5 key)."""
        return self.cfg.heartbeat_interval > 0 and bool(self.cfg.md5_key)

    def start(self) -> None:
        """Start the timer (once); returns at once. The first heartbeat goes out straight away."""
        if self._thread is not None:
            return
        if not self.enabled:
            why = "heartbeat_interval is 0" if self.cfg.heartbeat_interval <= 0 else "no md5_key (the salt)"
            log.info("heartbeat off: %s", why)
            return
        self._http = httpx.Client(timeout=self.cfg.heartbeat_timeout)
        self._thread = threading.Thread(target=self._run, name="tillpay-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer and say SIGNOFF, each within the heartbeat timeout; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=self.cfg.heartbeat_timeout + 1)
        self.send("SIGNOFF")
        if self._http is not None:
            self._http.close()
            self._http = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.send("SIGNON")
            if self._stop.wait(self.cfg.heartbeat_interval):
                return

    def _req_time(self) -> str:
        """This beat's ``reqTime``, always later than the last one sent (the gateway records a terminal's
        beat only when its signed time is newer than the last: a replay is not)."""
        with self._time_lock:  # the timer's thread and the SIGNOFF at close may both ask
            when = self.now()
            if self._last_time is not None and when <= self._last_time:
                when = self._last_time + timedelta(milliseconds=1)
            self._last_time = when
        return when.isoformat(timespec="milliseconds")

    def body(self, action: str, req_time: str | None = None) -> bytes:
        """The request body: one HeartBeatInfo for this terminal, and (Tillpay's addition, so the digest
        covers it) the request's time."""
        cfg = self.cfg
        info = {
            # A merchant without secondary merchants names itself here (guess: the field is required
            # on the page, and a direct merchant has no other id for it).
            "secondaryMerchantId": cfg.partner,
            "storeId": cfg.store_id,
            "partnerId": cfg.partner,
            "productCode": "OVERSEAS_MBARCODE_PAY",
            # The page's example value; its list of scene codes could not be read (guess).
            "sceneCode": "PAYMENT_QRCODE",
            "equipmentType": self.equipment_type,
            "terminalId": cfg.terminal_id,
            # Guess: the enumeration is unreadable; LAN is in the older heartbeat's list (2G/3G/WIFI/LAN).
            "networkType": "LAN",
            "action": action,
        }
        doc: dict[str, object] = {"heartBeat": [info]}
        if req_time is not None:
            doc["reqTime"] = req_time
        return json.dumps(doc, separators=(",", ":")).encode()

    def send(self, action: str = "SIGNON") -> bool:
        """Send one heartbeat now; True if the gateway accepted it. Failures are logged, never raised."""
        http = self._http
        if http is None or not self.cfg.md5_key:
            return False
        req_time = self._req_time()
        body = self.body(action, req_time)
        headers = {
            "Content-Type": "application/json; charset=UTF-8",
            "version": VERSION,
            "isvId": self.cfg.partner,
            "reqTime": req_time,
            "digest": signing.salted_sha256(body, self.cfg.md5_key),
        }
        try:
            r = http.post(self.url, content=body, headers=headers)
            doc = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            result = doc.get("result") if isinstance(doc, dict) else None
            result = result if isinstance(result, dict) else {}
            if r.status_code == 200 and result.get("resultStatus") == "S":
                self.sent += 1
                return True
            reason = f"HTTP {r.status_code} {result.get('resultCode', '')} {result.get('resultMessage', '')}"
        except Exception as e:  # whatever goes wrong here, the till keeps selling
            reason = f"{type(e).__name__}: {e}"
        self.failed += 1
        self.last_error = reason.strip()
        log.warning("heartbeat %s failed for terminal %s: %s", action, self.cfg.terminal_id, self.last_error)
        return False
