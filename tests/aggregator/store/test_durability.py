"""Durability: an acknowledged write survives `kill -9` at any moment, and restarts recover it.

A real writer process (crash_writer) acknowledges each record on stdout only after its awaited
write returned; the test SIGKILLs it at random moments, restarts it on the same file each time
(which must recover the WAL), and finally checks that every acknowledged observation and round is
in the database, unaltered.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

from aggregator.store import SqliteHistoryStore
from tests.aggregator.store import processes
from tests.aggregator.store.builders import T0, FakeClock, node_row, observation, round_record
from tests.aggregator.store.crash_writer import price_of

RUNS = 10


def test_no_acknowledged_record_is_lost_to_sigkill(db_path: Path, clock: FakeClock) -> None:
    chooser = random.Random(20261202)  # noqa: S311 - reproducible kill times
    acknowledged: set[tuple[str, ...]] = set()
    for run in range(RUNS):
        child = processes.start("crash_writer", str(db_path), str(run))
        reader = processes.LineReader(child)
        target = chooser.randrange(1, 600)
        started = reader.wait_for(lambda lines, n=target: len(lines) > n)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        lines = reader.finish()
        assert child.stderr is not None
        assert started, f"run {run}: writer stalled: {child.stderr.read()[-2000:]}"
        assert lines[0] == "ready"
        assert child.returncode == -signal.SIGKILL
        acknowledged.update(tuple(line.split()) for line in lines[1:] if line)

    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        stored = {
            (record.node_id, record.minute): record for record in store.observations(0, 2**62)
        }
        acked_observations = [a for a in acknowledged if a[0] == "obs"]
        acked_rounds = [a for a in acknowledged if a[0] == "round"]
        assert len(acked_observations) > RUNS * 10
        assert acked_rounds
        for _, node_id, minute in acked_observations:
            record = stored.get((node_id, int(minute)))
            assert record is not None, f"acknowledged observation {node_id}@{minute} lost"
            run_part, writer_part = node_id.removeprefix("run").split("-w")
            run, writer = int(run_part), int(writer_part)
            sequence = (int(minute) - T0) // 60
            assert record.price == price_of(run, writer, sequence)
            assert record.signature == bytes([writer]) * 64
        for _, minute in acked_rounds:
            assert store.get_round(int(minute)) == round_record(int(minute))
        # What was committed but not yet acknowledged when the kill came may be there too;
        # nothing else is.
        assert len(stored) <= len(acked_observations) + RUNS * 32
    finally:
        asyncio.run(store.close())


async def test_a_restart_recovers_what_a_clean_close_left(db_path: Path, clock: FakeClock) -> None:
    store = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    records = [observation(), observation("kraken", price="100100.5"), observation(minute=T0 + 60)]
    for record in records:
        await store.add_observation(record)
    await store.add_round(round_record(T0))
    await store.touch_node(node_row())
    await store.close()

    reopened = SqliteHistoryStore(db_path, simulate=False, clock=clock)
    try:
        state = reopened.recover(T0 + 125, 600)
        assert state.observations == records
        assert state.rounds == [round_record(T0)]
        assert state.nodes == [node_row()]
        assert not reopened.created
    finally:
        await reopened.close()
