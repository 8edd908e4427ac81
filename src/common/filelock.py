"""Exclusive `flock` locks held for a process's lifetime, and who holds one when it is taken.

Two processes must never share a node id or a log file (their lines interleave, and with log
rotation each would rename the other's file away). A lock taken with `flock` is dropped by the
kernel when its process ends, however it ends (SIGKILL included), so there is never a stale lock
to clean up; the lock file itself stays. The holder of a taken lock is read from /proc/locks (its
owner's pid beside the file's device and inode), with the pid the holder wrote into the file as
the fallback, and named with its command line so the operator knows which process to look at.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from common.procnet import command_line


@dataclass(frozen=True, slots=True)
class HeldLock:
    """An exclusive lock this process holds until `release` or its exit."""

    path: Path
    descriptor: int

    def release(self) -> None:
        os.close(self.descriptor)


def try_lock(path: Path, *, write_pid: bool = True) -> HeldLock | str:
    """Lock `path` (created 0644 if missing): the held lock, or a description of its holder.

    With `write_pid`, the file's content becomes this process's pid, for the next process to try
    (and for an operator) where /proc/locks cannot be read. OSError when the file cannot be
    opened.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(descriptor)
        os.close(descriptor)
        return holder
    except OSError:
        os.close(descriptor)
        raise
    if write_pid:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return HeldLock(path, descriptor)


def lock_holder(descriptor: int) -> str:
    """`pid N (command line)` of the process holding the lock on the file behind `descriptor`."""
    pid = _holder_pid(descriptor)
    if pid is None:
        return "pid unknown"
    command = command_line(pid)
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def holder_of(path: Path) -> str | None:
    """Who holds the `flock` lock on `path` (`pid N (command line)`), None when nobody does.

    Read from /proc/locks only, never by trying the lock: asking must not, even for an instant,
    make the file look taken to a process starting at that moment. None also when the file does
    not exist or /proc/locks cannot be read.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    pid = _locks_entry(info)
    if pid is None:
        return None
    command = command_line(pid)
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def _locks_entry(info: os.stat_result) -> int | None:
    """The pid /proc/locks lists as holding a FLOCK on the file of `info`."""
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
                    return int(fields[4]) if fields[4].isdigit() else None
    except OSError:
        pass
    return None


def _holder_pid(descriptor: int) -> int | None:
    pid = _locks_entry(os.fstat(descriptor))
    if pid is not None:
        return pid
    try:
        content = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        content = ""
    return int(content) if content.isdigit() else None
