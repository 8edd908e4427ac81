"""The node's configuration: TOML file, then `ORACLE_NODE_*` variables, then command-line options.

The file keeps the original layout (`[oracle]` node_id / aggregator_url / fetch_interval, one table
per exchange with api_url / symbol / timeout / max_retries, `[sources]` enabled, `[logging]` level)
so an operator's existing files still load, extended with new keys. Every table is validated,
those of the exchanges this node does not run included, before anything starts: a node that runs
with a silently ignored setting is worse than one that refuses to start. The file is validated as
`NodeFile`; what the node runs with is the smaller `NodeConfig`, built from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from common.exchanges import MAX_ID_LENGTH, NODE_ID_PATTERN, NODE_ID_RULE, ExchangeName
from common.settings import (
    EXCHANGE_TABLE,
    ConflictError,
    DecimalSetting,
    DirPath,
    LoggingConfig,
    NoRepeats,
    Override,
    Seconds,
    Table,
    TomlList,
    layer,
    number_text,
    read_toml,
    validate,
)
from common.timeutil import MINUTE
from oracle_node.exchanges import get_adapter, quote_of
from oracle_node.validation import PriceBounds

DEFAULT_CONFIG_PATH: Final = Path("config/oracle-node.toml")
DEFAULT_AGGREGATOR_URL: Final = "http://localhost:50051"
DEFAULT_USER_AGENT: Final = "btcfi-oracle-node/0.1 (python-httpx)"
# The venue's USDT/USD pair, whose closes the aggregator uses to turn USDT prices into USD;
# Binance has no USD market, so it collects none by default.
DEFAULT_USDT_RATE_SYMBOL: Final[dict[str, str]] = {
    "binance": "",
    "coinbase": "USDT-USD",
    "kraken": "USDTUSD",
}


def grpc_target(url: str) -> str:
    """`http://host:port` or `host:port` as the `host:port` gRPC wants; TLS is not supported."""
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in {"http", "grpc"}:
            raise ValueError(f"scheme {parts.scheme!r} is not supported; use http://host:port")
        if parts.path not in {"", "/"} or parts.query:
            raise ValueError("must be http://host:port with no path")
        text = parts.netloc
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port or http://host:port with a port from 1 to 65535")
    return text


def _node_id(value: str) -> str:
    # The aggregator's own rule: an id it refuses would cost every minute's submission.
    if not 0 < len(value) <= MAX_ID_LENGTH or NODE_ID_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"must be 1 to {MAX_ID_LENGTH} characters, {NODE_ID_RULE} (the aggregator refuses "
            "any other id)"
        )
    return value


def _aggregator_url(value: str) -> str:
    grpc_target(value)
    return value


def _interval(value: int) -> int:
    if not 0 < value <= 86400 or value % MINUTE:
        raise ValueError("must be a positive multiple of 60 seconds, at most 86400")
    return value


def _api_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
        raise ValueError("must be an http(s) base URL such as 'https://api.kraken.com'")
    return url


def _symbol(value: str) -> str:
    if not 0 < len(value) <= 32 or not value.replace("-", "").replace("/", "").isalnum():
        raise ValueError("must be the venue's pair symbol, e.g. 'BTCUSDT', 'BTC-USD', 'XBTUSD'")
    try:
        quote_of(value)
    except ValueError:
        raise ValueError("is not quoted in USD or USDT (e.g. 'BTCUSDT', 'BTC-USD')") from None
    return value


def _rate_symbol(value: str) -> str:
    if value and (len(value) > 32 or not value.replace("-", "").replace("/", "").isalnum()):
        raise ValueError("must be the venue's USDT/USD symbol (e.g. 'USDTUSD'), or '' for none")
    return value


def _user_agent(value: str) -> str:
    if not 0 < len(value) <= 200 or not value.isprintable():
        raise ValueError("must be 1 to 200 printable characters")
    return value


class OracleSettings(Table):
    """`[oracle]`: who this node is, what it collects and where it submits."""

    node_id: Annotated[str, AfterValidator(_node_id)] | None = Field(
        None, description='Node id sent with every submission  [default: "<exchange>-node"]'
    )
    exchange: ExchangeName | None = Field(
        None, description="Exchange to collect from  [default: [sources] enabled, else binance]"
    )
    aggregator_url: Annotated[str, AfterValidator(_aggregator_url)] = Field(
        DEFAULT_AGGREGATOR_URL, description="gRPC aggregator, http://host:port or host:port"
    )
    fetch_interval: Annotated[int, AfterValidator(_interval)] = Field(
        MINUTE, description="Collection interval in seconds, a positive multiple of 60"
    )
    fetch_offset_seconds: Seconds = Field(
        0.0, ge=0, le=10, description="Start each collection this long after XX:00"
    )
    fetch_deadline_seconds: Seconds = Field(
        45.0, gt=0, lt=MINUTE, description="A minute not published by XX:<this> is skipped"
    )
    simulate: bool = Field(
        False, description="Use the exchange simulator only; submissions are marked simulated"
    )
    buffer_size: int = Field(
        10, ge=1, le=10_000, description="Unsent observations kept while the aggregator is down"
    )
    submit_timeout: Seconds = Field(5.0, gt=0, le=60, description="Seconds per SubmitPrice")
    submit_retries: int = Field(2, ge=0, le=10, description="Quick retries on UNAVAILABLE")
    shutdown_grace_seconds: Seconds = Field(
        5.0, ge=0, le=60, description="On SIGINT/SIGTERM, time the in-flight minute gets"
    )
    run_dir: DirPath = Field(
        Path("run"), description="Directory of the lock that keeps a node id to one process"
    )

    @model_validator(mode="after")
    def _deadline_after_offset(self) -> OracleSettings:
        if self.fetch_deadline_seconds <= self.fetch_offset_seconds:
            raise ConflictError(
                ("fetch_deadline_seconds",),
                f"must be above fetch_offset_seconds = {number_text(self.fetch_offset_seconds)}",
            )
        return self


class SourcesSettings(Table):
    """`[sources]`: the original's list of the exchange(s) a file is for."""

    enabled: Annotated[tuple[ExchangeName, ...], TomlList, NoRepeats] = Field(
        (), description="The exchange this file configures (one node serves one exchange)"
    )


