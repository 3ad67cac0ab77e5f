"""A merchant's notify endpoint for the tests: a loopback HTTP server that records each POSTed form."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse


class ReceiverServer(http.server.ThreadingHTTPServer):
    """The receivers' HTTP server, with a listen backlog like a real web server's. The standard library's
    is 5: a worker sending 16 or more notifications at once then finds connections reset under load, which
    tests the receiver, not Tillpay."""

    request_queue_size = 128


class FormReceiver:
    """Records every POSTed form; answers ``fail`` to the first ``fail_first`` and ``success`` after."""

    def __init__(self, fail_first: int = 0, path: str = "/notify") -> None:
        self.received: list[dict[str, str]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(dict(urllib.parse.parse_qsl(body.decode())))
                answer = b"fail" if len(outer.received) <= outer.fail_first else b"success"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10) -> None:
        """Until ``n`` notifications arrived; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= n, f"got {len(self.received)} notifications, wanted {n}"

    def close(self) -> None:
        self.httpd.shutdown()
