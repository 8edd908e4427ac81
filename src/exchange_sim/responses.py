"""The simulator's HTTP answer, independent of the server that sends it, so venues stay pure.

`SimApp` adds the simulated marker (`common.simulated.SIMULATED_HEADER`) and the `Date` header to
every answer; the HTTP server and the in-process httpx transport only copy what they are given,
so both say exactly the same thing. JSON bodies are written by `encode_json`, which knows the two
things the venues need beyond the standard library: `Decimal` written as a plain JSON number
(Coinbase sends numbers and must never lose a cent to a float) and `Literal`, text written
verbatim (a hostile venue's `NaN` or `1e999`, which no JSON encoder would produce).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

JSON_TYPE: Final = "application/json"
HTML_TYPE: Final = "text/html"

Query = Mapping[str, list[str]]


@dataclass(frozen=True)
class Literal:
    """A JSON value written exactly as `text` (e.g. `NaN`, `Infinity`, `1e999`)."""

    text: str


@dataclass(frozen=True)
class SimResponse:
    """Status, body and headers of one answer.

    `drip_seconds` > 0 makes the server send the body one byte at a time with that pause between
    bytes (the `drip` fault): a venue that never quite finishes answering.
    """

    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    drip_seconds: float = 0.0

    def with_headers(self, *extra: tuple[str, str]) -> SimResponse:
        """The same answer with more headers."""
        return replace(self, headers=self.headers + extra)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


_PLACEHOLDER: Final = re.compile(r'"\\u0000(\d+)\\u0000"')


def encode_json(payload: object) -> bytes:
    """Compact JSON as the exchanges send it (no spaces), with `Decimal` and `Literal` values."""
    verbatim: list[str] = []
    counter = itertools.count()

    def placeholder(value: object) -> str:
        if isinstance(value, Decimal):
            # A plain number without exponent or trailing zeros: 102288.6, 100000, 0.99987.
            text = format(value.normalize(), "f") if value.is_finite() else str(value)
        elif isinstance(value, Literal):
            text = value.text
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as JSON")
        verbatim.append(text)
        # NUL cannot occur in a venue's own strings, so the marker is unambiguous.
        return f"\0{next(counter)}\0"

    encoded = json.dumps(payload, separators=(",", ":"), default=placeholder)
    text = _PLACEHOLDER.sub(lambda match: verbatim[int(match.group(1))], encoded)
    return text.encode()


def json_response(
    status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()
) -> SimResponse:
    """A compact JSON answer, as the exchanges send them (no spaces after separators)."""
    return SimResponse(status=status, body=encode_json(payload), headers=headers)


def html_response(status: int, page: str) -> SimResponse:
    """An HTML page, as a CDN or a maintenance proxy answers instead of the venue's API."""
    return SimResponse(status=status, body=page.encode(), content_type=HTML_TYPE)


class RejectedRequest(Exception):  # noqa: N818 (a rejection, not a bug)
    """Raised by a venue's parameter parsing with the exact error answer the venue would send."""

    def __init__(self, response: SimResponse) -> None:
        super().__init__(response.body.decode(errors="replace"))
        self.response = response


def first(query: Query, name: str) -> str | None:
    """The first value of query parameter `name`, or None when absent."""
    values = query.get(name)
    return values[0] if values else None
