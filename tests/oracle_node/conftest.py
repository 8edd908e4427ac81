"""Every node test starts from structlog's defaults.

The CLI tests (and other packages' tests) call `configure_logging`, which filters by level and
caches loggers; without a reset, a later test's `capture_logs` would see nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _default_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
