"""structlog configured once per process: JSON lines to a file, readable console on a terminal.

Events are key-value (`event="price_submitted" exchange=... price=...`). Values under keys that
look secret are redacted here, in one place, so no code path can log a key by accident.

A log file is the process's own: it rotates it by size (`[logging] max_bytes`, `backups` kept as
`file.1` newest to `file.N` oldest; the standard library's `RotatingFileHandler` underneath
structlog, so no line is lost or split across a rotation), and it holds an exclusive lock on
`<file>.lock` for its lifetime, so a second process given the same log file refuses to start
instead of interleaving its lines and renaming the first one's file away (`common.filelock`).
The lock sits beside the file, not on it, because rotation replaces the file.
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from common.errors import ConfigError
from common.filelock import HeldLock, try_lock

DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024
DEFAULT_BACKUPS: Final = 5

_SECRET_MARKERS = ("secret", "password", "private", "seckey", "token")


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Cached: events reuse a small set of keys, and this runs for every key of every event.
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    for key in event_dict:
        if _is_secret_key(key):
            event_dict[key] = "<redacted>"
    return event_dict


class RotatingLogStream:
    """A text stream for structlog's `WriteLogger` that rotates its file by size.

    Each `write` is one whole rendered line (WriteLogger writes line and newline at once, under
    its lock), handed to a `RotatingFileHandler`, which rolls the file over *before* a line that
    would take it past `max_bytes`: every line lands whole in exactly one file.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self._handler = logging.handlers.RotatingFileHandler(
            path, mode="a", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.terminator = ""  # the line already ends with its newline
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, text: str) -> int:
        record = logging.LogRecord("oracle", logging.INFO, "", 0, text, None, None)
        self._handler.handle(record)
        return len(text)

    def flush(self) -> None:
        self._handler.flush()

    def isatty(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Sink:
    stream: TextIO | RotatingLogStream
    lock: HeldLock | None


# One sink per log file for the life of the process: loggers cached by structlog keep writing to
# the stream they were built with, so a sink is never closed, and configuring the same file again
# (tests do) reuses it rather than locking the file against this very process.
_sinks: dict[Path, _Sink] = {}


def open_log_file(log_file: Path, *, max_bytes: int, backups: int) -> TextIO | RotatingLogStream:
    """The stream for `log_file`, locked against other processes; `ConfigError` if it is taken.

    A FIFO or a device (`/dev/stdout`) is appended to as it is: no rotation and no lock. Where no
    lock file can be created beside the log (a directory this process may not write, which also
    rules out renaming the file), the log file itself is locked and never rotated.
    """
    key = Path(os.path.abspath(log_file))
    if key in _sinks:
        return _sinks[key].stream
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        special = not stat.S_ISREG(os.stat(log_file).st_mode)
    except FileNotFoundError:
        special = False
    if special:
        sink = _Sink(log_file.open("a", encoding="utf-8", buffering=1), None)
    else:
        rotate = max_bytes > 0
        try:
            held = try_lock(log_file.with_name(log_file.name + ".lock"))
        except PermissionError:
            held = try_lock(log_file, write_pid=False)
            rotate = False
        if isinstance(held, str):
            raise ConfigError(
                f"log file {str(log_file)!r} is already written by another running process "
                f"({held}): give this one its own log file (--log-file)"
            )
        stream: TextIO | RotatingLogStream = (
            RotatingLogStream(log_file, max_bytes, backups)
            if rotate
            else log_file.open("a", encoding="utf-8", buffering=1)
        )
        sink = _Sink(stream, held)
    _sinks[key] = sink
    return sink.stream


def configure_logging(
    level: str = "info",
    log_file: Path | None = None,
    *,
    json: bool | None = None,
    service: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backups: int = DEFAULT_BACKUPS,
) -> None:
    """Set up structlog for this process.

    With `log_file`, events are appended to it as JSON lines (the operator's `tail -f` target),
    rotated past `max_bytes` (0: never) with `backups` old files kept; a log file another process
    writes is a `ConfigError`. Otherwise they go to stderr, as JSON when `json` is true or stderr
    is not a terminal, else as colourless console lines.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")

    stream: TextIO | RotatingLogStream
    if log_file is not None:
        stream = open_log_file(log_file, max_bytes=max_bytes, backups=backups)
        use_json = True if json is None else json
    else:
        stream = sys.stderr
        use_json = (not stream.isatty()) if json is None else json

    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    if service is not None:
        processors.insert(0, _bind_service(service))
    renderer: Processor
    if use_json:
        processors.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    processors.append(renderer)

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # WriteLogger needs only write and flush, which a RotatingLogStream has.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, stream)),
        cache_logger_on_first_use=True,
    )


def _bind_service(service: str) -> Processor:
    def add_service(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", service)
        return event_dict

    return add_service


def get_logger(**initial: object) -> structlog.typing.FilteringBoundLogger:
    """A bound logger; configure_logging must have run (tests get structlog's defaults)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger
