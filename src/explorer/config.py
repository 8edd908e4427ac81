"""The explorer's settings: a frozen pydantic v2 model in strict mode, validated once at startup.

Sources, weakest first: defaults, `config/explorer.toml` (tables `[explorer]` and `[logging]`),
then command-line options, which `ORACLE_EXPLORER_*` environment variables fill. An unknown table
or key is an error, not ignored: a typo must not fall back to a default silently. Every error names
the file, the key and what is allowed. (When `common/settings.py` lands, this module adopts it.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_PORT = 8090

# host:port, host a name, IPv4 or bracketed IPv6; the nodes' http:// form is accepted too.
_TARGET = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$")


def normalise_target(target: str) -> str:
    """`http://host:port` and `host:port` alike become `host:port` (what gRPC dials)."""
    for scheme in ("http://", "grpc://"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
    return target.rstrip("/")


class ExplorerConfig(BaseModel):
    """Everything the explorer needs; the defaults suit a local `run_multi_nodes.sh` system."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    # Loopback by default: the explorer is an operator's page until someone decides otherwise.
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    aggregator_target: str = "127.0.0.1:50051"
    # The committer (signed reports, Merkle proofs, anchoring); empty = none: "not anchored yet".
    committer_target: str = ""
    # Deadline of each gRPC call the explorer makes.
    rpc_timeout: float = Field(default=3.0, gt=0, le=60)
    # How often GetAggregatedPrice is polled while SubscribePrices answers UNIMPLEMENTED.
    poll_interval: float = Field(default=2.0, ge=0.2, le=60)
    # How often HealthCheck runs: an aggregator that went away is noticed within this.
    health_interval: float = Field(default=5.0, ge=0.5, le=300)
    # Longest wait between reconnection attempts (exponential backoff up to this).
    reconnect_max: float = Field(default=10.0, ge=0.5, le=300)
    # While SubscribePrices is UNIMPLEMENTED, it is tried again this often (an upgraded
    # aggregator is picked up without restarting the explorer).
    resubscribe_interval: float = Field(default=60.0, ge=1, le=3600)
    # The chart covers this many hours of closed rounds.
    chart_hours: int = Field(default=3, ge=1, le=16)
    # Rounds listed on the front page.
    recent_rounds: int = Field(default=30, ge=1, le=200)
    # Concurrent server-sent event streams; each holds one connection and one small buffer.
    max_streams: int = Field(default=100, ge=1, le=10_000)
    # Seconds between keep-alive comments on an idle event stream (proxies drop silent ones).
    stream_keepalive: float = Field(default=15.0, ge=1, le=300)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: Path | None = None
    source: str = Field(default="defaults", exclude=True)

    @field_validator("aggregator_target", "committer_target")
    @classmethod
    def _valid_target(cls, value: str, info: Any) -> str:  # noqa: ANN401 - pydantic's info
        value = normalise_target(value)
        if value == "" and info.field_name == "committer_target":
            return value
        if not _TARGET.match(value) or not 0 < int(value.rsplit(":", 1)[1]) <= 65535:
            raise ValueError("expected host:port (or http://host:port), port 1 to 65535")
        return value

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the page."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def with_overrides(self, **overrides: object) -> ExplorerConfig:
        """A copy with the given non-None values replaced (how CLI options beat the file)."""
        values = self.model_dump(exclude={"source"})
        values.update({key: value for key, value in overrides.items() if value is not None})
        return build_config(values, source=self.source)


def build_config(values: dict[str, Any], *, source: str = "defaults") -> ExplorerConfig:
    """Validate `values`; a ConfigError names the source, each bad key and what it allows."""
    try:
        return ExplorerConfig(source=source, **values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg']}"
            f" (got {item['input']!r})"
            for item in error.errors()
        )
        raise ConfigError(f"{source}: {problems}") from error


def load_config(path: Path) -> ExplorerConfig:
    """Read `path`: `[explorer]` keys named like the model's fields, `[logging]` level/file."""
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: config file not found") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    keys = set(ExplorerConfig.model_fields) - {"source", "log_level", "log_file"}
    values: dict[str, Any] = {}
    for table, content in document.items():
        if table not in ("explorer", "logging") or not isinstance(content, dict):
            raise ConfigError(f"{path}: unknown table [{table}]; expected [explorer], [logging]")
        for key, value in content.items():
            if table == "explorer" and key in keys:
                values[key] = value
            elif table == "logging" and key in ("level", "file"):
                values[f"log_{key}"] = (
                    Path(value) if key == "file" and isinstance(value, str) else value
                )
            else:
                raise ConfigError(f"{path}: unknown key {key!r} in [{table}]")
    return build_config(values, source=str(path))
