"""The simulator's settings, validated once at startup (the CLI builds this from its flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8099


@dataclass(frozen=True)
class SimConfig:
    """Where to listen, which prices to make, and the faults to start with."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    seed: int = 42
    price: Decimal = Decimal(100000)
    volatility: float = 0.0004
    coinbase_lag_seconds: float = 5.0
    port_file: Path | None = None
    startup_faults: tuple[dict[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not self.price.is_finite() or self.price <= 0:
            raise ValueError(f"price must be a positive number, got {self.price}")
        if not 0 <= self.volatility < 0.05:
            raise ValueError(f"volatility must be in [0, 0.05), got {self.volatility}")
        if not 0 <= self.coinbase_lag_seconds <= 600:
            raise ValueError(
                f"coinbase lag must be 0..600 seconds, got {self.coinbase_lag_seconds}"
            )
