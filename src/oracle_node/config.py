"""The node's configuration: TOML file, then command-line options (or `ORACLE_NODE_*` variables).

The file keeps the original layout (`[oracle]` node_id / aggregator_url / fetch_interval, one table
per exchange with api_url / symbol / timeout / max_retries, `[sources]` enabled, `[logging]` level)
so an operator's existing files still load, extended with new keys. Every key is checked before
anything starts: an unknown key, a wrong type or a bad value is a `ConfigError` naming the file,
the table and the key, because a node that runs with a silently ignored setting is worse than one
that refuses to start.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from common.errors import ConfigError
from common.exchanges import EXCHANGES, MAX_ID_LENGTH, NODE_ID_PATTERN, NODE_ID_RULE
from common.timeutil import MINUTE
from oracle_node.exchanges import get_adapter, quote_of
from oracle_node.validation import PriceBounds

DEFAULT_CONFIG_PATH: Final = Path("config/oracle-node.toml")
DEFAULT_AGGREGATOR_URL: Final = "http://localhost:50051"
DEFAULT_USER_AGENT: Final = "btcfi-oracle-node/0.1 (python-httpx)"
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

_T = TypeVar("_T")

_ORACLE_KEYS: Final = frozenset(
    {
        "node_id",
        "exchange",
        "aggregator_url",
        "fetch_interval",
        "fetch_offset_seconds",
        "fetch_deadline_seconds",
        "simulate",
        "buffer_size",
        "submit_timeout",
        "submit_retries",
        "shutdown_grace_seconds",
    }
)
_EXCHANGE_KEYS: Final = frozenset(
    {"api_url", "symbol", "timeout", "max_retries", "backoff_initial", "backoff_max", "user_agent"}
)
_TABLE_KEYS: Final[dict[str, frozenset[str]]] = {
    "oracle": _ORACLE_KEYS,
    "sources": frozenset({"enabled"}),
    "validation": frozenset({"min_price", "max_price"}),
    "logging": frozenset({"level", "file"}),
    **dict.fromkeys(EXCHANGES, _EXCHANGE_KEYS),
}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for one fetch: `max_retries` retries after the first try."""

    max_retries: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 10.0


@dataclass(frozen=True)
class ExchangeSettings:
    """Where and what to fetch for one exchange."""

    name: str
    api_url: str
    symbol: str
    quote: str
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = DEFAULT_USER_AGENT


@dataclass(frozen=True)
class NodeConfig:
    """Everything one node process needs, validated.

    `fetch_offset` delays each collection by a few seconds after the minute boundary (default 0:
    collection starts at XX:00); `fetch_deadline` is how many seconds after the boundary a minute
    that is not yet published (Coinbase lag) is still polled for before it is skipped.
    """

    node_id: str
    exchange: ExchangeSettings
    aggregator_url: str = DEFAULT_AGGREGATOR_URL
    interval: int = MINUTE
    fetch_offset: float = 0.0
    fetch_deadline: float = 45.0
    bounds: PriceBounds = field(default_factory=PriceBounds)
    simulate: bool = False
    buffer_size: int = 10
    submit_timeout: float = 5.0
    submit_retries: int = 2
    shutdown_grace: float = 5.0
    log_level: str = "info"
    log_file: Path | None = None
    source: Path | None = None

    @property
    def aggregator_target(self) -> str:
        """The `host:port` gRPC target for `aggregator_url`."""
        return grpc_target(self.aggregator_url)


@dataclass(frozen=True)
class Overrides:
    """Values from the command line or `ORACLE_NODE_*` variables; None means "not given"."""

    exchange: str | None = None
    node_id: str | None = None
    aggregator_url: str | None = None
    interval: int | None = None
    api_url: str | None = None
    simulate: bool | None = None
    log_file: Path | None = None
    log_level: str | None = None


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


