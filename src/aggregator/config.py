"""The aggregator's configuration: each setting declared once, validated before anything binds.

Sources, weakest first: defaults (the original's behaviour), the TOML file (`[aggregator]`,
`[database]`, `[streaming]`, `[metrics]`, `[logging]`), `ORACLE_AGGREGATOR_*` variables,
command-line options (`OVERRIDES`).
The keys the rounds and history work reads (`exchanges` to `min_price`, `[database]`) are
declared here with the rest, so a mistake in them stops the aggregator like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from aggregator.metrics import DEFAULT_SETTINGS as DEFAULT_METRICS
from aggregator.streaming_settings import StreamingSettings
from common.exchanges import EXCHANGES, ExchangeName
from common.metrics import MetricsSettings
from common.settings import (
    ConflictError,
    DecimalSetting,
    FilePath,
    HostName,
    LoggingConfig,
    NoRepeats,
    Override,
    Seconds,
    Table,
    TomlList,
    layer,
    number_text,
    read_toml,
    rename_deprecated,
    validate,
)
from common.timeutil import MINUTE

DEFAULT_CONFIG_PATH: Final = Path("config/aggregator.toml")
ENV_PREFIX: Final = "ORACLE_AGGREGATOR_"


class AggregatorSettings(Table):
    """`[aggregator]`: where to listen and the rules a submission and a price must pass."""

    host: HostName = "0.0.0.0"  # the original's address: nodes on other hosts need it
    """Address to listen on"""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port (0: any free port)"""
    node_timeout: Seconds = Field(120.0, ge=1, le=86400)
    """Seconds a node stays active after its last submission"""
    staleness: Seconds = Field(120.0, ge=MINUTE, le=86400)  # below 60 s, stale between candles
    """Seconds a price counts after its candle closed"""
    lateness: Seconds = Field(600.0, ge=MINUTE, le=86400)
    """Reports of candles closed longer ago are refused"""
    max_future: Seconds = Field(120.0, ge=0, le=120)
    """Timestamps further in the future are refused"""
    close_skew: Seconds = Field(5.0, ge=0, le=60)
    """A candle counts once closed by our clock, give or take this"""
    # The ceiling also keeps a hostile price from overflowing decimal arithmetic in the book.
    max_price: float = Field(10_000_000.0, gt=0, le=1e12, allow_inf_nan=False)
    """Higher prices are refused"""
    min_price: float = Field(1000.0, gt=0, le=1e12, allow_inf_nan=False)
    """Lower prices are refused"""
    window: int = Field(100, ge=1, le=100_000)
    """Node reports kept per exchange and minute (more node ids are refused for it)"""
    max_nodes: int = Field(1024, ge=1, le=1_000_000)
    """Node table bound (inactive nodes make room)"""
    simulate: bool = False
    """Accept only simulated prices; answers say SIMULATED"""
    grace_seconds: Seconds = Field(5.0, ge=0.1, le=300)
    """Seconds in-flight calls get after SIGTERM/SIGINT"""
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=4 * 1024 * 1024)
    """Largest request accepted"""
    exchanges: Annotated[tuple[ExchangeName, ...], TomlList, NoRepeats] = Field(
        EXCHANGES, min_length=1
    )
    """Exchanges a round waits for"""
    round_deadline: Seconds = Field(45.0, ge=1, le=3600)
    """Seconds after the candle closed a round closes anyway"""
    max_deviation: DecimalSetting = Field(Decimal("0.01"), gt=0, le=Decimal("0.5"))
    """Inputs further than this fraction from the median are excluded"""
    max_flat_minutes: int = Field(5, ge=1, le=1440)
    """Minutes a venue may repeat its price while the others move"""
    method: Literal["mean", "median"] = "mean"
    """How the kept inputs combine"""
    min_sources: int = Field(2, ge=1, le=16)
    """Kept inputs for status OK (fewer: DEGRADED)"""

    @model_validator(mode="after")
    def _consistent(self) -> AggregatorSettings:
        if self.min_price >= self.max_price:
            raise ConflictError(
                ("min_price",), f"must be below max_price = {number_text(self.max_price)}"
            )
        if self.round_deadline >= self.lateness:
            raise ConflictError(
                ("round_deadline",),
                f"must be below lateness = {number_text(self.lateness)} s (a round closes "
                "before reports of its minute are refused)",
            )
        if self.min_sources > len(self.exchanges):
            raise ConflictError(
                ("min_sources",),
                f"{self.min_sources} can never be met with {len(self.exchanges)} exchange(s)",
            )
        return self


