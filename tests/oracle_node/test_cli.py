"""The `oracle-node` command: `--once` output, exit codes, option errors, clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.timeutil import minute_floor
from exchange_sim.server import SimServer
from oracle_node.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_once_prints_one_json_object(runner: CliRunner, sim_server: SimServer) -> None:
    sim_url = f"http://127.0.0.1:{sim_server.port}"
    result = runner.invoke(
        main,
        [
            "--exchange",
            "binance",
            "--simulate",
            "--api-url",
            sim_url,
            "--once",
            "--config",
            str(ROOT / "config/oracle-node.toml"),
        ],
    )
    assert result.exit_code == 0, result.output
    candle = json.loads(result.stdout)
    assert set(candle) == {
        "exchange",
        "base",
        "symbol",
        "quote",
        "minute",
        "minute_utc",
        "open",
        "high",
        "low",
        "close",
        "latency_ms",
        "simulated",
        "api_url",
    }
    assert candle["minute"] in {minute_floor(time.time()) - 60, minute_floor(time.time()) - 120}
    served = sim_server.app.market.close("binance", candle["minute"])
    assert Decimal(candle["close"]) == served
    assert (candle["exchange"], candle["quote"], candle["simulated"]) == ("binance", "USDT", True)
    assert candle["api_url"] == sim_url


def test_once_failure_is_a_clear_message_and_exit_1(
    runner: CliRunner, sim_server: SimServer, tmp_path: Path
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[binance]\nsymbol = "BTC-USDT"\n', encoding="utf-8")  # not Binance's name
    sim_url = f"http://127.0.0.1:{sim_server.port}"
    result = runner.invoke(
        main, ["--api-url", sim_url, "--simulate", "--once", "--config", str(path)]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "cannot get a closed binance candle" in result.stderr
    assert "Invalid symbol." in result.stderr


def test_interval_not_a_multiple_of_60_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--interval", "90", "--config", os.devnull])
    assert result.exit_code == 2
    assert "option --interval: must be an integer multiple of 60" in result.stderr


def test_environment_fills_options(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--config", os.devnull], env={"ORACLE_NODE_INTERVAL": "45"})
    assert result.exit_code == 2
    assert "--interval" in result.stderr


def test_config_mistake_names_file_and_key(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[kraken]\nsymbl = 'XBTUSD'\n", encoding="utf-8")
    result = runner.invoke(main, ["--config", str(path)])
    assert result.exit_code == 2
    assert f"{path}: [kraken] unknown key 'symbl'" in result.stderr


def test_missing_config_file_is_an_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "missing.toml: config file not found" in result.stderr


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oracle_node", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "--aggregator-url" in result.stdout


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oracle_node",
            "--config",
            os.devnull,
            "--aggregator-url",
            "127.0.0.1:9",
            "--api-url",
            "http://127.0.0.1:9",
            "--log-file",
            str(log_file),
            "--run-dir",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while "node_started" not in (log_file.read_text() if log_file.exists() else ""):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.05)
        time.sleep(0.3)  # past the startup health check, waiting for the boundary
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
    assert events[-1] == "node_stopped"