def load_config(path: Path | None, overrides: Overrides | None = None) -> NodeConfig:
    """Read `path` (None: built-in defaults only), apply `overrides`, validate everything."""
    overrides = overrides or Overrides()
    where = str(path) if path is not None else "<defaults>"
    document: dict[str, object] = {}
    if path is not None:
        document = _read_toml(path)
    reader = _Reader(where, document)
    return _build(reader, overrides, path)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


class _Reader:
    """Typed access to the TOML document that names file, table and key in every error."""

    def __init__(self, where: str, document: Mapping[str, object]) -> None:
        self.where = where
        self.tables: dict[str, Mapping[str, object]] = {}
        for name, table in document.items():
            if name not in _TABLE_KEYS:
                raise ConfigError(
                    f"{where}: unknown table [{name}]; known tables: {', '.join(_TABLE_KEYS)}"
                )
            if not isinstance(table, Mapping):
                raise ConfigError(f"{where}: [{name}] must be a table")
            unknown = sorted(set(table) - _TABLE_KEYS[name])
            if unknown:
                raise ConfigError(
                    f"{where}: [{name}] unknown key {unknown[0]!r}; "
                    f"allowed: {', '.join(sorted(_TABLE_KEYS[name]))}"
                )
            self.tables[name] = table

    def error(self, table: str, key: str, reason: str) -> ConfigError:
        if table == "cli":
            # A command-line option or its ORACLE_NODE_* variable: name the option, not the file.
            return ConfigError(f"option {key}: {reason}")
        return ConfigError(f"{self.where}: [{table}] {key}: {reason}")

    def get(self, table: str, key: str) -> object | None:
        return self.tables.get(table, {}).get(key)

    def string(self, table: str, key: str) -> str | None:
        value = self.get(table, key)
        if value is not None and not isinstance(value, str):
            raise self.error(table, key, f"must be a string, got {value!r}")
        return value

    def integer(self, table: str, key: str) -> int | None:
        value = self.get(table, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(table, key, f"must be an integer, got {value!r}")
        return value

    def number(self, table: str, key: str) -> float | None:
        value = self.get(table, key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(table, key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise self.error(table, key, f"must be finite, got {value!r}")
        return float(value)

    def boolean(self, table: str, key: str) -> bool | None:
        value = self.get(table, key)
        if value is not None and not isinstance(value, bool):
            raise self.error(table, key, f"must be true or false, got {value!r}")
        return value

    def decimal(self, table: str, key: str) -> Decimal | None:
        value = self.get(table, key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(table, key, f"must be a number, got {value!r}")
        try:
            result = Decimal(str(value))
        except InvalidOperation:
            raise self.error(table, key, f"must be a number, got {value!r}") from None
        if not result.is_finite():
            raise self.error(table, key, f"must be finite, got {value!r}")
        return result


def _check(
    reader: _Reader, label: tuple[str, str], value: _T, ok: Callable[[_T], bool], why: str
) -> _T:
    if not ok(value):
        raise reader.error(label[0], label[1], f"{why}, got {value!r}")
    return value


def _build(reader: _Reader, overrides: Overrides, path: Path | None) -> NodeConfig:
    exchange = _exchange_name(reader, overrides)
    settings = _exchange_settings(reader, exchange, overrides)

    node_id = overrides.node_id
    if node_id is None:
        node_id = reader.string("oracle", "node_id")
    if node_id is None:
        node_id = f"{exchange}-node"
    node_label = ("oracle", "node_id") if overrides.node_id is None else ("cli", "--node-id")
    # The aggregator's own rule: an id it refuses would cost every minute's submission.
    _check(
        reader,
        node_label,
        node_id,
        lambda v: 0 < len(v) <= MAX_ID_LENGTH and NODE_ID_PATTERN.fullmatch(v) is not None,
        f"must be 1 to {MAX_ID_LENGTH} characters, {NODE_ID_RULE} (the aggregator refuses "
        "any other id)",
    )

    aggregator_url = (
        overrides.aggregator_url
        or reader.string("oracle", "aggregator_url")
        or DEFAULT_AGGREGATOR_URL
    )
    try:
        grpc_target(aggregator_url)
    except ValueError as exc:
        label = (
            ("oracle", "aggregator_url")
            if overrides.aggregator_url is None
            else ("cli", "--aggregator-url")
        )
        raise reader.error(*label, f"{exc}, got {aggregator_url!r}") from None

    interval = (
        overrides.interval
        if overrides.interval is not None
        else reader.integer("oracle", "fetch_interval")
    )
    interval = MINUTE if interval is None else interval
    interval_label = (
        ("oracle", "fetch_interval") if overrides.interval is None else ("cli", "--interval")
    )
    _check(
        reader,
        interval_label,
        interval,
        lambda v: v > 0 and v % MINUTE == 0,
        "must be a positive multiple of 60 seconds",
    )

    offset = _number_setting(
        reader,
        ("oracle", "fetch_offset_seconds"),
        0.0,
        lambda v: 0 <= v <= 10,
        "must be from 0 to 10 seconds",
    )
    deadline = _number_setting(
        reader,
        ("oracle", "fetch_deadline_seconds"),
        45.0,
        lambda v: offset < v < MINUTE,
        "must be above fetch_offset_seconds and below 60 seconds",
    )

    buffer_size = _integer_setting(
        reader,
        ("oracle", "buffer_size"),
        10,
        lambda v: 1 <= v <= 10_000,
        "must be from 1 to 10000",
    )
    submit_timeout = _number_setting(
        reader,
        ("oracle", "submit_timeout"),
        5.0,
        lambda v: 0 < v <= 60,
        "must be above 0 and at most 60 seconds",
    )
    submit_retries = _integer_setting(
        reader,
        ("oracle", "submit_retries"),
        2,
        lambda v: 0 <= v <= 10,
        "must be from 0 to 10",
    )
    grace = _number_setting(
        reader,
        ("oracle", "shutdown_grace_seconds"),
        5.0,
        lambda v: 0 <= v <= 60,
        "must be from 0 to 60 seconds",
    )

    simulate = (
        overrides.simulate
        if overrides.simulate is not None
        else reader.boolean("oracle", "simulate")
    )

    min_price = reader.decimal("validation", "min_price")
    max_price = reader.decimal("validation", "max_price")
    bounds = PriceBounds(
        min_price=PriceBounds.min_price if min_price is None else min_price,
        max_price=PriceBounds.max_price if max_price is None else max_price,
    )
    _check(
        reader, ("validation", "min_price"), bounds.min_price, lambda v: v > 0, "must be positive"
    )
    _check(
        reader,
        ("validation", "max_price"),
        bounds.max_price,
        lambda v: v > bounds.min_price,
        "must be above min_price",
    )

    log_level = (overrides.log_level or reader.string("logging", "level") or "info").lower()
    level_label = ("logging", "level") if overrides.log_level is None else ("cli", "--log-level")
    _check(
        reader,
        level_label,
        log_level,
        lambda v: v in LOG_LEVELS,
        f"must be one of {', '.join(LOG_LEVELS)}",
    )
    log_file_text = reader.string("logging", "file")
    log_file = overrides.log_file or (Path(log_file_text) if log_file_text else None)

    return NodeConfig(
        node_id=node_id,
        exchange=settings,
        aggregator_url=aggregator_url,
        interval=interval,
        fetch_offset=offset,
        fetch_deadline=deadline,
        bounds=bounds,
        simulate=bool(simulate),
        buffer_size=buffer_size,
        submit_timeout=submit_timeout,
        submit_retries=submit_retries,
        shutdown_grace=grace,
        log_level=log_level,
        log_file=log_file,
        source=path,
    )


def _number_setting(
    reader: _Reader,
    label: tuple[str, str],
    default: float,
    ok: Callable[[float], bool],
    why: str,
) -> float:
    """A number from the file (`default` when absent), refused unless `ok` holds."""
    value = reader.number(*label)
    return _check(reader, label, default if value is None else value, ok, why)


def _integer_setting(
    reader: _Reader,
    label: tuple[str, str],
    default: int,
    ok: Callable[[int], bool],
    why: str,
) -> int:
    """An integer from the file (`default` when absent), refused unless `ok` holds."""
    value = reader.integer(*label)
    return _check(reader, label, default if value is None else value, ok, why)


def _exchange_name(reader: _Reader, overrides: Overrides) -> str:
    """--exchange, else [oracle] exchange, else the one entry of [sources] enabled, else binance."""
    if overrides.exchange is not None:
        if overrides.exchange not in EXCHANGES:
            raise reader.error("cli", "--exchange", f"must be one of {', '.join(EXCHANGES)}")
        return overrides.exchange
    name = reader.string("oracle", "exchange")
    enabled = reader.get("sources", "enabled")
    if enabled is not None and (
        not isinstance(enabled, list) or not all(isinstance(item, str) for item in enabled)
    ):
        raise reader.error(
            "sources", "enabled", f"must be a list of exchange names, got {enabled!r}"
        )
    for item in enabled or []:
        if item not in EXCHANGES:
            raise reader.error(
                "sources", "enabled", f"unknown exchange {item!r}; use {', '.join(EXCHANGES)}"
            )
    if name is None and enabled:
        # The original files name the node's one exchange here; one node serves one exchange.
        if len(enabled) > 1:
            raise reader.error(
                "sources",
                "enabled",
                "lists several exchanges; a node serves one: set [oracle] exchange or --exchange",
            )
        name = enabled[0]
    if name is not None and enabled and name not in enabled:
        raise reader.error(
            "sources", "enabled", f"does not include [oracle] exchange = {name!r}: {enabled!r}"
        )
    name = name or "binance"
    if name not in EXCHANGES:
        raise reader.error(
            "oracle", "exchange", f"must be one of {', '.join(EXCHANGES)}, got {name!r}"
        )
    return name


def _exchange_settings(reader: _Reader, exchange: str, overrides: Overrides) -> ExchangeSettings:
    adapter = get_adapter(exchange)
    api_url = overrides.api_url or reader.string(exchange, "api_url") or adapter.default_api_url
    url_label = (exchange, "api_url") if overrides.api_url is None else ("cli", "--api-url")
    api_url = api_url.rstrip("/")
    parts = urlsplit(api_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise reader.error(
            *url_label,
            f"must be an http(s) base URL such as {adapter.default_api_url!r}, got {api_url!r}",
        )

    symbol = reader.string(exchange, "symbol") or adapter.default_symbol
    try:
        quote = quote_of(symbol)
    except ValueError as exc:
        raise reader.error(exchange, "symbol", str(exc)) from None

    timeout = _number_setting(
        reader,
        (exchange, "timeout"),
        10.0,
        lambda v: 0 < v <= 60,
        "must be above 0 and at most 60 seconds",
    )
    max_retries = _integer_setting(
        reader,
        (exchange, "max_retries"),
        3,
        lambda v: 0 <= v <= 20,
        "must be from 0 to 20",
    )
    initial = _number_setting(
        reader,
        (exchange, "backoff_initial"),
        1.0,
        lambda v: 0 < v <= 30,
        "must be above 0 and at most 30 seconds",
    )
    maximum = _number_setting(
        reader,
        (exchange, "backoff_max"),
        10.0,
        lambda v: initial <= v <= 60,
        "must be from backoff_initial to 60 seconds",
    )
    user_agent = reader.string(exchange, "user_agent") or DEFAULT_USER_AGENT

    return ExchangeSettings(
        name=exchange,
        api_url=api_url,
        symbol=symbol,
        quote=quote,
        timeout=timeout,
        retry=RetryPolicy(max_retries=max_retries, backoff_initial=initial, backoff_max=maximum),
        user_agent=user_agent,
    )