class DatabaseConfig(Table):
    """`[database]`: durable history, read by the history work (SQLite, WAL)."""

    enabled: bool = True
    """Keep history on disk; false: in memory only"""
    path: FilePath = Path("data/aggregator.sqlite3")
    """SQLite database file"""
    retention_days: int = Field(30, ge=1, le=3650)
    """Days of history kept"""


class AggregatorFile(Table):
    """The file's layout: one field per table."""

    aggregator: AggregatorSettings = AggregatorSettings()
    database: DatabaseConfig = DatabaseConfig()
    streaming: StreamingSettings = StreamingSettings()
    metrics: MetricsSettings = DEFAULT_METRICS
    logging: LoggingConfig = LoggingConfig()


class AggregatorConfig(AggregatorSettings):
    """What the aggregator reads: `[aggregator]` keys flat (`config.port`), other tables nested."""

    database: DatabaseConfig = DatabaseConfig()
    streaming: StreamingSettings = StreamingSettings()
    metrics: MetricsSettings = DEFAULT_METRICS
    logging: LoggingConfig = LoggingConfig()
    source: str = "defaults"
    """The file the settings came from"""
    notices: tuple[str, ...] = ()
    """Deprecations found while loading, warned about at startup"""

    @property
    def log_level(self) -> str:
        return self.logging.level

    @property
    def log_file(self) -> Path | None:
        return self.logging.file

    @property
    def warnings(self) -> tuple[str, ...]:
        """Settings allowed but probably not meant, logged loudly at startup."""
        found = list(self.notices)
        if self.node_timeout < MINUTE:
            found.append(
                f"node_timeout = {number_text(self.node_timeout)} s is shorter than the "
                f"{MINUTE} s between two submissions of a node: nodes show as inactive "
                "between their submissions"
            )
        if not self.database.enabled:
            found.append("[database] enabled = false: history is kept in memory only")
        return tuple(found)


OVERRIDES: Final = (
    *(
        Override.named(ENV_PREFIX, option, key)
        for option, key in (
            ("--host", ("aggregator", "host")),
            ("--port", ("aggregator", "port")),
            ("--log-file", ("logging", "file")),
            ("--log-level", ("logging", "level")),
            ("--simulate/--no-simulate", ("aggregator", "simulate")),
            ("--node-timeout", ("aggregator", "node_timeout")),
            ("--staleness", ("aggregator", "staleness")),
            ("--min-sources", ("aggregator", "min_sources")),
            ("--method", ("aggregator", "method")),
            ("--grace", ("aggregator", "grace_seconds")),
            ("--db-path", ("database", "path")),
            ("--history/--no-history", ("database", "enabled")),
            ("--metrics-host", ("metrics", "host")),
            ("--metrics-port", ("metrics", "port")),
            ("--metrics/--no-metrics", ("metrics", "enabled")),
        )
    ),
    Override.named(
        ENV_PREFIX,
        "--quorum",
        ("aggregator", "min_sources"),
        help="Deprecated name of --min-sources",
        deprecated=f"--min-sources ({ENV_PREFIX}MIN_SOURCES)",
    ),
)

_RENAMED: Final = {("aggregator", "quorum"): ("aggregator", "min_sources")}


def load_config(
    path: Path | None,
    given: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AggregatorConfig:
    """Read `path` (None: defaults only), apply options (`given`) and `environ`, validate all."""
    source = str(path) if path is not None else "defaults"
    document = read_toml(path) if path is not None else {}
    notices = rename_deprecated(document, _RENAMED, source)
    layers = layer(AggregatorFile, document, OVERRIDES, given or {}, environ or {})
    parsed = validate(AggregatorFile, layers, source)
    table = parsed.aggregator
    return AggregatorConfig(
        # Only what was set, so `model_fields_set` tells explicit settings from defaults.
        **{name: getattr(table, name) for name in table.model_fields_set},
        database=parsed.database,
        streaming=parsed.streaming,
        metrics=parsed.metrics,
        logging=parsed.logging,
        source=source,
        notices=notices + layers.notices,
    )
