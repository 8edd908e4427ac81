"""A small read-only HTTP endpoint (JSON, hex TLVs), as public DLC oracles offer one.

Stdlib asyncio only: GET and HEAD, one request per connection, the request line and headers
capped at 8 KiB and 5 seconds, no body accepted. Routes (all JSON; bytes are hex):

    GET /v1/oracle                       keys, modes, schedule (OracleInfo)
    GET /v1/reports/<minute>             a signed round report
    GET /v1/proofs/<minute>              report + anchor + Merkle proof: `committer verify` input
    GET /v1/announcements[?from=&to=&limit=]
    GET /v1/announcements/<event_id>     with "tlv": the oracle_announcement to import in a wallet
    GET /v1/attestations/<event_id>      with "tlv": the oracle_attestation
    GET /v1/anchors[?limit=]

Errors answer with the HTTP equivalent of the gRPC status and {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from google.protobuf.message import Message

from committer import views
from committer.app import Committer
from committer.errors import BadRequestError, NotFoundError
from common.errors import OracleError
from common.logsetup import get_logger

_log = get_logger(service="committer")
MAX_HEAD: Final = 8 * 1024
READ_TIMEOUT: Final = 5.0
_HTTP_STATUS: Final = {
    "INVALID_ARGUMENT": (400, "Bad Request"),
    "NOT_FOUND": (404, "Not Found"),
    "FAILED_PRECONDITION": (409, "Conflict"),
    "RESOURCE_EXHAUSTED": (429, "Too Many Requests"),
}


def _int(query: dict[str, list[str]], name: str) -> int:
    values = query.get(name)
    if not values:
        return 0
    try:
        value = int(values[0])
    except ValueError:
        raise BadRequestError(f"{name}: not an integer") from None
    if value < 0:
        raise BadRequestError(f"{name}: must not be negative")
    return value


def _path_int(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise BadRequestError(f"{text!r} is not a minute (unix seconds)")
    return int(text)


def route(committer: Committer, target: str) -> Message:
    """The message answering GET `target`; domain errors for bad or unknown targets."""
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    segments = [unquote(s) for s in parts.path.strip("/").split("/")]
    handlers: dict[tuple[str, int], Callable[[], Message]] = {
        ("oracle", 2): lambda: views.oracle_info(committer),
        ("reports", 3): lambda: views.get_report(committer, _path_int(segments[2])),
        ("proofs", 3): lambda: views.inclusion_proof(committer, _path_int(segments[2])),
        ("announcements", 2): lambda: views.list_announcements(
            committer, _int(query, "from"), _int(query, "to"), _int(query, "limit")
        ),
        ("announcements", 3): lambda: views.get_announcement(committer, segments[2]),
        ("attestations", 3): lambda: views.get_attestation(committer, segments[2]),
        ("anchors", 2): lambda: views.list_anchors(committer, _int(query, "limit")),
    }
    if len(segments) < 2 or segments[0] != "v1":
        raise NotFoundError(f"no such path {parts.path!r}; try /v1/oracle")
    handler = handlers.get((segments[1], len(segments)))
    if handler is None:
        raise NotFoundError(f"no such path {parts.path!r}; try /v1/oracle")
    return handler()


def _response(status: int, reason: str, body: dict[str, Any], *, head: bool) -> bytes:
    payload = json.dumps(body, indent=1).encode("utf-8") + b"\n"
    headers = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    return headers + (b"" if head else payload)


def answer(committer: Committer, method: str, target: str) -> bytes:
    if method not in ("GET", "HEAD"):
        return _response(405, "Method Not Allowed", {"error": "read-only: GET or HEAD"}, head=False)
    head = method == "HEAD"
    try:
        message = route(committer, target)
    except OracleError as error:
        status, reason = _HTTP_STATUS.get(error.status.name, (500, "Internal Server Error"))
        return _response(status, reason, {"error": str(error)}, head=head)
    except Exception:  # noqa: BLE001 (a bug answers 500 and is logged, never a crash)
        _log.exception("http_request_failed", target=target[:200])
        return _response(500, "Internal Server Error", {"error": "see the log"}, head=head)
    return _response(200, "OK", views.to_json(message), head=head)


async def _handle(
    committer: Committer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=READ_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.write(_response(400, "Bad Request", {"error": "malformed request"}, head=False))
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        words = request_line.split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            writer.write(
                _response(400, "Bad Request", {"error": "malformed request line"}, head=False)
            )
            return
        writer.write(answer(committer, words[0], words[1]))
    finally:
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def start_http(committer: Committer, host: str, port: int) -> asyncio.Server:
    """Bind and start serving; the caller closes the returned server."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(committer, reader, writer)

    return await asyncio.start_server(on_connection, host, port, limit=MAX_HEAD)
