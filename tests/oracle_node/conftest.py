"""Every node test starts from structlog's defaults; `sim_server` runs the real simulator.

The CLI tests (and other packages' tests) call `configure_logging`, which filters by level and
caches loggers; without a reset, a later test's `capture_logs` would see nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from exchange_sim.app import SimApp
from exchange_sim.config import SimConfig
from exchange_sim.server import SimServer, serving


@pytest.fixture
def sim_server() -> Iterator[SimServer]:
    """The exchange simulator's real HTTP server on 127.0.0.1:0, on the real clock, no lag."""
    with serving(SimApp(SimConfig(port=0, coinbase_lag_seconds=0))) as server:
        yield server


@pytest.fixture(autouse=True)
def _default_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
