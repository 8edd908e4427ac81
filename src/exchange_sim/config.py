"""The simulator's settings, declared once and validated at startup.

Options beat `ORACLE_SIM_*` variables, which beat an optional TOML file (`--config`, tables
`[simulator]` and `[logging]`). Fault flags are command-line only (`exchange_sim.cli`): no file
or variable should inject a fault by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from pydantic import Field

from common.settings import (
    DecimalSetting,
    FilePath,
    HostName,
    LoggingConfig,
    Override,
    Seconds,
    Table,
    layer,
    read_toml,
    validate,
)

DEFAULT_PORT: Final = 8099
ENV_PREFIX: Final = "ORACLE_SIM_"


class SimSettings(Table):
    """`[simulator]`: where to listen and which prices to make."""

    host: HostName = "127.0.0.1"
    """Address to bind; anything but loopback is warned about loudly"""
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """Port to bind; 0 picks a free one (see the banner)"""
    port_file: FilePath | None = None
    """Write the bound port number to this file"""
    seed: int = Field(42, ge=0, le=2**63 - 1)
    """Seed of the price walk; same seed, same candles"""
    price: DecimalSetting = Field(Decimal(100000), gt=0, le=Decimal(10**9))
    """Level the BTC price wanders around"""
    volatility: float = Field(0.0004, ge=0, lt=0.05, allow_inf_nan=False)
    """Per-minute log-volatility of the walk"""
    coinbase_lag_seconds: Seconds = Field(5.0, ge=0, le=600)
    """Coinbase publishes a closed minute only this long after its close"""


class SimFile(Table):
    """The file's layout: one field per table."""

    simulator: SimSettings = SimSettings()
    logging: LoggingConfig = LoggingConfig()


class SimConfig(SimSettings):
    """What the simulator runs with: `[simulator]` flat, the faults to start with, logging."""

    startup_faults: tuple[dict[str, Any], ...] = ()
    """`POST /_sim/faults` bodies applied at startup"""
    logging: LoggingConfig = LoggingConfig()
    source: str = "defaults"
    """The file the settings came from"""


OVERRIDES: Final = tuple(
    Override.named(ENV_PREFIX, option, key)
    for option, key in (
        ("--host", ("simulator", "host")),
        ("--port", ("simulator", "port")),
        ("--port-file", ("simulator", "port_file")),
        ("--seed", ("simulator", "seed")),
        ("--price", ("simulator", "price")),
        ("--volatility", ("simulator", "volatility")),
        ("--coinbase-lag-seconds", ("simulator", "coinbase_lag_seconds")),
        ("--log-file", ("logging", "file")),
        ("--log-level", ("logging", "level")),
    )
)


def load_config(
    path: Path | None,
    given: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    startup_faults: tuple[dict[str, Any], ...] = (),
) -> SimConfig:
    """Read `path` (None: defaults only), apply options (`given`) and `environ`, validate all."""
    source = str(path) if path is not None else "defaults"
    document = read_toml(path) if path is not None else {}
    layers = layer(SimFile, document, OVERRIDES, given or {}, environ or {})
    parsed = validate(SimFile, layers, source)
    return SimConfig(
        **dict(parsed.simulator),
        startup_faults=startup_faults,
        logging=parsed.logging,
        source=source,
    )
