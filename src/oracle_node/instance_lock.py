"""One process per node id on this machine, by an exclusive lock held for life.

Two processes under one node id look to the aggregator like one node reporting twice (the second
price for a minute is refused as a conflict, and the node's health mixes both): it happens
silently when a node is started by hand with the same config as a scripted one. So before it
starts, a node takes a `flock` lock on `<run dir>/node-<node id>.lock` and refuses to start,
naming the other process, when it is held. (Its log file is locked by `common.logsetup`, as every
service's is: a lock beside the file, so that log rotation cannot move it away.)
"""

from __future__ import annotations

from pathlib import Path

from common.errors import ConfigError
from common.filelock import HeldLock, try_lock

__all__ = ["HeldLock", "lock_node_id"]


def lock_node_id(run_dir: Path, node_id: str) -> HeldLock:
    """Hold the lock of `node_id` in `run_dir`; a `ConfigError` naming the holder if it is taken.

    Node ids are limited to `[A-Za-z0-9._:@-]`, starting with a letter or digit, so the id is a
    safe file name as it is.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"run directory {str(run_dir)!r}: cannot create it: {error}") from None
    path = run_dir / f"node-{node_id}.lock"
    try:
        held = try_lock(path)
    except OSError as error:
        raise ConfigError(f"lock file {str(path)!r}: cannot open it: {error.strerror}") from None
    if isinstance(held, str):
        raise ConfigError(
            f"node id {node_id!r} is already used by another running node ({held}; lock "
            f"{path}): stop that node or give this one another --node-id"
        )
    return held
