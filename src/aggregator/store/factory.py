"""`open_store`: the history the configuration asks for, or a ConfigError naming the path."""

from __future__ import annotations

from pathlib import Path

from aggregator.store.memory import InMemoryHistoryStore
from aggregator.store.protocol import DatabaseSettings, HistoryStore
from aggregator.store.sqlite import SqliteHistoryStore
from common.errors import ConfigError
from common.logsetup import get_logger
from common.timeutil import Clock, system_clock

_log = get_logger(service="aggregator")

# Retention beyond ten years is a typo, not a policy.
MAX_RETENTION_DAYS = 3650


def check_settings(settings: DatabaseSettings) -> Path:
    """The checks the store itself needs, whatever validated the config before."""
    if not isinstance(settings.enabled, bool):
        raise ConfigError(f"[database] enabled = {settings.enabled!r}: expected true or false")
    days = settings.retention_days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_RETENTION_DAYS:
        raise ConfigError(
            f"[database] retention_days = {days!r}: expected an integer from 1 to "
            f"{MAX_RETENTION_DAYS}"
        )
    path = Path(settings.path)
    if not str(settings.path).strip():
        raise ConfigError("[database] path is empty: expected a file path")
    return path


def open_store(
    config: DatabaseSettings, *, simulate: bool, clock: Clock = system_clock
) -> HistoryStore:
    """SQLite (WAL) at `config.path`, or in memory when `config.enabled` is false.

    Raises ConfigError, naming the path, when the file is corrupt, not SQLite, another
    application's database, of a newer schema, in the other mode (simulated vs real),
    unwritable, or held by another aggregator.
    """
    path = check_settings(config)
    if not config.enabled:
        _log.warning(
            "history_in_memory_only",
            message=(
                "[database] enabled = false: history is kept in memory only; a restart forgets "
                "every observation, round and node, and GetPriceHistory covers this run only"
            ),
        )
        return InMemoryHistoryStore(
            simulate=simulate, clock=clock, retention_days=config.retention_days
        )
    return SqliteHistoryStore(
        path, simulate=simulate, clock=clock, retention_days=config.retention_days
    )
