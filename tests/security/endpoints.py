"""Merchant endpoints that misbehave, on loopback: they hang, drip, flood or redirect.

Each reads the request (head and ``Content-Length`` body), records it, then behaves. ``connections`` counts
the connections accepted, ``open_now`` those still being served, ``most_open`` the most at once.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True


class Endpoint:
    """A loopback HTTP endpoint whose answer is ``behave(socket)``."""

    def __init__(self, behave: Callable[[socket.socket], None], path: str = "/notify") -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with outer._lock:
                    outer.connections += 1
                    outer.open_now += 1
                    outer.most_open = max(outer.most_open, outer.open_now)
                try:
                    outer.requests.append(_read_request(self.request))
                    behave(self.request)
                except OSError:
                    pass  # the client went away: that is what most of these tests want
                finally:
                    with outer._lock:
                        outer.open_now -= 1

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_open(self, n: int, timeout: float = 20) -> None:
        """Until ``n`` connections are being served at once."""
        deadline = time.monotonic() + timeout
        while self.open_now < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.open_now >= n, f"{self.open_now} connections open, wanted {n}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def hang(release: threading.Event) -> Callable[[socket.socket], None]:
    """Answers nothing until ``release`` is set, then ``success``."""

    def behave(sock: socket.socket) -> None:
        release.wait(120)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsuccess")

    return behave


def drip(sent: list[int], interval: float = 1.0) -> Callable[[socket.socket], None]:
    """A status line and headers promising 1000 bytes, then one byte every ``interval`` seconds (each
    read gets something, so no per-read timeout ever fires); ``sent`` counts the body bytes."""

    def behave(sock: socket.socket) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            sock.sendall(b"s")
            sent.append(1)
            time.sleep(interval)

    return behave


def flood(sent: list[int], total: int = 300_000_000) -> Callable[[socket.socket], None]:
    """An answer of ``total`` bytes of ``A`` (300 MB), sent as fast as the client takes them."""

    def behave(sock: socket.socket) -> None:
        sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        block = b"A" * 65536
        left = total
        while left > 0:
            n = sock.send(block[: min(left, len(block))])
            sent.append(n)
            left -= n

    return behave


def redirect(location: str) -> Callable[[socket.socket], None]:
    """``302 Found`` to ``location``."""

    def behave(sock: socket.socket) -> None:
        sock.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )

    return behave


def answer(body: bytes, status: str = "200 OK") -> Callable[[socket.socket], None]:
    """A fixed answer."""

    def behave(sock: socket.socket) -> None:
        sock.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )

    return behave
