"""The explorer's aiohttp application: routes, the error mapping and the security headers.

Every error leaves as a clear page (HTML) or `{"error": {...}}` (under `/api/`) with the right
status, never a traceback: explorer errors carry their status, aiohttp's own (unknown route,
wrong method) keep theirs, and anything else is logged and answered 500. Every response carries
the security headers (a CSP that allows no inline script, no-sniff, no framing), and templates
escape everything, because node ids and reasons come from the network.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from common.logsetup import get_logger
from explorer import __version__, views
from explorer.config import ExplorerConfig
from explorer.documents import Documents
from explorer.errors import (
    ExplorerError,
    TooManyStreamsError,
    UnsupportedError,
    UpstreamUnavailableError,
)
from explorer.feed import Listener, LiveFeed
from explorer.params import parse_minute, parse_no_query, parse_nodes_query, parse_rounds_query

_log = get_logger(service="explorer")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

DOCUMENTS = web.AppKey("documents", Documents)
CONFIG = web.AppKey("config", ExplorerConfig)
FEED = web.AppKey("feed", LiveFeed)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
# The bound port (port 0 in the config picks one), set once the socket is bound.
PORT = web.AppKey("port", int)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("explorer").joinpath(name)))


def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_package_dir("templates")),
        autoescape=True,  # every template, whatever its name: nothing from the network is trusted
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["cents"] = views.cents_text
    environment.filters["percent"] = views.percent_text
    environment.globals["version"] = __version__
    return environment


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def _error_response(request: web.Request, status: int, code: str, message: str) -> web.Response:
    if _is_api(request):
        return web.json_response({"error": {"code": code, "message": message}}, status=status)
    page = (
        request.app[TEMPLATES]
        .get_template("error.html")
        .render(status=status, code=code, message=message, simulated=False)
    )
    return web.Response(text=page, status=status, content_type="text/html")


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ExplorerError as error:
        return _error_response(request, error.http_status, error.code, error.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        reason = error.reason or "error"
        code = reason.lower().replace(" ", "_")
        message = "no such page" if error.status == 404 else reason
        response = _error_response(request, error.status, code, message)
        if "Allow" in error.headers:  # 405: which methods would have worked
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a bug must still get a clear 500, never a traceback
        _log.exception("request_failed", path=request.path)
        return _error_response(request, 500, "internal", "internal error; see the explorer's log")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    # No version banner: it only helps an attacker pick an exploit.
    response.headers["Server"] = "oracle-explorer"
    if _is_api(request):
        response.headers.setdefault("Cache-Control", "no-store")


def _json(document: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(document, status=status, dumps=json.dumps)


# -- JSON API ----------------------------------------------------------------------------------


async def api_price(request: web.Request) -> web.Response:
    parse_no_query(request.query.items())
    status, document = request.app[DOCUMENTS].price()
    return _json(document, status)


async def api_rounds(request: web.Request) -> web.Response:
    query = parse_rounds_query(request.query.items())
    return _json(await request.app[DOCUMENTS].rounds(query))


async def api_round(request: web.Request) -> web.Response:
    parse_no_query(request.query.items())
    minute = parse_minute(request.match_info["minute"])
    return _json(await request.app[DOCUMENTS].round(minute, _public_base(request)))


async def api_proof(request: web.Request) -> web.Response:
    """The round's `committer verify` bundle (GetInclusionProof as the committer writes it)."""
    parse_no_query(request.query.items())
    minute = parse_minute(request.match_info["minute"])
    return _json(await request.app[DOCUMENTS].proof(minute))


