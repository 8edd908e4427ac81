"""The node's configuration: TOML file, then `ORACLE_NODE_*` variables, then command-line options.

The file keeps the original layout (`[oracle]` node_id / aggregator_url / fetch_interval, one table
per exchange with api_url / symbol / timeout / max_retries, `[sources]` enabled, `[logging]` level)
so existing files still load. The file is validated whole as `NodeFile`, the tables of exchanges
this node does not run included; the node runs with the smaller `NodeConfig` built from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from common.exchanges import MAX_ID_LENGTH, NODE_ID_PATTERN, NODE_ID_RULE, ExchangeName
from common.settings import (
    EXCHANGE_TABLE,
    ConflictError,
    DecimalSetting,
    DirPath,
    FilePath,
    LoggingConfig,
    NoRepeats,
    Override,
    Seconds,
    Table,
    TomlList,
    checked,
    layer,
    number_text,
    read_toml,
    validate,
)
from oracle_node.exchanges import get_adapter, quote_of
from oracle_node.exchanges.base import pair_of
from oracle_node.metrics import NodeMetricsSettings
from oracle_node.validation import PriceBounds

DEFAULT_CONFIG_PATH: Final = Path("config/oracle-node.toml")
DEFAULT_USER_AGENT: Final = "btcfi-oracle-node/0.1 (python-httpx)"
# The pair whose closes let the aggregator turn USDT prices into USD; Binance has no USD market.
DEFAULT_USDT_RATE_SYMBOL: Final = {"binance": "", "coinbase": "USDT-USD", "kraken": "USDTUSD"}


def grpc_target(url: str) -> str:
    """`http://host:port` or `host:port` as the `host:port` gRPC wants (TLS: `tls_ca`)."""
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


def _node_id(value: str) -> None:
    # The aggregator's own rule: an id it refuses would cost every minute's submission.
    if not 0 < len(value) <= MAX_ID_LENGTH or NODE_ID_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"must be 1 to {MAX_ID_LENGTH} characters, {NODE_ID_RULE} (the aggregator refuses "
            "any other id)"
        )


def _api_url(value: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
        raise ValueError("must be an http(s) base URL such as 'https://api.kraken.com'")
    return url


def _pair(value: str) -> bool:
    return 0 < len(value) <= 32 and value.replace("-", "").isalnum()


def _btc_symbol(value: str) -> None:
    if not _pair(value):
        raise ValueError("must be the venue's pair symbol, e.g. 'BTCUSDT', 'BTC-USD', 'XBTUSD'")
    try:
        quote_of(value)
    except ValueError:
        raise ValueError("is not quoted in USD or USDT (e.g. 'BTCUSDT', 'BTC-USD')") from None


def _rate_symbol(value: str) -> None:
    if value and not _pair(value):
        raise ValueError("must be the venue's USDT/USD symbol (e.g. 'USDTUSD'), or '' for none")
    try:
        usdt_usd = not value or pair_of(value) == ("USDT", "USD")
    except ValueError:
        usdt_usd = False
    if not usdt_usd:
        raise ValueError("is not a USDT/USD pair (e.g. 'USDTUSD', 'USDT-USD'), or '' for none")


def _host_name(value: str) -> None:
    if not 0 < len(value) <= 253 or any(char.isspace() or char in "/[]:" for char in value):
        raise ValueError("must be a host name such as 'aggregator.example'")


def _user_agent(value: str) -> None:
    if not 0 < len(value) <= 200 or not value.isprintable():
        raise ValueError("must be 1 to 200 printable characters")


class OracleSettings(Table):
    """`[oracle]`: who this node is, what it collects and where it submits."""

    node_id: Annotated[str, checked(_node_id)] | None = None
    """Node id sent with every submission  [default: "<exchange>-node"]"""
    exchange: ExchangeName | None = None
    """Exchange to collect from  [default: [sources] enabled, else binance]"""
    aggregator_url: Annotated[str, checked(grpc_target)] = "http://localhost:50051"
    """gRPC aggregator, http://host:port or host:port"""
    fetch_interval: int = Field(60, ge=60, le=86400, multiple_of=60)
    """Collection interval in seconds"""
    fetch_offset_seconds: Seconds = Field(0.0, ge=0, le=10)
    """Start each collection this long after XX:00"""
    fetch_deadline_seconds: Seconds = Field(45.0, gt=0, lt=60)
    """A minute not published this long after XX:00 is skipped"""
    simulate: bool = False
    """Use the exchange simulator only; submissions are marked simulated"""
    buffer_size: int = Field(10, ge=1, le=10_000)
    """Unsent observations kept while the aggregator is down"""
    submit_timeout: Seconds = Field(5.0, gt=0, le=60)
    """Seconds per SubmitPrice call"""
    submit_retries: int = Field(2, ge=0, le=10)
    """Quick retries on UNAVAILABLE before buffering"""
    # One long-lived StreamPrices stream instead of a call per observation; any break of the
    # stream falls back to unary SubmitPrice, so "stream" can never lose what "unary" delivers.
    transport: Literal["unary", "stream"] = "unary"
    """How observations are sent: "unary" SubmitPrice, or one "stream" (StreamPrices)"""
    shutdown_grace_seconds: Seconds = Field(5.0, ge=0, le=60)
    """On SIGINT/SIGTERM, time the in-flight minute gets"""
    run_dir: DirPath = Path("run")
    """Directory of the lock that keeps a node id to one process"""
    key_file: FilePath | None = None
    """The node's signing key, mode 0600 (`oracle-node keygen`); unset: submissions unsigned"""
    tls_ca: FilePath | None = None
    """PEM CA the aggregator's TLS certificate is checked against; unset: plaintext"""
    tls_client_cert: FilePath | None = None
    """PEM client certificate for mutual TLS"""
    tls_client_key: FilePath | None = None
    """PEM private key of the client certificate, mode 0600"""
    tls_server_name: Annotated[str, checked(_host_name)] | None = None
    """Name the aggregator's certificate is checked against, if not the URL's host"""

    @model_validator(mode="after")
    def _tls_pairs(self) -> OracleSettings:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            missing = "tls_client_key" if self.tls_client_key is None else "tls_client_cert"
            raise ConflictError((missing,), "set tls_client_cert and tls_client_key together")
        if self.tls_client_cert is not None and self.tls_ca is None:
            raise ConflictError(("tls_ca",), "mutual TLS needs tls_ca (the aggregator's CA) too")
        return self

    @model_validator(mode="after")
    def _deadline_after_offset(self) -> OracleSettings:
        if self.fetch_deadline_seconds <= self.fetch_offset_seconds:
            offset = number_text(self.fetch_offset_seconds)
            raise ConflictError(
                ("fetch_deadline_seconds",), f"must be above fetch_offset_seconds = {offset}"
            )
        return self


