"""Path and query validation: every malformed value is a BadRequestError naming the parameter."""

from __future__ import annotations

import pytest

from explorer.errors import BadRequestError
from explorer.params import (
    RoundsQuery,
    parse_minute,
    parse_no_query,
    parse_nodes_query,
    parse_rounds_query,
)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "-60", "61", "0", "1e3", "60.0", " 60", "\uff16\uff10", "9" * 25, "0x3c", "+60"],
)
def test_a_bad_minute_is_refused(text: str) -> None:
    with pytest.raises(BadRequestError, match="minute"):
        parse_minute(text)


def test_a_candle_minute_is_accepted() -> None:
    assert parse_minute("1796220000") == 1796220000


def test_rounds_query_defaults_and_values() -> None:
    assert parse_rounds_query([]) == RoundsQuery()
    assert parse_rounds_query(
        [("from", "120"), ("to", "600"), ("limit", "5"), ("cursor", "before:300")]
    ) == RoundsQuery(120, 600, 5, "before:300")


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ([("limit", "0")], "limit"),
        ([("limit", "1001")], "limit"),
        ([("limit", "ten")], "limit"),
        ([("from", "600"), ("to", "120")], "from"),
        ([("from", "61")], "from"),
        ([("limit", "5"), ("limit", "6")], "more than once"),
        ([("lmit", "5")], "unknown query parameter"),
        ([("cursor", "<script>")], "cursor"),
    ],
)
def test_a_bad_rounds_query_is_refused(query: list[tuple[str, str]], names: str) -> None:
    with pytest.raises(BadRequestError, match=names):
        parse_rounds_query(query)


def test_endpoints_without_parameters_refuse_any() -> None:
    parse_no_query([])
    with pytest.raises(BadRequestError, match="allowed: none"):
        parse_no_query([("x", "1")])
    assert parse_nodes_query([("limit", "3")]) == 3


def test_an_error_never_echoes_a_long_value() -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_minute("9" * 5000)
    assert len(str(caught.value)) < 200
    with pytest.raises(BadRequestError) as caught:
        parse_no_query([("k" * 5000, "")])
    assert len(str(caught.value)) < 200