_HOST_HEADER = re.compile(
    r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def _public_base(request: web.Request) -> str:
    """This explorer's URL as the verify command should fetch it.

    The configured address when it is a real one; bound to a wildcard, the Host the browser
    used, if it looks like a host (a crafted Host header gets the configured form instead).
    """
    config = request.app[CONFIG]
    port = request.app[PORT]
    if config.host not in ("0.0.0.0", "::", ""):
        host = f"[{config.host}]" if ":" in config.host else config.host
        return f"http://{host}:{port}"
    header = request.headers.get("Host", "")
    if _HOST_HEADER.match(header):
        return f"http://{header}"
    return f"http://127.0.0.1:{port}"


async def api_nodes(request: web.Request) -> web.Response:
    limit = parse_nodes_query(request.query.items())
    return _json(await request.app[DOCUMENTS].nodes(limit))


async def healthz(request: web.Request) -> web.Response:
    """The explorer's own liveness, and whether it reaches the aggregator (for run scripts)."""
    parse_no_query(request.query.items())
    state = request.app[FEED].state
    return _json({"status": "ok", "aggregator_reachable": state.reachable, "mode": state.mode})


def _event(name: str, document: dict[str, Any]) -> bytes:
    # json.dumps never emits a raw newline, so one data line carries the whole document.
    return f"event: {name}\ndata: {json.dumps(document)}\n\n".encode()


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `price` (the /api/price document) on every change, `round` on closes."""
    parse_no_query(request.query.items())
    feed = request.app[FEED]
    config = request.app[CONFIG]
    if feed.listener_count >= config.max_streams:
        raise TooManyStreamsError(
            f"{config.max_streams} live streams are open (max_streams); poll /api/price instead"
        )
    listener = feed.listen()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        await _pump(request, response, listener, config.stream_keepalive)
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    finally:
        feed.unlisten(listener)
    return response


async def _pump(
    request: web.Request, response: web.StreamResponse, listener: Listener, keepalive: float
) -> None:
    documents = request.app[DOCUMENTS]
    while True:
        try:
            await asyncio.wait_for(listener.wake.wait(), keepalive)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")
            continue
        listener.wake.clear()
        if listener.closed:
            return
        while listener.rounds:
            round_ = listener.rounds.popleft()
            if round_.minute:
                await response.write(_event("round", views.round_view(round_, detail=False)))
            else:
                await response.write(_event("round", {"refresh": True}))
        if listener.price_changed:
            listener.price_changed = False
            await response.write(documents.price_event())


# -- pages -------------------------------------------------------------------------------------


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:  # noqa: ANN401
    text = request.app[TEMPLATES].get_template(template).render(**context)
    return web.Response(text=text, status=status, content_type="text/html")


async def _optional(call: Awaitable[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
    """A document for a page section, or why the section is empty (the page still renders)."""
    try:
        return await call, None
    except (UnsupportedError, UpstreamUnavailableError) as error:
        return None, error.message
    except ExplorerError as error:
        return None, error.message


async def index_page(request: web.Request) -> web.Response:
    parse_no_query(request.query.items())
    config = request.app[CONFIG]
    documents = request.app[DOCUMENTS]
    _status, price = documents.price()
    rounds, rounds_error = await _optional(
        documents.rounds(parse_rounds_query([("limit", str(config.recent_rounds))]))
    )
    nodes, nodes_error = await _optional(documents.nodes(100))
    simulated = bool(
        price["simulated"]
        or (rounds is not None and rounds["simulated"])
        or (nodes is not None and nodes["simulated"])
    )
    return _page(
        request,
        "index.html",
        price=price,
        rounds=rounds,
        rounds_error=rounds_error,
        nodes=nodes,
        nodes_error=nodes_error,
        simulated=simulated,
        chart_hours=config.chart_hours,
        recent_rounds=config.recent_rounds,
    )


async def round_page(request: web.Request) -> web.Response:
    parse_no_query(request.query.items())
    minute = parse_minute(request.match_info["minute"])
    document = await request.app[DOCUMENTS].round(minute, _public_base(request))
    _status, price = request.app[DOCUMENTS].price()
    return _page(
        request,
        "round.html",
        round=document,
        aggregator=price["aggregator"],
        simulated=document["simulated"],
    )


async def rounds_page(request: web.Request) -> web.Response:
    """Every closed round, a page at a time (the API's cursor), for browsing past the chart."""
    query = parse_rounds_query(request.query.items())
    document = await request.app[DOCUMENTS].rounds(query)
    return _page(
        request,
        "rounds.html",
        rounds=document,
        first_page=not query.cursor,
        query=urlencode(query.as_params()),
        older=urlencode({**query.as_params(), "cursor": document["next_cursor"]})
        if document["next_cursor"]
        else None,
        simulated=document["simulated"],
    )


async def _end_streams(app: web.Application) -> None:
    app[FEED].close_listeners()


def build_app(
    config: ExplorerConfig, documents: Documents, feed: LiveFeed, *, port: int
) -> web.Application:
    """The application with every route; serving it on `port` (bound) is the caller's."""
    app = web.Application(middlewares=[_errors], client_max_size=64 * 1024)
    app[CONFIG] = config
    app[DOCUMENTS] = documents
    app[FEED] = feed
    app[TEMPLATES] = _templates()
    app[PORT] = port
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/", index_page)
    app.router.add_get("/rounds", rounds_page)
    app.router.add_get("/rounds/{minute}", round_page)
    app.router.add_get("/api/price", api_price)
    app.router.add_get("/api/rounds", api_rounds)
    app.router.add_get("/api/rounds/{minute}", api_round)
    app.router.add_get("/api/rounds/{minute}/proof", api_proof)
    app.router.add_get("/api/nodes", api_nodes)
    app.router.add_get("/api/stream", api_stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", _package_dir("static"), follow_symlinks=False)
    return app
