"""Committer fixtures: keys in a temp dir, a config on port 0, the fake aggregator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from committer.app import Committer, Keys
from committer.config import CommitterConfig, build_config
from committer.store import open_store
from common.schnorr import SigningKey
from tests.committer.fake_aggregator import FakeAggregator, start_fake_aggregator

ORACLE_KEY = SigningKey(bytes.fromhex("42" * 32))
SEED = bytes.fromhex("5e" * 32)
ANCHOR_KEY = SigningKey(bytes.fromhex("77" * 32))


def make_config(tmp_path: Path, **tables: dict[str, object]) -> CommitterConfig:
    document: dict[str, object] = {
        "committer": {
            "database": str(tmp_path / "db" / "committer.sqlite3"),
            "key_file": str(tmp_path / "keys" / "committer.key"),
            "nonce_seed_file": str(tmp_path / "keys" / "seed.key"),
            "port": 0,
            "http_port": 0,
            "backfill_seconds": 86_400,
            "resync_seconds": 3600.0,
            "reconnect_max_seconds": 0.2,
            **tables.pop("committer", {}),
        },
        "anchor": {
            "psbt_dir": str(tmp_path / "psbt"),
            "anchor_key_file": str(tmp_path / "keys" / "anchor.key"),
            "signer": "local",
            "settle_seconds": 0,
            **tables.pop("anchor", {}),
        },
        **tables,
    }
    return build_config(document, source="test")


def keys() -> Keys:
    return Keys(ORACLE_KEY, SEED, ANCHOR_KEY, ANCHOR_KEY.public_key)


@pytest.fixture
def committer_factory(tmp_path: Path) -> Iterator[Callable[..., Committer]]:
    opened: list[Committer] = []

    def factory(config: CommitterConfig | None = None, **tables: dict[str, object]) -> Committer:
        config = config or make_config(tmp_path, **tables)
        committer = Committer(config, open_store(config.committer.database), keys())
        opened.append(committer)
        return committer

    yield factory
    for committer in opened:
        committer.store.close()


@pytest.fixture
async def aggregator() -> AsyncIterator[tuple[int, FakeAggregator]]:
    server, port, servicer = await start_fake_aggregator()
    yield port, servicer
    await server.stop(None)
