"""Holds a SQLite history open until stdin closes: the second-aggregator lock test's first one.

`python -m tests.aggregator.store.hold_history DB` prints `held PID` once the store is open
(after committing one observation), then waits for EOF on stdin and closes cleanly.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from aggregator.store import SqliteHistoryStore
from common.logsetup import configure_logging
from tests.aggregator.store.builders import observation


async def main(path: Path) -> None:
    store = SqliteHistoryStore(path, simulate=False, clock=time.time)
    await store.add_observation(observation(node_id="holder"))
    print(f"held {os.getpid()}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await store.close()


if __name__ == "__main__":
    configure_logging("warning", json=True)  # stderr: stdout carries only acknowledgements
    asyncio.run(main(Path(sys.argv[1])))