class SourcesSettings(Table):
    """`[sources]`: the original's list of the exchange a file is for."""

    enabled: Annotated[tuple[ExchangeName, ...], TomlList, NoRepeats] = ()
    """The exchange this file configures (a node serves one)"""


class VenueSettings(Table):
    """`[binance]`, `[coinbase]`, `[kraken]`: one exchange's API and retry policy."""

    api_url: Annotated[str, AfterValidator(_api_url)] | None = None
    """Exchange base URL  [default: the venue's public API]"""
    symbol: Annotated[str, checked(_btc_symbol)] | None = None
    """BTC pair, quoted in USD or USDT  [default: the venue's usual pair]"""
    timeout: Seconds = Field(10.0, gt=0, le=60)
    """Seconds per HTTP request"""
    max_retries: int = Field(3, ge=0, le=20)
    """Retries after the first attempt"""
    backoff_initial: Seconds = Field(1.0, gt=0, le=30)
    """First retry delay; doubles per retry, plus jitter"""
    backoff_max: Seconds = Field(10.0, gt=0, le=60)
    """Longest retry delay"""
    user_agent: Annotated[str, checked(_user_agent)] = DEFAULT_USER_AGENT
    """HTTP User-Agent (Coinbase refuses requests without one)"""
    usdt_rate_symbol: Annotated[str, checked(_rate_symbol)] | None = None
    """The venue's USDT/USD pair, collected too; '' for none"""

    @model_validator(mode="after")
    def _backoff_order(self) -> VenueSettings:
        if self.backoff_max < self.backoff_initial:
            initial = number_text(self.backoff_initial)
            raise ConflictError(("backoff_max",), f"must be at least backoff_initial = {initial}")
        return self


class PriceLimits(Table):
    """`[validation]`: closes outside [min_price, max_price] are not submitted."""

    min_price: DecimalSetting = Field(PriceBounds.min_price, gt=0)
    """Lowest close submitted"""
    max_price: DecimalSetting = Field(PriceBounds.max_price, gt=0)
    """Highest close submitted"""

    @model_validator(mode="after")
    def _ordered(self) -> PriceLimits:
        if self.max_price <= self.min_price:
            raise ConflictError(("max_price",), f"must be above min_price = {self.min_price}")
        return self


class NodeFile(Table):
    """The file's layout: one field per table, every exchange's table validated."""

    oracle: OracleSettings = OracleSettings()
    sources: SourcesSettings = SourcesSettings()
    binance: VenueSettings = VenueSettings()
    coinbase: VenueSettings = VenueSettings()
    kraken: VenueSettings = VenueSettings()
    validation: PriceLimits = PriceLimits()
    metrics: NodeMetricsSettings = NodeMetricsSettings()
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
        return self.oracle.exchange or (self.sources.enabled or ("binance",))[0]


