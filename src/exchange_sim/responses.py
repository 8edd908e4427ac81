"""The simulator's HTTP answer, independent of the server that sends it, so venues stay pure.

Every answer carries `X-Oracle-Simulated: 1`: oracle nodes refuse a simulated answer unless they
run in simulate mode, and refuse an unmarked one when they do, so a simulated price can never be
presented as a real one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

SIMULATED_HEADER: Final = "X-Oracle-Simulated"
JSON_TYPE: Final = "application/json"

Query = Mapping[str, list[str]]


@dataclass(frozen=True)
class SimResponse:
    """Status, body and headers of one answer; the server adds the simulated marker."""

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()

    def with_headers(self, *extra: tuple[str, str]) -> SimResponse:
        """The same answer with more headers."""
        return SimResponse(self.status, self.body, self.content_type, self.headers + extra)


def json_response(
    status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()
) -> SimResponse:
    """A compact JSON answer, as the exchanges send them (no spaces after separators)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return SimResponse(status=status, body=body, headers=headers)


def raw_json_response(status: int, body: str) -> SimResponse:
    """An answer whose JSON text is already written (e.g. numbers that must keep their digits)."""
    return SimResponse(status=status, body=body.encode())


class RejectedRequest(Exception):  # noqa: N818 (a rejection, not a bug)
    """Raised by a venue's parameter parsing with the exact error answer the venue would send."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(response.body.decode(errors="replace"))
        self.response = response


def first(query: Query, name: str) -> str | None:
    """The first value of query parameter `name`, or None when absent."""
    values = query.get(name)
    return values[0] if values else None
