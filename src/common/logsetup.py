"""structlog configured once per process: JSON lines to a file, readable console on a terminal.

Events are key-value (`event="price_submitted" exchange=... price=...`). Values under keys that
look secret are redacted here, in one place, so no code path can log a key by accident.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

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


def configure_logging(
    level: str = "info",
    log_file: Path | None = None,
    *,
    json: bool | None = None,
    service: str | None = None,
) -> None:
    """Set up structlog for this process.

    With `log_file`, events are appended to it as JSON lines (the operator's `tail -f` target);
    otherwise they go to stderr, as JSON when `json` is true or stderr is not a terminal, else as
    colourless console lines.
    """
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")

    stream: TextIO
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stream = log_file.open("a", encoding="utf-8", buffering=1)
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
        logger_factory=structlog.WriteLoggerFactory(file=stream),
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
