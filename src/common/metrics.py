"""The Prometheus HTTP endpoint each service serves: its own registry, loopback by default.

Why not prometheus_client's `start_http_server`: it binds 0.0.0.0 by default, serves the global
registry (every test and library registering into one process-wide namespace), cannot be stopped
cleanly and offers no place for the node's plain health answer. Here each service builds its own
`CollectorRegistry` (`new_registry`), and `MetricsServer` serves it on the configured address
(127.0.0.1 unless configured otherwise, loudly logged when not loopback):

* `GET /metrics`: the registry in the Prometheus text format (what Prometheus scrapes);
* `GET /healthz`: when the service gives a health answer (the node does), a JSON object and an
  HTTP status (200 or 503) by the service's documented rule;
* anything else: 404; other methods: 405.

It runs in a daemon thread with one short-lived thread per request, at most 16 at once and 10 s
each (a scrape must never wait for the event loop, the event loop never waits for a scrape, and
a flood of connections cannot become a flood of threads); prometheus_client's metric objects
are thread-safe. A port already taken is a `ConfigError` naming the address and the setting,
raised by `start()` before the service starts serving. `stop()` closes the socket; the service
calls `start()`/`stop()` around its own lifetime (or uses it as a context manager).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from pydantic import Field

from common.errors import ConfigError
from common.logsetup import get_logger
from common.settings import HostName, Table

if TYPE_CHECKING:  # the standard library's own aliases, in its stubs only
    from _socket import _RetAddress
    from socketserver import _RequestType

_log = get_logger()

# (HTTP status, JSON body) of a service's plain health answer.
HealthAnswer = Callable[[], tuple[int, Mapping[str, object]]]

_REQUEST_TIMEOUT_SECONDS: Final = 10.0
_MAX_CONCURRENT_REQUESTS: Final = 16
_STOP_POLL_SECONDS: Final = 0.05


class MetricsSettings(Table):
    """`[metrics]`: where a service serves its Prometheus metrics (and health, for the node)."""

    enabled: bool = True
    """Serve the metrics endpoint"""
    host: HostName = "127.0.0.1"
    """Address the metrics endpoint listens on"""
    port: int = Field(9150, ge=0, le=65535)
    """Metrics HTTP port (0: any free port)"""


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A registry of the service's own, with the standard process, platform and GC metrics."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def exported_names(registry: CollectorRegistry) -> dict[str, frozenset[str]]:
    """Every sample name the registry can export, with the label names it carries.

    Counters export `<name>_total`, histograms `_bucket`/`_sum`/`_count`: what a PromQL query
    (a dashboard, an alert) must use. Labelled metrics appear once a child exists.
    """
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QuietHandler(WSGIRequestHandler):
    # A client that connects and sends nothing must not hold a thread forever.
    timeout = _REQUEST_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged: Prometheus scrapes every few seconds."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Python's HTTPServer sets SO_REUSEADDR: binding over TIME_WAIT is fine, over a live listener
    # still fails, which is the error we want.

    _active = 0
    _active_lock: threading.Lock

    def server_activate(self) -> None:
        self._active_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: _RequestType, client_address: _RetAddress) -> None:
        # A thread per request, but never more than a few: a flood of connections is closed
        # at once instead of becoming a flood of threads.
        with self._active_lock:
            if self._active >= _MAX_CONCURRENT_REQUESTS:
                self.shutdown_request(request)
                return
            self._active += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: _RequestType, client_address: _RetAddress) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


def _text(start_response: Callable[..., object], status: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body]


class MetricsServer:
    """Serves one registry (and optionally a health answer) over HTTP in a background thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        settings: MetricsSettings,
        *,
        health: HealthAnswer | None = None,
        setting_name: str = "[metrics]",
    ) -> None:
        self._settings = settings
        self._health = health
        self._setting_name = setting_name
        self._metrics_app = make_wsgi_app(registry)
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when configured with 0); 0 when not started."""
        if self._server is None:
            return 0
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def start(self) -> None:
        """Bind and serve; a taken port or an unusable address is a ConfigError."""
        if self._server is not None:
            return
        host, port = self._settings.host, self._settings.port
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        try:
            server = make_server(
                host, port, self._app, server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as error:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {error.strerror or error} (is another "
                f"process using the port? set {self._setting_name} port, or "
                f"{self._setting_name} enabled = false)"
            ) from error
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _STOP_POLL_SECONDS},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()
        if not _is_loopback(host):
            _log.warning(
                "metrics_exposed",
                url=self.url,
                detail="the metrics endpoint listens beyond this machine; restrict who reaches it",
            )
        _log.info("metrics_serving", url=f"{self.url}/metrics")

    def stop(self) -> None:
        """Stop serving and close the socket (waits at most a poll interval)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=2)

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the WSGI application ---------------------------------------------------------------------

    def _app(
        self, environ: dict[str, Any], start_response: Callable[..., object]
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in {"GET", "HEAD"}:
            return _text(start_response, "405 Method Not Allowed", b"GET only\n")
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics_app(environ, start_response)
            return body
        if path == "/healthz" and self._health is not None:
            status, answer = self._health()
            payload = json.dumps(answer, sort_keys=True).encode() + b"\n"
            reason = "OK" if status == 200 else "Service Unavailable"
            start_response(
                f"{status} {reason}",
                [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
            )
            return [payload]
        if path == "/":
            index = "/metrics" + ("\n/healthz" if self._health is not None else "")
            return _text(start_response, "200 OK", f"{index}\n".encode())
        return _text(start_response, "404 Not Found", b"not found; try /metrics\n")


def iter_lines(text: str) -> Iterator[str]:
    """Non-comment lines of a Prometheus text exposition (for tests and tools)."""
    return (line for line in text.splitlines() if line and not line.startswith("#"))
