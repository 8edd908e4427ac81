"""Validation of what a browser or script puts in a path or query string.

Strict on purpose: an unknown or repeated parameter, a non-decimal number or a minute that is not
a candle boundary is a 400 that names the parameter and what it accepts, before anything is asked
of the aggregator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from common.timeutil import MINUTE
from explorer.errors import BadRequestError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# uint64 on the wire; a minute beyond this is no candle anyone will see.
_MAX_MINUTE = 2**63 - 1
_DIGITS = re.compile(r"^[0-9]{1,19}$")
# Page tokens are the aggregator's opaque strings: passed through, but bounded and printable.
_TOKEN = re.compile(r"^[A-Za-z0-9_=:.+/-]{1,256}$")


@dataclass(frozen=True, slots=True)
class RoundsQuery:
    from_minute: int = 0
    to_minute: int = 0
    limit: int = DEFAULT_LIMIT
    cursor: str = ""

    def as_params(self) -> dict[str, str]:
        """The query again, from the validated values only (for links the server writes)."""
        params = {"limit": str(self.limit)}
        if self.from_minute:
            params["from"] = str(self.from_minute)
        if self.to_minute:
            params["to"] = str(self.to_minute)
        if self.cursor:
            params["cursor"] = self.cursor
        return params


def _shown(text: str) -> str:
    """The offending value as quoted in an error, cut short: an error never echoes a flood."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _integer(name: str, text: str, low: int, high: int) -> int:
    if not _DIGITS.match(text):
        raise BadRequestError(
            f"{name} must be a whole number from {low} to {high}, got {_shown(text)}"
        )
    value = int(text)
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be from {low} to {high}, got {value}")
    return value


def parse_minute(text: str, name: str = "minute") -> int:
    """A candle minute: unix seconds, a positive multiple of 60."""
    value = _integer(name, text, 1, _MAX_MINUTE)
    if value % MINUTE:
        raise BadRequestError(
            f"{name} must be a candle minute (unix seconds, a multiple of 60), got {value}"
        )
    return value


Query = Iterable[tuple[str, str]]


def _single(query: Query, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's (key, value) pairs as a dict; unknown or repeated keys are refused."""
    seen: dict[str, str] = {}
    for key, value in query:
        if key not in allowed:
            raise BadRequestError(
                f"unknown query parameter {_shown(key)}; allowed: {', '.join(allowed) or 'none'}"
            )
        if key in seen:
            raise BadRequestError(f"query parameter {_shown(key)} given more than once")
        seen[key] = value
    return seen


def parse_rounds_query(query: Query) -> RoundsQuery:
    """`/api/rounds?from=&to=&limit=&cursor=` (all optional; from/to inclusive minutes)."""
    values = _single(query, ("from", "to", "limit", "cursor"))
    from_minute = parse_minute(values["from"], "from") if "from" in values else 0
    to_minute = parse_minute(values["to"], "to") if "to" in values else 0
    if from_minute and to_minute and from_minute > to_minute:
        raise BadRequestError(f"from ({from_minute}) must not be after to ({to_minute})")
    limit = _integer("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else DEFAULT_LIMIT
    cursor = values.get("cursor", "")
    if cursor and not _TOKEN.match(cursor):
        raise BadRequestError("cursor must be a next_cursor value from a previous answer")
    return RoundsQuery(from_minute, to_minute, limit, cursor)


def parse_no_query(query: Query) -> None:
    """Endpoints that take no parameter refuse any, rather than ignore a typo."""
    _single(query, ())


def parse_nodes_query(query: Query) -> int:
    values = _single(query, ("limit",))
    return _integer("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else DEFAULT_LIMIT
