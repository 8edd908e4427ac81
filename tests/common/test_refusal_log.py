"""Refusal logging is bounded: a flood writes a few lines per reason per window, with counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from common.logsetup import configure_logging
from common.refusal_log import OTHER_REASON, RefusalLog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_the_first_refusals_are_logged_then_counted_then_summarised() -> None:
    log = RefusalLog(per_reason=3, window=10.0)
    with capture_logs() as lines:
        logged = [log.refused("bad_signature", 100.0 + i * 0.1, node_id="x") for i in range(20)]
        log.flush(105.0)  # the window is not over: nothing yet
        assert len(lines) == 3
        log.flush(110.0)
    assert logged == [True] * 3 + [False] * 17
    assert [line["event"] for line in lines] == ["request_refused"] * 3 + [
        "request_refused_summary"
    ]
    assert lines[0]["reason"] == "bad_signature"
    assert lines[0]["node_id"] == "x"
    assert lines[3]["count"] == 20
    assert lines[3]["not_logged"] == 17
    assert lines[3]["window_seconds"] == 10.0


def test_reasons_are_limited_separately() -> None:
    log = RefusalLog(per_reason=2, window=60.0)
    with capture_logs() as lines:
        for _ in range(10):
            log.refused("unknown_node", 0.0)
            log.refused("rate_limited_node", 0.0)
    assert [line["reason"] for line in lines] == ["unknown_node", "rate_limited_node"] * 2


def test_a_new_window_logs_again_and_summarises_the_last() -> None:
    log = RefusalLog(per_reason=1, window=10.0)
    with capture_logs() as lines:
        for second in range(25):
            log.refused("wrong_key", float(second))
    events = [(line["event"], line.get("count")) for line in lines]
    assert events == [
        ("request_refused", None),
        ("request_refused_summary", 10),
        ("request_refused", None),
        ("request_refused_summary", 10),
        ("request_refused", None),
    ]


def test_a_quiet_window_writes_no_summary() -> None:
    log = RefusalLog(per_reason=5, window=10.0)
    with capture_logs() as lines:
        log.refused("unsigned", 0.0)
        log.flush(100.0)
    assert len(lines) == 1


def test_reasons_beyond_the_limit_fold_into_other() -> None:
    log = RefusalLog(per_reason=1, window=60.0, max_reasons=3)
    with capture_logs() as lines:
        for index in range(100):
            log.refused(f"reason-{index}", 0.0)
    assert set(log.totals) == {"reason-0", "reason-1", "reason-2", OTHER_REASON}
    assert log.totals[OTHER_REASON] == 97
    assert lines[-1]["reason"] == OTHER_REASON
    assert lines[-1]["original_reason"] == "reason-3"
    assert len(lines) == 4


def test_long_field_values_are_cut() -> None:
    log = RefusalLog(max_field_chars=32)
    with capture_logs() as lines:
        log.refused("invalid_argument", 0.0, message="x" * 10_000, body=b"\x01" * 1000, n=5)
    assert len(lines[0]["message"]) < 80
    assert "10000 characters, cut" in lines[0]["message"]
    assert lines[0]["body"].startswith("0101")
    assert len(lines[0]["body"]) < 80
    assert lines[0]["n"] == 5


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="window > 0"):
        RefusalLog(window=0)


def test_a_30_second_flood_writes_a_bounded_log(tmp_path: Path) -> None:
    """Today's 30 s flood wrote 37 MB; here 360,000 refusals write about 32 kB."""
    log_file = tmp_path / "aggregator.log"
    configure_logging("info", log_file, service="aggregator")
    log = RefusalLog(per_reason=10, window=10.0)
    reasons = ("unknown_node", "bad_signature", "invalid_argument")
    per_second = 4_000  # 120,000 refusals per reason over the 30 s
    start = 1_764_547_200.0
    for tick in range(30 * per_second):
        now = start + tick / per_second
        for reason in reasons:
            log.refused(reason, now, node_id="oracle-node-1", message="x" * 120)
    log.flush(start + 40)

    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    size = log_file.stat().st_size
    refusals = 30 * per_second * len(reasons)
    print(f"\n{refusals} refusals in 30 s: {len(lines)} lines, {size} bytes of log")
    # 3 windows of 10 s: at most 10 lines + 1 summary each, per reason.
    assert len(lines) <= len(reasons) * 3 * (10 + 1)
    assert size < 50_000  # each line is a few hundred bytes at most (fields are cut)
    summaries = [line for line in lines if line["event"] == "request_refused_summary"]
    assert sum(line["count"] for line in summaries) == refusals
    assert log.totals == dict.fromkeys(reasons, 30 * per_second)
