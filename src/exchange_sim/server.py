"""The HTTP plumbing: a threaded stdlib server that hands every request to `SimApp.handle`.

Built separately from being served (`create_server` binds and returns the port, `run_in_thread`
serves), so tests run the real server on port 0 in-process and the CLI runs the same object.
One thread per connection keeps a `slow` or `drip` fault on one venue from stalling the others.
The app has already written every header the answer carries (the simulated marker, `Date` on the
simulator's clock); this layer adds only `Content-Length` and sends.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import SimApp, sim_logger
from .responses import SimResponse, json_response

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

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (as a node does on a bomb or a drip) is no error; others are
        logged, never printed to stderr by the stdlib's default handler."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        sim_logger().error("connection_failed", client=str(client_address), exc_info=True)

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
        app = self.server.app
        try:
            pending = app.begin(self.command, self.path, headers, body)
            if pending.delay_seconds > 0:
                time.sleep(pending.delay_seconds)
            response = pending.finish()
        except Exception:  # noqa: BLE001 -- a simulator bug must not kill the connection thread silently
            sim_logger().exception("request_failed", method=self.command, path=self.path)
            failed = json_response(500, {"error": "exchange simulator bug; see its log"})
            response = app.label(failed)
        self._send(response)

    def _send(self, response: SimResponse) -> None:
        self.send_response_only(response.status)
        self.send_header("Server", self.version_string())
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if response.drip_seconds <= 0:
            self.wfile.write(response.body)
            return
        # A venue that never quite finishes: one byte, a pause, the next byte.
        try:
            for index in range(len(response.body)):
                self.wfile.write(response.body[index : index + 1])
                self.wfile.flush()
                time.sleep(response.drip_seconds)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as it should

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


@contextmanager
def serving(app: SimApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[SimServer]:
    """`app` on a real socket (port 0: a free one) for the length of a `with` block."""
    server = create_server(app, host, port)
    run_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
