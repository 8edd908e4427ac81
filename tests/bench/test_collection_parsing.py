"""How bench_collection decides a round closed and reads the nodes' logs, on exact inputs."""

import json
from pathlib import Path

from bench_collection import Round, fill_from_logs, round_closed, scenario_row

from common.proto import oracle_pb2
from common.timeutil import format_minute

BOUNDARY = 1_795_000_020 // 60 * 60
MINUTE = BOUNDARY - 60


def answer(minutes: dict[str, int]) -> oracle_pb2.GetPriceResponse:
    return oracle_pb2.GetPriceResponse(
        success=True,
        data_points=len(minutes),
        recent_prices=[
            oracle_pb2.PriceDataPoint(source=source, timestamp=minute, price=100_000.0)
            for source, minute in minutes.items()
        ],
    )


def test_round_closes_only_when_every_exchange_has_the_minute_that_just_closed() -> None:
    # The aggregate already counts three exchanges when one has the new minute and two are a
    # minute behind: that round is not closed yet.
    assert not round_closed(
        answer({"binance": MINUTE, "coinbase": MINUTE - 60, "kraken": MINUTE - 60}), MINUTE
    )
    assert not round_closed(answer({"binance": MINUTE, "coinbase": MINUTE}), MINUTE)
    assert round_closed(answer({"binance": MINUTE, "coinbase": MINUTE, "kraken": MINUTE}), MINUTE)
    assert not round_closed(oracle_pb2.GetPriceResponse(success=False), MINUTE)


def test_node_logs_give_skew_latency_and_attempts_of_the_measured_minute(tmp_path: Path) -> None:
    log = tmp_path / "node1_binance.log"
    lines = [
        {"event": "node_started", "timestamp": "2026-11-25T23:31:07.455632Z"},
        {"event": "fetch_started", "minute": format_minute(MINUTE - 60), "skew_ms": 900},
        {"event": "fetch_started", "minute": format_minute(MINUTE), "skew_ms": 8},
        {
            "event": "fetch_finished",
            "minute": format_minute(MINUTE),
            "latency_ms": 1012.5,
            "attempts": 2,
        },
    ]
    log.write_text(
        "\n".join(json.dumps(line) for line in lines) + "\nTraceback: not JSON\n",
        encoding="utf-8",
    )
    measured = Round(BOUNDARY, closed_after_s=1.02)
    fill_from_logs([measured], {"binance": log})
    assert measured.skew_ms == {"binance": 8.0}
    assert measured.latency_ms == {"binance": 1012.5}
    assert measured.attempts == {"binance": 2}

    cells, figures = scenario_row("normal", [measured, Round(BOUNDARY + 60)])
    assert figures["close_p50_s"] == 1.02
    assert figures["not_closed"] == 1
    assert cells[-1] == "p50 < 1 s MISSED"
