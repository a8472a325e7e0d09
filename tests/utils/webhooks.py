"""A local webhook receiver for tests: answers with scripted statuses and records deliveries."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    received_at: float
    answered: int


@dataclass
class Receiver:
    """Serves on 127.0.0.1; answers the n-th request with `statuses[n]` (then 200), each
    after `delay_s`; counts the most requests it held at once per Host header."""

    statuses: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    delay_s: float = 0.0
    most_at_once: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        receiver = self
        lock = threading.Lock()
        open_now: dict[str, int] = {}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                host = self.headers.get("Host", "")
                with lock:
                    open_now[host] = open_now.get(host, 0) + 1
                    receiver.most_at_once[host] = max(
                        receiver.most_at_once.get(host, 0), open_now[host]
                    )
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay_s)
                with lock:
                    open_now[host] -= 1
                    index = len(receiver.deliveries)
                    status = receiver.statuses[index] if index < len(receiver.statuses) else 200
                    receiver.deliveries.append(
                        Delivery(dict(self.headers), body, time.time(), status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
