"""Configuration: defaults, the TOML file, options and ORACLE_AGGREGATOR_* variables."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator import cli
from aggregator.config import AggregatorConfig, load_config
from common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_originals():
    config = AggregatorConfig()
    assert (config.host, config.port) == ("0.0.0.0", 50051)
    assert config.node_timeout == 120
    assert config.window == 100


def test_shipped_config_file_loads_with_its_documented_values():
    path = ROOT / "config" / "aggregator.toml"
    config = load_config(path)
    assert config == AggregatorConfig(source=str(path))
    assert config.warnings == ()


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text("[aggregator]\nnode_timout = 30\n")
    with pytest.raises(
        ConfigError,
        match=r"aggregator.toml: \[aggregator\] unknown key 'node_timout'; allowed: host, port, ",
    ):
        load_config(path)


def test_bad_value_names_file_key_and_allowed(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text("[aggregator]\nport = 70000\n")
    with pytest.raises(
        ConfigError,
        match=r"aggregator.toml: \[aggregator\] port: must be an integer from 0 to 65535, "
        r"got 70000$",
    ):
        load_config(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_environment_fills_options_and_options_beat_the_file(tmp_path, monkeypatch):
    path = tmp_path / "aggregator.toml"
    path.write_text('[aggregator]\nport = 50070\nhost = "127.0.0.1"\nstaleness = 90\n')
    seen: list[AggregatorConfig] = []

    async def fake_serve(config: AggregatorConfig) -> None:
        seen.append(config)

    monkeypatch.setattr(cli, "serve", fake_serve)
    monkeypatch.setattr(cli, "start_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(
        cli.main,
        ["--config", str(path), "--port", "50071"],
        env={"ORACLE_AGGREGATOR_NODE_TIMEOUT": "30", "ORACLE_AGGREGATOR_SIMULATE": "true"},
    )
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.port == 50071  # option beats file
    assert config.staleness == 90  # file beats default
    assert config.node_timeout == 30  # environment fills the option
    assert config.simulate
    assert config.host == "127.0.0.1"


def test_taken_port_exits_with_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "aggregator", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
            env={**os.environ, "ORACLE_AGGREGATOR_LOG_FILE": str(tmp_path / "a.log")},
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is taken" in result.stderr


def test_max_price_must_be_positive(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text("[aggregator]\nmax_price = -1\n")
    with pytest.raises(ConfigError, match=r"\[aggregator\] max_price: must be a number above 0"):
        load_config(path)