class VenueSettings(Table):
    """`[binance]`, `[coinbase]`, `[kraken]`: one exchange's API and retry policy."""

    api_url: Annotated[str, AfterValidator(_api_url)] | None = Field(
        None, description="Exchange base URL  [default: the venue's public API]"
    )
    symbol: Annotated[str, AfterValidator(_symbol)] | None = Field(
        None, description="BTC pair, quoted in USD or USDT  [default: the venue's usual pair]"
    )
    timeout: Seconds = Field(10.0, gt=0, le=60, description="Seconds per HTTP request")
    max_retries: int = Field(3, ge=0, le=20, description="Retries after the first attempt")
    backoff_initial: Seconds = Field(1.0, gt=0, le=30, description="First retry delay")
    backoff_max: Seconds = Field(10.0, gt=0, le=60, description="Longest retry delay")
    user_agent: Annotated[str, AfterValidator(_user_agent)] = Field(
        DEFAULT_USER_AGENT, description="HTTP User-Agent (Coinbase refuses requests without one)"
    )
    usdt_rate_symbol: Annotated[str, AfterValidator(_rate_symbol)] | None = Field(
        None, description="The venue's USDT/USD pair to collect too; '' for none"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> VenueSettings:
        if self.backoff_max < self.backoff_initial:
            raise ConflictError(
                ("backoff_max",),
                f"must be at least backoff_initial = {number_text(self.backoff_initial)}",
            )
        return self


class PriceLimits(Table):
    """`[validation]`: closes outside [min_price, max_price] are not submitted."""

    min_price: DecimalSetting = Field(PriceBounds.min_price, gt=0, description="Lowest close")
    max_price: DecimalSetting = Field(PriceBounds.max_price, gt=0, description="Highest close")

    @model_validator(mode="after")
    def _ordered(self) -> PriceLimits:
        if self.max_price <= self.min_price:
            raise ConflictError(("max_price",), f"must be above min_price = {self.min_price}")
        return self


class NodeFile(Table):
    """The file's layout: one field per table, every exchange's table always validated."""

    oracle: OracleSettings = OracleSettings()
    sources: SourcesSettings = SourcesSettings()
    binance: VenueSettings = VenueSettings()
    coinbase: VenueSettings = VenueSettings()
    kraken: VenueSettings = VenueSettings()
    validation: PriceLimits = PriceLimits()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _one_exchange(self) -> NodeFile:
        enabled, name = self.sources.enabled, self.oracle.exchange
        if name is None and len(enabled) > 1:
            raise ConflictError(
                ("sources", "enabled"),
                "lists several exchanges; a node serves one: set [oracle] exchange or --exchange",
            )
        if name is not None and enabled and name not in enabled:
            raise ConflictError(
                ("oracle", "exchange"), f"{name!r} is not in [sources] enabled = {list(enabled)}"
            )
        return self

    def venue(self) -> ExchangeName:
        """The exchange run: [oracle] exchange, else [sources]' one entry, else binance."""
        if self.oracle.exchange is not None:
            return self.oracle.exchange
        return self.sources.enabled[0] if self.sources.enabled else "binance"


_VENUE_DEFAULTS: Final = VenueSettings()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for one fetch: `max_retries` retries after the first try."""

    max_retries: int = _VENUE_DEFAULTS.max_retries
    backoff_initial: float = _VENUE_DEFAULTS.backoff_initial
    backoff_max: float = _VENUE_DEFAULTS.backoff_max


@dataclass(frozen=True)
class ExchangeSettings:
    """Where and what to fetch for one exchange (defaults: `VenueSettings`' declarations)."""

    name: str
    api_url: str
    symbol: str
    quote: str
    timeout: float = _VENUE_DEFAULTS.timeout
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = _VENUE_DEFAULTS.user_agent
    usdt_rate_symbol: str = ""


@dataclass(frozen=True)
class NodeConfig:
    """Everything one node process runs with, built from a validated `NodeFile`.

    `fetch_offset` delays each collection by a few seconds after the minute boundary (default 0:
    collection starts at XX:00); `fetch_deadline` is how many seconds after the boundary a minute
    that is not yet published (Coinbase lag) is still polled for before it is skipped.
    """

    node_id: str
    exchange: ExchangeSettings
    aggregator_url: str
    interval: int
    fetch_offset: float
    fetch_deadline: float
    bounds: PriceBounds
    simulate: bool
    buffer_size: int
    submit_timeout: float
    submit_retries: int
    shutdown_grace: float
    logging: LoggingConfig
    run_dir: Path
    source: Path | None

    @property
    def log_level(self) -> str:
        return self.logging.level

    @property
    def log_file(self) -> Path | None:
        return self.logging.file

    @property
    def aggregator_target(self) -> str:
        """The `host:port` gRPC target for `aggregator_url`."""
        return grpc_target(self.aggregator_url)


@dataclass(frozen=True)
class Overrides:
    """Values from the command line (text, or typed in tests); None means "not given"."""

    exchange: object = None
    node_id: object = None
    aggregator_url: object = None
    interval: object = None
    api_url: object = None
    simulate: object = None
    log_file: object = None
    log_level: object = None
    run_dir: object = None


OVERRIDES: Final = (
    Override("--exchange", ("oracle", "exchange"), "ORACLE_NODE_EXCHANGE"),
    Override("--node-id", ("oracle", "node_id"), "ORACLE_NODE_ID"),
    Override("--aggregator-url", ("oracle", "aggregator_url"), "ORACLE_NODE_AGGREGATOR_URL"),
    Override("--interval", ("oracle", "fetch_interval"), "ORACLE_NODE_INTERVAL"),
    Override("--simulate/--no-simulate", ("oracle", "simulate"), "ORACLE_NODE_SIMULATE"),
    Override(
        "--api-url",
        (EXCHANGE_TABLE, "api_url"),
        "ORACLE_NODE_API_URL",
        help="Exchange base URL, overriding the config (e.g. the simulator's "
        "http://127.0.0.1:8099)",
    ),
    Override("--log-file", ("logging", "file"), "ORACLE_NODE_LOG_FILE"),
    Override("--log-level", ("logging", "level"), "ORACLE_NODE_LOG_LEVEL"),
    Override("--run-dir", ("oracle", "run_dir"), "ORACLE_RUN_DIR"),
)


def load_config(
    path: Path | None,
    overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Read `path` (None: built-in defaults only), apply `overrides` and `environ`, validate all."""
    source = str(path) if path is not None else "<defaults>"
    document = read_toml(path) if path is not None else {}
    given = dataclasses.asdict(overrides or Overrides())
    # Two passes: `--api-url` goes to the table of the exchange the node runs, known only once
    # `--exchange`, `[oracle] exchange` and `[sources]` have been read and validated.
    first = layer(NodeFile, document, OVERRIDES, given, environ or {})
    venue = validate(NodeFile, first, source).venue()
    layers = layer(
        NodeFile, document, OVERRIDES, given, environ or {}, tables={EXCHANGE_TABLE: venue}
    )
    return _node_config(validate(NodeFile, layers, source), path)


def _node_config(parsed: NodeFile, path: Path | None) -> NodeConfig:
    name = parsed.venue()
    table: VenueSettings = getattr(parsed, name)
    adapter = get_adapter(name)
    symbol = table.symbol or adapter.default_symbol
    rate_symbol = table.usdt_rate_symbol
    exchange = ExchangeSettings(
        name=name,
        api_url=table.api_url or adapter.default_api_url,
        symbol=symbol,
        quote=quote_of(symbol),
        timeout=table.timeout,
        retry=RetryPolicy(table.max_retries, table.backoff_initial, table.backoff_max),
        user_agent=table.user_agent,
        usdt_rate_symbol=DEFAULT_USDT_RATE_SYMBOL[name] if rate_symbol is None else rate_symbol,
    )
    oracle = parsed.oracle
    return NodeConfig(
        node_id=oracle.node_id or f"{name}-node",
        exchange=exchange,
        aggregator_url=oracle.aggregator_url,
        interval=oracle.fetch_interval,
        fetch_offset=oracle.fetch_offset_seconds,
        fetch_deadline=oracle.fetch_deadline_seconds,
        bounds=PriceBounds(parsed.validation.min_price, parsed.validation.max_price),
        simulate=oracle.simulate,
        buffer_size=oracle.buffer_size,
        submit_timeout=oracle.submit_timeout,
        submit_retries=oracle.submit_retries,
        shutdown_grace=oracle.shutdown_grace_seconds,
        logging=parsed.logging,
        run_dir=oracle.run_dir,
        source=path,
    )
