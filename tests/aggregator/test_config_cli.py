"""Configuration: defaults, the TOML file, options and ORACLE_AGGREGATOR_* variables."""

import os
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator import cli
from aggregator.config import AggregatorConfig, DatabaseConfig, load_config
from common.errors import ConfigError
from tests.signing_helpers import key_for, write_allowlist

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _allowlist(tmp_path, monkeypatch):
    """The command refuses to start without an allowlist (signatures are required by default):
    these tests are about the other settings, so every command here gets one."""
    path = write_allowlist(
        tmp_path / "allowlist.toml", [("oracle-node-1", key_for("1"), ("binance",))]
    )
    monkeypatch.setenv("ORACLE_AGGREGATOR_ALLOWLIST", str(path))


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
    # One clear line naming the holder; no raw gRPC `add_port.cc` line before it.
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"Error: cannot listen on 127.0.0.1:{port} (the aggregator's gRPC port): "
        f"the port is taken by pid {os.getpid()} ("
    )
    assert "add_port" not in result.stderr


def test_max_price_must_be_positive(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text("[aggregator]\nmax_price = -1\n")
    with pytest.raises(ConfigError, match=r"\[aggregator\] max_price: must be a number above 0"):
        load_config(path)


def test_new_keys_and_database_table_are_read(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text(
        "[aggregator]\nexchanges = ['kraken', 'coinbase']\nround_deadline = 30\n"
        "max_deviation = '0.02'\nmax_flat_minutes = 3\nmethod = 'median'\nmin_sources = 2\n"
        "min_price = 500\n"
        "[database]\nenabled = false\npath = 'var/history.db'\nretention_days = 7\n"
    )
    config = load_config(path)
    assert config.exchanges == ("kraken", "coinbase")
    assert (config.round_deadline, config.max_flat_minutes, config.method) == (30, 3, "median")
    assert config.max_deviation == Decimal("0.02")
    assert (config.min_sources, config.min_price) == (2, 500)
    assert config.database == DatabaseConfig(
        enabled=False, path=Path("var/history.db"), retention_days=7
    )
    assert "history is kept in memory only" in config.warnings[0]
    # A TOML float becomes the decimal it prints as, not the binary fraction behind it.
    path.write_text("[aggregator]\nmax_deviation = 0.03\n")
    assert str(load_config(path).max_deviation) == "0.03"


def test_defaults_of_the_new_keys_are_the_agreed_ones():
    config = AggregatorConfig()
    assert config.exchanges == ("binance", "coinbase", "kraken")
    assert (config.round_deadline, config.max_deviation) == (45, Decimal("0.01"))
    assert (config.max_flat_minutes, config.method, config.min_sources) == (5, "mean", 2)
    assert config.min_price == 1000
    assert config.database == DatabaseConfig()
    assert (config.database.enabled, config.database.retention_days) == (True, 30)
    assert config.database.path == Path("data/aggregator.sqlite3")


def test_quorum_is_a_deprecated_name_of_min_sources(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text("[aggregator]\nquorum = 3\n")
    config = load_config(path)
    assert config.min_sources == 3
    assert config.warnings == (
        f"{path}: [aggregator] quorum is deprecated; use [aggregator] min_sources",
    )
    from_option = load_config(None, {"quorum": "2"})
    assert from_option.min_sources == 2
    assert from_option.notices == (
        "option --quorum is deprecated; use --min-sources (ORACLE_AGGREGATOR_MIN_SOURCES)",
    )


def test_quorum_is_folded_into_min_sources():
    assert AggregatorConfig().min_sources == 2
    assert not hasattr(AggregatorConfig(), "quorum")
    assert load_config(None, {"quorum": "3"}).min_sources == 3


def test_cli_warns_about_deprecated_and_odd_settings(tmp_path, monkeypatch):
    seen: list[AggregatorConfig] = []

    async def fake_serve(config: AggregatorConfig) -> None:
        seen.append(config)

    monkeypatch.setattr(cli, "serve", fake_serve)
    monkeypatch.setattr(cli, "start_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(
        cli.main,
        ["--config", os.devnull, "--port", "0", "--quorum", "2", "--node-timeout", "30"],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "aggregator: warning: option --quorum is deprecated; use --min-sources "
        "(ORACLE_AGGREGATOR_MIN_SOURCES)",
        "aggregator: warning: node_timeout = 30 s is shorter than the 60 s between two "
        "submissions of a node: nodes show as inactive between their submissions",
    ]
    assert seen[0].min_sources == 2


def test_cli_options_for_the_new_keys(tmp_path, monkeypatch):
    seen: list[AggregatorConfig] = []

    async def fake_serve(config: AggregatorConfig) -> None:
        seen.append(config)

    monkeypatch.setattr(cli, "serve", fake_serve)
    monkeypatch.setattr(cli, "start_logging", lambda *args, **kwargs: None)
    result = CliRunner().invoke(
        cli.main,
        [
            *("--config", os.devnull, "--port", "0"),  # 50051 may be held by a running system
            *("--min-sources", "3", "--method", "median", "--no-history"),
        ],
        env={"ORACLE_AGGREGATOR_DB_PATH": str(tmp_path / "h.db")},
    )
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.min_sources, config.method) == (3, "median")
    assert config.database == DatabaseConfig(enabled=False, path=tmp_path / "h.db")


def test_help_with_short_flag():
    result = CliRunner().invoke(cli.main, ["-h"])
    assert result.exit_code == 0
    assert "--min-sources" in result.stdout


def test_taken_metrics_port_exits_with_clear_error(tmp_path):
    with socket.socket() as holder, socket.socket() as grpc_port:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        grpc_port.bind(("127.0.0.1", 0))
        port, free = holder.getsockname()[1], grpc_port.getsockname()[1]
        grpc_port.close()
        result = subprocess.run(
            [sys.executable, "-m", "aggregator", "--host", "127.0.0.1", "--port", str(free)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
            env={
                **os.environ,
                "ORACLE_AGGREGATOR_LOG_FILE": str(tmp_path / "a.log"),
                "ORACLE_AGGREGATOR_METRICS_PORT": str(port),
            },
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "[metrics] port" in result.stderr
