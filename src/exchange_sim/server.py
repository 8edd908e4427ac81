"""The HTTP plumbing: a threaded stdlib server that hands every request to `SimApp.handle`.

Built separately from being served (`create_server` binds and returns the port, `run_in_thread`
serves), so tests run the real server on port 0 in-process and the CLI runs the same object.
One thread per connection keeps a `slow` fault on one venue from stalling the others.
"""

from __future__ import annotations

import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import SimApp, sim_logger
from .responses import SIMULATED_HEADER, json_response

_MAX_BODY = 64 * 1024


class SimServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its app; worker threads never block shutdown."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SimApp) -> None:
        self.app = app
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, _Handler)

    def answering(self, delta: int) -> None:
        """Count requests being answered, so a stop can let them finish (see `drain`)."""
        with self._idle:
            self._in_flight += delta
            self._idle.notify_all()

    def drain(self, grace_seconds: float) -> bool:
        """Wait until no request is being answered, at most `grace_seconds`; True if idle."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace_seconds)

    @property
    def port(self) -> int:
        """The bound port (the real one when asked for port 0)."""
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with a connection pool expect
    server_version = "exchange-sim"
    sys_version = "SIMULATED"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self.server.answering(+1)
        try:
            self._answer_now()
        finally:
            self.server.answering(-1)

    def _answer_now(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, _MAX_BODY)) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            response = self.server.app.handle(self.command, self.path, headers, body)
        except Exception:  # noqa: BLE001 -- a simulator bug must not kill the connection thread silently
            sim_logger().exception("request_failed", method=self.command, path=self.path)
            response = json_response(500, {"error": "exchange simulator bug; see its log"})
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header(SIMULATED_HEADER, "1")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header on the simulator's clock: nodes judge "closed" by exchange time."""
        return formatdate(self.server.app.clock() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's stderr access log; the app logs each venue request itself."""


def create_server(app: SimApp, host: str, port: int) -> SimServer:
    """Bind (port 0 picks a free port; read it from `.port`) without serving yet."""
    return SimServer((host, port), app)


def run_in_thread(server: SimServer) -> threading.Thread:
    """Serve in a daemon thread; stop with `server.shutdown(); server.server_close()`."""
    thread = threading.Thread(target=server.serve_forever, name="exchange-sim", daemon=True)
    thread.start()
    return thread
