"""The explorer's settings, declared once (common/settings) and validated at startup.

Options beat `ORACLE_EXPLORER_*` variables, which beat `config/explorer.toml` (tables `[explorer]`
and `[logging]`), which beats the defaults. An unknown table or key, a wrong type or a value out
of range is one line naming the file (or option) and the key, before anything binds a port.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field

from common.settings import (
    HostName,
    LoggingConfig,
    Override,
    Seconds,
    Table,
    layer,
    read_toml,
    validate,
)

DEFAULT_PORT: Final = 8090
DEFAULT_CONFIG_PATH: Final = Path("config/explorer.toml")
ENV_PREFIX: Final = "ORACLE_EXPLORER_"

# host:port, host a name, IPv4 or bracketed IPv6; the nodes' http:// form is accepted too.
_TARGET = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")


def normalise_target(target: object) -> object:
    """`http://host:port` and `host:port` alike become `host:port` (what gRPC dials)."""
    if not isinstance(target, str):
        return target
    for scheme in ("http://", "grpc://"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
    return target.rstrip("/")


def _check_target(target: str) -> str:
    if target and (not _TARGET.match(target) or not 0 < int(target.rsplit(":", 1)[1]) <= 65535):
        raise ValueError("must be host:port (or http://host:port), port 1 to 65535")
    return target


def _required(target: str) -> str:
    if not target:
        raise ValueError("must be host:port, not empty")
    return target


GrpcTarget = Annotated[str, BeforeValidator(normalise_target), AfterValidator(_check_target)]
"""A gRPC server's address, `host:port`; empty only where a field allows "none"."""


class ExplorerSettings(Table):
    """`[explorer]`: where the page listens, what it reads, how it stays live."""

    host: HostName = "127.0.0.1"
    """Address to listen on; anything but loopback is logged as exposed"""
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """HTTP port (0: any free one)"""
    aggregator_target: Annotated[GrpcTarget, AfterValidator(_required)] = "127.0.0.1:50051"
    """Aggregator gRPC address, host:port"""
    committer_target: GrpcTarget = ""
    """Committer gRPC address, host:port; empty: rounds show "not anchored yet\""""
    rpc_timeout: Seconds = Field(3.0, gt=0, le=60)
    """Deadline of each gRPC call"""
    poll_interval: Seconds = Field(2.0, ge=0.2, le=60)
    """GetAggregatedPrice poll period while SubscribePrices answers UNIMPLEMENTED"""
    health_interval: Seconds = Field(5.0, ge=0.5, le=300)
    """HealthCheck period: an aggregator that went away shows within this"""
    reconnect_max: Seconds = Field(10.0, ge=0.5, le=300)
    """Longest wait between reconnection attempts"""
    resubscribe_interval: Seconds = Field(60.0, ge=1, le=3600)
    """How often an UNIMPLEMENTED SubscribePrices is tried again"""
    chart_hours: int = Field(3, ge=1, le=16)
    """Hours of closed rounds in the chart"""
    recent_rounds: int = Field(30, ge=1, le=200)
    """Rounds listed on the front page"""
    max_streams: int = Field(100, ge=1, le=10_000)
    """Concurrent live-update (server-sent events) connections; more get 503"""
    stream_keepalive: Seconds = Field(15.0, ge=1, le=300)
    """Keep-alive comment period on an idle event stream"""


class ExplorerFile(Table):
    """The file's layout: one field per table."""

    explorer: ExplorerSettings = ExplorerSettings()
    logging: LoggingConfig = LoggingConfig()


class ExplorerConfig(ExplorerSettings):
    """What the explorer runs with: `[explorer]` flat, and logging."""

    logging: LoggingConfig = LoggingConfig()
    source: str = "defaults"
    """The file the settings came from"""

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the page."""
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


OVERRIDES: Final = (
    Override.named(ENV_PREFIX, "--host", ("explorer", "host")),
    Override.named(ENV_PREFIX, "--port", ("explorer", "port")),
    Override.named(ENV_PREFIX, "--aggregator", ("explorer", "aggregator_target")),
    Override.named(ENV_PREFIX, "--committer", ("explorer", "committer_target")),
    Override.named(ENV_PREFIX, "--log-file", ("logging", "file")),
    Override.named(ENV_PREFIX, "--log-level", ("logging", "level")),
)


def load_config(
    path: Path | None,
    given: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ExplorerConfig:
    """Read `path` (None: defaults only), apply options (`given`) and `environ`, validate all."""
    source = str(path) if path is not None else "defaults"
    document = read_toml(path) if path is not None else {}
    layers = layer(ExplorerFile, document, OVERRIDES, given or {}, environ or {})
    parsed = validate(ExplorerFile, layers, source)
    return ExplorerConfig(**dict(parsed.explorer), logging=parsed.logging, source=source)
