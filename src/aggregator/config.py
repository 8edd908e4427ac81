"""The aggregator's configuration: a frozen dataclass, validated once at startup.

Sources, weakest first: defaults (the original's behaviour), `config/aggregator.toml` (table
`[aggregator]`, plus `[logging]`), then command-line options, which `ORACLE_AGGREGATOR_*`
environment variables fill. Every error names the file, the key and what is allowed, before
anything binds a port.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from common.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """`[database]`: the durable history (aggregator/store). Interim, unvalidated here: the
    store checks what it needs at open; the config rewrite adds TOML loading and validation."""

    # false: history in memory only (loudly logged); a restart forgets everything.
    enabled: bool = True
    # SQLite file (WAL mode); relative paths are relative to the working directory.
    path: Path = Path("data/aggregator.sqlite3")
    # Observations, rounds and evidence older than this many days are pruned.
    retention_days: int = 30


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    """Everything the aggregator needs to run; defaults reproduce the original's behaviour."""

    # 0.0.0.0:50051 is the original's hard-coded address; nodes on other hosts need it.
    host: str = "0.0.0.0"
    port: int = 50051
    # A node counts as active while it submitted within this many seconds (original: 120).
    node_timeout: float = 120.0
    # An exchange's price counts while its candle closed at most this many seconds ago.
    staleness: float = 120.0
    # Observations older than this (after their candle closed) are refused; inside it, late
    # observations (e.g. redelivered from a node's buffer after an outage) are stored.
    lateness: float = 600.0
    # Timestamps further than this in the future are refused (clock skew allowance).
    max_future: float = 120.0
    # A candle counts once it has closed by the aggregator's clock, give or take this much
    # (nodes' clocks may run slightly ahead); until then it is stored and waits.
    close_skew: float = 5.0
    # Sanity ceiling on a submitted price (USD/USDT per BTC), the nodes' default bound: a price
    # above it is refused before it can reach the book (and overflow decimal arithmetic).
    max_price: float = 10_000_000.0
    # Observations kept per exchange (the original kept 100 in all).
    window: int = 100
    # Minimum number of fresh exchanges for an aggregate; 1 reproduces the original.
    quorum: int = 1
    # Upper bound of the node table, so hostile node ids cannot grow memory without bound. When
    # it is full, the least recently seen inactive node is forgotten to make room; only a table
    # full of active nodes refuses a new id.
    max_nodes: int = 1024
    # Simulate mode: accept only simulated prices and say SIMULATED everywhere.
    simulate: bool = False
    # In-flight RPCs get this long to finish after SIGTERM/SIGINT.
    grace_seconds: float = 5.0
    # Largest request accepted on the wire; the biggest legitimate request is well under 1 KiB.
    max_message_bytes: int = 64 * 1024
    log_level: str = "info"
    log_file: Path | None = None
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        _validate(self)

    def with_overrides(self, **overrides: object) -> AggregatorConfig:
        """A copy with the given non-None values replaced (how CLI options beat the file)."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _validate(config: AggregatorConfig) -> None:
    where = config.source

    def fail(key: str, allowed: str, value: object) -> ConfigError:
        return ConfigError(f"{where}: {key} = {value!r} is invalid; expected {allowed}")

    if not isinstance(config.host, str) or not config.host:
        raise fail("host", "a host name or IP address", config.host)
    if not isinstance(config.port, int) or not 0 <= config.port <= 65535:
        raise fail("port", "an integer from 0 to 65535", config.port)
    for key in ("node_timeout", "staleness", "lateness", "grace_seconds"):
        if not _positive(getattr(config, key)):
            raise fail(key, "a positive number of seconds", getattr(config, key))
    if not _positive(config.max_price) or config.max_price > 1e12:
        raise fail("max_price", "a positive number up to 1e12", config.max_price)
    if not isinstance(config.max_future, int | float) or not 0 <= config.max_future <= 120:
        raise fail("max_future", "seconds from 0 to 120", config.max_future)
    if not isinstance(config.close_skew, int | float) or not 0 <= config.close_skew <= 60:
        raise fail("close_skew", "seconds from 0 to 60", config.close_skew)
    for key, low, high in (
        ("window", 1, 100_000),
        ("quorum", 1, 16),
        ("max_nodes", 1, 1_000_000),
        ("max_message_bytes", 1024, 4 * 1024 * 1024),
    ):
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise fail(key, f"an integer from {low} to {high}", value)
    if not isinstance(config.simulate, bool):
        raise fail("simulate", "true or false", config.simulate)
    if config.log_level not in LOG_LEVELS:
        raise fail("log_level", " | ".join(LOG_LEVELS), config.log_level)


_FILE_KEYS = {f.name for f in fields(AggregatorConfig)} - {
    "source",
    "log_level",
    "log_file",
    "database",
}


def load_config(path: Path) -> AggregatorConfig:
    """Read `path`: `[aggregator]` keys named like the dataclass fields, `[logging]` level/file.

    An unknown table or key is an error rather than ignored: a typo must not silently fall back
    to a default on a production oracle.
    """
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: config file not found") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error

    values: dict[str, Any] = {}
    for table, content in document.items():
        if table not in ("aggregator", "logging") or not isinstance(content, dict):
            raise ConfigError(f"{path}: unknown table [{table}]; expected [aggregator], [logging]")
        for key, value in content.items():
            if table == "aggregator" and key in _FILE_KEYS:
                values[key] = value
            elif table == "logging" and key in ("level", "file"):
                values[f"log_{key}"] = Path(value) if key == "file" else value
            else:
                raise ConfigError(f"{path}: unknown key {key!r} in [{table}]")
    return AggregatorConfig(source=str(path), **values)