_VENUE: Final = VenueSettings()  # the declared defaults, for code that builds settings directly


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for one fetch: `max_retries` retries after the first try."""

    max_retries: int = _VENUE.max_retries
    backoff_initial: float = _VENUE.backoff_initial
    backoff_max: float = _VENUE.backoff_max


@dataclass(frozen=True)
class ExchangeSettings:
    """Where and what to fetch for one exchange."""

    name: str
    api_url: str
    symbol: str
    quote: str
    timeout: float = _VENUE.timeout
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = _VENUE.user_agent
    usdt_rate_symbol: str = ""


@dataclass(frozen=True)
class TlsClientSettings:
    """TLS to the aggregator: the CA to trust and, for mutual TLS, the client certificate."""

    ca: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class NodeConfig:
    """What one node process runs with: `[oracle]` under the names the node uses, one venue."""

    node_id: str
    exchange: ExchangeSettings
    aggregator_url: str
    interval: int
    fetch_offset: float  # collection starts this long after XX:00
    fetch_deadline: float  # a minute not published by XX:<this> (Coinbase lag) is skipped
    bounds: PriceBounds
    simulate: bool
    buffer_size: int
    submit_timeout: float
    submit_retries: int
    shutdown_grace: float
    logging: LoggingConfig
    run_dir: Path
    source: Path | None
    transport: Literal["unary", "stream"] = "unary"
    metrics: NodeMetricsSettings = field(default_factory=NodeMetricsSettings)
    key_file: Path | None = None
    tls: TlsClientSettings | None = None

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
    transport: object = None
    metrics_port: object = None
    metrics_host: object = None
    key_file: object = None
    tls_ca: object = None


def _option(option: str, key: tuple[str, str], **extra: str) -> Override:
    return Override.named("ORACLE_NODE_", option, key, **extra)


OVERRIDES: Final = (
    _option("--exchange", ("oracle", "exchange")),
    Override("--node-id", ("oracle", "node_id"), "ORACLE_NODE_ID"),
    _option("--aggregator-url", ("oracle", "aggregator_url")),
    _option("--interval", ("oracle", "fetch_interval")),
    _option("--simulate/--no-simulate", ("oracle", "simulate")),
    _option(
        "--api-url",
        (EXCHANGE_TABLE, "api_url"),
        help="Exchange base URL, overriding the config (e.g. http://127.0.0.1:8099)",
    ),
    _option("--log-file", ("logging", "file")),
    _option("--log-level", ("logging", "level")),
    Override("--run-dir", ("oracle", "run_dir"), "ORACLE_RUN_DIR"),  # the run scripts' variable
    _option("--transport", ("oracle", "transport")),
    _option("--metrics-port", ("metrics", "port")),
    _option("--metrics-host", ("metrics", "host")),
    _option("--key-file", ("oracle", "key_file")),
    _option("--tls-ca", ("oracle", "tls_ca")),
)


def load_config(
    path: Path | None, overrides: Overrides | None = None, environ: Mapping[str, str] | None = None
) -> NodeConfig:
    """Read `path` (None: built-in defaults only), apply `overrides` and `environ`, validate all."""
    source = str(path) if path is not None else "<defaults>"
    document = read_toml(path) if path is not None else {}
    given, env = dataclasses.asdict(overrides or Overrides()), environ or {}
    # Two passes: `--api-url` goes to the table of the exchange the node runs, known only once
    # `--exchange`, `[oracle] exchange` and `[sources]` have been read and validated.
    venue = validate(NodeFile, layer(NodeFile, document, OVERRIDES, given, env), source).venue()
    layers = layer(NodeFile, document, OVERRIDES, given, env, tables={EXCHANGE_TABLE: venue})
    parsed = validate(NodeFile, layers, source)
    table: VenueSettings = getattr(parsed, venue)
    adapter, oracle = get_adapter(venue), parsed.oracle
    symbol = table.symbol or adapter.default_symbol
    rate = table.usdt_rate_symbol
    exchange = ExchangeSettings(
        name=venue,
        api_url=table.api_url or adapter.default_api_url,
        symbol=symbol,
        quote=quote_of(symbol),
        timeout=table.timeout,
        retry=RetryPolicy(table.max_retries, table.backoff_initial, table.backoff_max),
        user_agent=table.user_agent,
        usdt_rate_symbol=DEFAULT_USDT_RATE_SYMBOL[venue] if rate is None else rate,
    )
    return NodeConfig(
        node_id=oracle.node_id or f"{venue}-node",
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
        transport=oracle.transport,
        metrics=parsed.metrics,
        key_file=oracle.key_file,
        tls=None
        if oracle.tls_ca is None
        else TlsClientSettings(
            oracle.tls_ca, oracle.tls_client_cert, oracle.tls_client_key, oracle.tls_server_name
        ),
    )
