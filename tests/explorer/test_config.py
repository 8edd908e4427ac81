"""Explorer settings: loopback by default, strict types, unknown keys refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from explorer.config import ExplorerConfig, build_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_bind_loopback_and_point_at_the_local_aggregator() -> None:
    config = ExplorerConfig()
    assert config.host == "127.0.0.1"
    assert config.loopback
    assert config.aggregator_target == "127.0.0.1:50051"
    assert config.committer_target == ""


def test_the_shipped_file_holds_the_defaults() -> None:
    shipped = load_config(ROOT / "config" / "explorer.toml")
    assert shipped.model_dump(exclude={"source"}) == ExplorerConfig().model_dump(exclude={"source"})


def test_strict_types_are_not_coerced() -> None:
    with pytest.raises(ConfigError, match="port"):
        build_config({"port": "8090"}, source="x.toml")
    with pytest.raises(ConfigError, match="poll_interval"):
        build_config({"poll_interval": 0.01}, source="x.toml")


def test_targets_are_normalised_and_checked() -> None:
    config = build_config({"aggregator_target": "http://localhost:50052/"})
    assert config.aggregator_target == "localhost:50052"
    with pytest.raises(ConfigError, match="aggregator_target"):
        build_config({"aggregator_target": "localhost"})
    with pytest.raises(ConfigError, match="committer_target"):
        build_config({"committer_target": "host:99999"})


def test_unknown_keys_and_tables_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "explorer.toml"
    path.write_text("[explorer]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"explorer.toml: unknown key 'prot' in \[explorer\]"):
        load_config(path)
    path.write_text("[explorr]\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_config(path)
    path.write_text('[explorer]\nport = "80"\n')
    with pytest.raises(ConfigError, match=r"explorer\.toml: port"):
        load_config(path)


def test_overrides_beat_the_file_and_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "explorer.toml"
    path.write_text('[explorer]\nport = 9000\n[logging]\nfile = "logs/explorer.log"\n')
    config = load_config(path).with_overrides(port=9001, host=None)
    assert config.port == 9001
    assert config.log_file == Path("logs/explorer.log")
    with pytest.raises(ConfigError):
        config.with_overrides(port=70000)
