"""One aggregator per history file: an exclusive `flock` on `<database>.lock`, held for life.

Two aggregators writing one history would each believe they own the rounds they close. SQLite's
own locks only serialise transactions, so the lock is ours: `fcntl.flock` on a side file, taken
before the database is even read and released by the kernel when the process ends however it
ends (`kill -9` included), so a crash never leaves a stale lock behind. The holder writes its
pid into the file, only so that the refusal can say who holds it. The file is never deleted:
unlinking a lock file lets two processes each lock a different inode. flock is per open file
description, so a second store in the same process is refused as well. (Linux and BSD only; on
NFS flock is not reliable: keep the history on a local disk.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from common.errors import ConfigError


class ProcessLock:
    """An exclusive lock held until `release` (or the end of the process)."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, lock_path: Path, database: Path) -> ProcessLock:
        """Take the lock or raise ConfigError naming the database and the holder's pid."""
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise ConfigError(
                f"{database}: cannot create the lock file {lock_path}: {error.strerror}"
            ) from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise ConfigError(
                f"{database}: another aggregator{holder} already uses this history (lock "
                f"{lock_path} is held); stop it first, or give this one another [database] path"
            ) from error
        except OSError as error:
            os.close(descriptor)
            raise ConfigError(f"{database}: cannot lock {lock_path}: {error.strerror}") from error
        # The pid is only for the refusal message: a lock file we cannot chmod or write (another
        # owner's) still locks.
        with contextlib.suppress(OSError):
            os.fchmod(descriptor, 0o600)
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        return cls(lock_path, descriptor)

    def release(self) -> None:
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
        os.close(descriptor)  # closing the last descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._descriptor is not None


def _read_holder(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
