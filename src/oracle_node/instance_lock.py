"""One process per node id and per log file on this machine, by exclusive locks held for life.

Two processes under one node id look to the aggregator like one node reporting twice (the second
price for a minute is refused as a conflict, and the node's health mixes both), and two nodes
appending to one log file interleave their lines: both happen silently when a node is started by
hand with the same config as a scripted one. So before it starts, a node takes `flock` locks on
`<run dir>/node-<node id>.lock` and on its log file, and refuses to start, naming the other
process, when either is held. The kernel drops a lock when its process ends, however it ends
(SIGKILL included), so there is never a stale lock to clean up; the lock file itself stays.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError


@dataclass(frozen=True, slots=True)
class HeldLock:
    """An exclusive lock this process holds until `release` or its exit."""

    path: Path
    descriptor: int

    def release(self) -> None:
        os.close(self.descriptor)


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
    descriptor = _open(path, os.O_RDWR | os.O_CREAT, what="lock file")
    if not _try_lock(descriptor):
        holder = _holder(descriptor)
        os.close(descriptor)
        raise ConfigError(
            f"node id {node_id!r} is already used by another running node ({holder}, lock "
            f"{path}): stop that node or give this one another --node-id"
        )
    # The pid for the message above, read by the next node to try (and by an operator).
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return HeldLock(path, descriptor)


def lock_log_file(log_file: Path) -> HeldLock:
    """Hold a lock on `log_file` itself, so a second node cannot write into it unnoticed.

    The lock is advisory: `tail -f`, logrotate and the run scripts' redirections are unaffected.
    """
    descriptor = _open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what="log file")
    if not _try_lock(descriptor):
        holder = _holder(descriptor)
        os.close(descriptor)
        raise ConfigError(
            f"log file {str(log_file)!r} is already written by another running node ({holder}): "
            "give this node its own --log-file"
        )
    return HeldLock(log_file, descriptor)


def _open(path: Path, flags: int, *, what: str) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise ConfigError(f"{what} {str(path)!r}: cannot open it: {error.strerror}") from None


def _try_lock(descriptor: int) -> bool:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(descriptor: int) -> str:
    """`pid N` of the process holding the lock on the file behind `descriptor`, if it can be told.

    /proc/locks lists each lock with its owner's pid and the file's device and inode; the lock
    file's own content (the pid its holder wrote) is the fallback where /proc/locks is missing.
    """
    info = os.fstat(descriptor)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
                    return f"pid {fields[4]}"
    except OSError:
        pass
    try:
        content = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        content = ""
    return f"pid {content}" if content.isdigit() else "pid unknown"
