"""A webhook receiver for the tests: the stdlib's ``http.server`` in a thread, answering
each POST with the next status of a script (then 200), and keeping every request seen.

An independent HTTP/1.1 implementation on purpose: it checks our client's framing, not
our own idea of it.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    statuses: list[int] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Seen]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} requests arrived, wanted {count}")
            return list(self.requests)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with script.arrived:
                script.requests.append(Seen(self.path, dict(self.headers.items()), body))
                status = script.statuses.pop(0) if script.statuses else 200
                script.arrived.notify_all()
            reply = b"nope: bad request\n" if status == 400 else b"ok\n"
            self.send_response(status)
            for name, value in script.extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet test output

    return Handler


@contextmanager
def receiver(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run a receiver on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/srs?x=1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
