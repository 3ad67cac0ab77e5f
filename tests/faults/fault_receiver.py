"""A merchant's notify endpoint that misbehaves on demand: a raw loopback HTTP server whose answer to each
notification is one of ``ok`` (200 ``success``), ``timeout`` (reads the request, never answers), ``500``,
``reset`` (closes the connection with a TCP RST) or ``drip`` (a byte of a 200 answer at a time, too slowly
to finish). While ``bad`` is set it goes through the bad modes in turn, one per request.

Every request is recorded: its form fields, headers, the mode it met and whether ``success`` was sent
whole (the notification counts as acknowledged only then).
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass

BAD_MODES = ("timeout", "500", "reset", "drip")


@dataclass
class Seen:
    fields: dict[str, str]
    headers: dict[str, str]
    mode: str
    acknowledged: bool = False


class FaultReceiver:
    def __init__(self, *, hold_seconds: float = 3.0) -> None:
        self.hold_seconds = hold_seconds
        self.bad = threading.Event()
        self._modes = itertools.cycle(BAD_MODES)
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/notify"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> tuple[dict[str, str], bytes] | None:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(body) < n:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return headers, body

    def _serve(self, conn: socket.socket) -> None:
        try:
            got = self._read(conn)
            if got is None:
                return
            headers, body = got
            with self._lock:
                mode = next(self._modes) if self.bad.is_set() else "ok"
                seen = Seen(dict(urllib.parse.parse_qsl(body.decode())), headers, mode)
                self.seen.append(seen)
            if mode == "ok":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsuccess")
                seen.acknowledged = True
            elif mode == "500":
                conn.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\nerror"
                )
            elif mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "timeout":
                self._stop.wait(self.hold_seconds)
            elif mode == "drip":
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess"
                deadline = time.monotonic() + self.hold_seconds
                for i in range(len(answer)):
                    if time.monotonic() > deadline or self._stop.is_set():
                        break
                    conn.sendall(answer[i : i + 1])
                    time.sleep(0.5)
        except OSError:
            pass
        finally:
            conn.close()

    def acknowledged(self) -> dict[str, int]:
        """notify_id → how many times ``success`` was sent for it."""
        out: dict[str, int] = {}
        for s in list(self.seen):
            if s.acknowledged:
                out[s.fields.get("notify_id", "")] = out.get(s.fields.get("notify_id", ""), 0) + 1
        return out

    def wait_acknowledged(self, notify_ids: set[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not notify_ids <= set(self.acknowledged()) and time.monotonic() < deadline:
            time.sleep(0.05)
        missing = notify_ids - set(self.acknowledged())
        assert not missing, f"{len(missing)} notifications never acknowledged, e.g. {sorted(missing)[:3]}"

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)
