"""A history writer process for the SIGKILL test: prints each record once its write returned.

`python -m tests.aggregator.store.crash_writer DB RUN` opens the SQLite history (recovering it
after the previous run was killed), then writes forever from 32 concurrent tasks: observations,
a round now and then, node touches and refusals. Each line on stdout is printed only after the
awaited write returned, i.e. is an acknowledgement; the test kills this process with SIGKILL at
a random moment and then checks that every acknowledged record is in the database.
"""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal
from pathlib import Path

from aggregator.store import SqliteHistoryStore
from common.logsetup import configure_logging
from tests.aggregator.store.builders import T0, node_row, observation, round_record

WRITERS = 32


def price_of(run: int, writer: int, sequence: int) -> Decimal:
    """Deterministic, so the test can check that no stored row is torn or altered."""
    return Decimal(100_000 + run * 1000 + writer) + Decimal(sequence) / 10**8


async def write_observations(store: SqliteHistoryStore, run: int, writer: int) -> None:
    sequence = 0
    while True:
        minute = T0 + 60 * sequence
        record = observation(
            node_id=f"run{run}-w{writer}",
            minute=minute,
            price=str(price_of(run, writer, sequence)),
            signature=bytes([writer]) * 64,
            public_key=bytes([run]) * 32,
        )
        await store.add_observation(record)
        print(f"obs {record.node_id} {minute}", flush=True)
        await store.touch_node(node_row(record.node_id, last_seen=time.time(), n=sequence + 1))
        if writer == 0 and sequence % 8 == 0:
            round_minute = T0 + 60 * (run * 1_000_000 + sequence)
            await store.add_round(round_record(round_minute))
            print(f"round {round_minute}", flush=True)
        if writer == 1:
            store.count_refusal("bad_signature", b"junk" * 100, time.time())
        sequence += 1


async def main(path: Path, run: int) -> None:
    store = SqliteHistoryStore(path, simulate=False, clock=time.time)
    print("ready", flush=True)
    await asyncio.gather(*(write_observations(store, run, w) for w in range(WRITERS)))


if __name__ == "__main__":
    configure_logging("warning", json=True)  # stderr: stdout carries only acknowledgements
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
