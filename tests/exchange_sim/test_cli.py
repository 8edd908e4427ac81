"""Fault flags mean exactly what the same fault posted to /_sim/faults means."""

from __future__ import annotations

import click
import pytest

from exchange_sim.cli import fault_specs_from_flags
from exchange_sim.faults import FaultBook, parse_fault_request

from .conftest import NOW


def test_every_fault_flag_becomes_a_valid_fault_request() -> None:
    specs = fault_specs_from_flags(
        rate_limit=("binance:3:7", "kraken"),
        http_5xx=("coinbase:2:502",),
        slow=("kraken:1.5", "binance:2:4"),
        malformed=("coinbase:1",),
        freeze=("binance",),
        jump=("coinbase:-2.5",),
    )
    book = FaultBook()
    for spec in specs:
        book.apply(parse_fault_request(spec, NOW))

    faults = book.snapshot()
    assert faults["binance"]["rate_limit"] == {"count": 3, "retry_after": 7}
    assert faults["kraken"]["rate_limit"] == {"count": None, "retry_after": 1}
    assert faults["coinbase"]["http_5xx"] == {"count": 2, "status": 502}
    assert faults["kraken"]["slow"] == {"count": None, "delay_seconds": 1.5}
    assert faults["binance"]["slow"] == {"count": 4, "delay_seconds": 2.0}
    assert faults["coinbase"]["malformed"] == {"count": 1}
    assert faults["binance"]["freeze"] == {"from_minute": int(NOW // 60 * 60)}
    assert faults["coinbase"]["jump"] == [{"from_minute": int(NOW // 60 * 60), "percent": "-2.5"}]


@pytest.mark.parametrize(
    "flags",
    [
        {"jump": ("binance",)},
        {"slow": ("kraken",)},
        {"rate_limit": ("binance:many",)},
        {"http_5xx": ("binance:1:x",)},
    ],
)
def test_malformed_fault_flags_are_usage_errors(flags: dict[str, tuple[str, ...]]) -> None:
    arguments: dict[str, tuple[str, ...]] = {
        "rate_limit": (),
        "http_5xx": (),
        "slow": (),
        "malformed": (),
        "freeze": (),
        "jump": (),
    }
    arguments.update(flags)
    with pytest.raises(click.BadParameter):
        fault_specs_from_flags(**arguments)
