"""The node's two-stage shutdown, as a real process: the first signal drains, a second stops now.

The node is started against a recording aggregator whose HealthCheck hangs for a minute, so the
node is busy in its startup check when the signals arrive: the first SIGTERM waits for that work
(within its bounds), a second one ends the process at once, with exit status 0 and a log that
says it was forced.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.oracle_node.aggregators import FakeAggregator


@pytest.fixture
async def hung_aggregator() -> AsyncIterator[FakeAggregator]:
    fake = FakeAggregator()
    fake.servicer.health_delay = 60.0
    await fake.start()
    yield fake
    await fake.stop()


def _logged(log_file: Path, event: str) -> bool:
    return log_file.exists() and any(
        json.loads(line).get("event") == event for line in log_file.read_text().splitlines()
    )


async def _wait_for_event(log_file: Path, event: str, within: float) -> None:
    deadline = time.monotonic() + within
    # Polling: the log is written by another process, no event can tell us.
    while not await asyncio.to_thread(_logged, log_file, event):
        assert time.monotonic() < deadline, f"no {event} in {log_file}"
        await asyncio.sleep(0.05)


def _events(log_file: Path) -> list[str]:
    return [json.loads(line)["event"] for line in log_file.read_text().splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_stops_the_node_at_once(
    signum: signal.Signals, hung_aggregator: FakeAggregator, tmp_path: Path
) -> None:
    config = tmp_path / "node.toml"
    config.write_text("[oracle]\nsubmit_timeout = 30\n", encoding="utf-8")
    log_file = tmp_path / "node.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "oracle_node",
        "--config",
        str(config),
        "--aggregator-url",
        f"127.0.0.1:{hung_aggregator.port}",
        "--api-url",
        "http://127.0.0.1:9",
        "--log-file",
        str(log_file),
    )
    try:
        await _wait_for_event(log_file, "node_started", 20)
        await asyncio.wait_for(hung_aggregator.servicer.health_asked.wait(), timeout=10)
        process.send_signal(signum)
        await _wait_for_event(log_file, "shutdown_requested", 10)
        # First signal: the node finishes what it is doing (the check may take up to 30 s).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), timeout=0.5)
        forced_at = time.monotonic()
        process.send_signal(signum)
        returncode = await asyncio.wait_for(process.wait(), timeout=10)
        stopped_in = time.monotonic() - forced_at
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert returncode == 0
    assert stopped_in < 5  # at once, not after the 30 s the startup check could still take
    events = await asyncio.to_thread(_events, log_file)
    assert events.index("shutdown_requested") < events.index("shutdown_forced")
    assert events[-1] == "node_stopped"
    last = await asyncio.to_thread(lambda: log_file.read_text().splitlines()[-1])
    assert json.loads(last)["forced"] is True
