"""Bad settings of every kind, fed to each service's real command: one clear line, exit 2, no trace.

Each case is a file (or a path, an option, an environment variable) an operator could get wrong.
The command must refuse it before anything starts, with exactly one line on stderr that names
where the bad value is (the file, or the option or variable) and the key, and exit with status 2.
The services' run functions are replaced by stand-ins, so a setting wrongly accepted makes the
test fail instead of starting a server. The cases cover every defect issue 9 lists (booleans taken
as numbers, `[logging] file` tracebacks, a non-UTF-8 file, `/dev/zero`, tiny staleness and
lateness, unchecked tables of other exchanges) and the kinds it names (unknown keys and tables,
invalid TOML, a missing file, a directory, contradictory settings).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import click
import pytest
import structlog
from click.testing import CliRunner

import aggregator.cli
import exchange_sim.cli
import oracle_node.cli
from aggregator.config import AggregatorConfig, AggregatorFile
from common.settings import _base_type
from exchange_sim.config import SimFile
from oracle_node.config import NodeFile

FILE = "<file>"  # stands for the case's config file path in `where`


@dataclass(frozen=True)
class Case:
    """A bad setting and the words its one error line must contain."""

    id: str
    text: str | bytes | None = None  # the config file's content; None: no file written
    path: str | None = None  # a --config path other than the written file
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    where: str = FILE  # the file, or the option or variable the value came from
    key: str = ""  # e.g. "[aggregator] port"
    says: str = ""  # what is allowed, or why


def booleans(table: str, keys: tuple[str, ...], prefix: str = "") -> list[Case]:
    return [
        Case(f"{table}-{key}-true", f"{prefix}[{table}]\n{key} = true\n", key=f"[{table}] {key}")
        for key in keys
    ]


def numeric_keys(model: Any) -> set[str]:
    numeric = (int, float, Decimal)
    return {
        name for name, info in model.model_fields.items() if _base_type(info.annotation) in numeric
    }


AGGREGATOR_NUMBERS = (
    "port",
    "node_timeout",
    "staleness",
    "lateness",
    "max_future",
    "close_skew",
    "max_price",
    "min_price",
    "window",
    "max_nodes",
    "grace_seconds",
    "max_message_bytes",
    "round_deadline",
    "max_deviation",
    "max_flat_minutes",
    "min_sources",
)
STREAMING_NUMBERS = (
    "max_subscribers",
    "max_subscribers_per_peer",
    "max_lag_seconds",
    "min_update_interval_seconds",
    "update_interval_per_subscriber_seconds",
    "round_queue",
    "max_streams",
    "max_health_watchers",
)
LIMITS_NUMBERS = (
    "rate",
    "burst",
    "global_rate",
    "global_burst",
    "max_tracked_nodes",
    "max_concurrent_rpcs",
    "max_concurrent_streams",
)
NODE_ORACLE_NUMBERS = (
    "fetch_interval",
    "fetch_offset_seconds",
    "fetch_deadline_seconds",
    "buffer_size",
    "submit_timeout",
    "submit_retries",
    "shutdown_grace_seconds",
)
NODE_VENUE_NUMBERS = ("timeout", "max_retries", "backoff_initial", "backoff_max")
SIM_NUMBERS = ("port", "seed", "price", "volatility", "coinbase_lag_seconds")


def test_every_numeric_key_is_in_the_boolean_cases() -> None:
    """A numeric key added later is covered by the boolean cases below, or this test fails."""
    assert numeric_keys(AggregatorFile.model_fields["aggregator"].annotation) == set(
        AGGREGATOR_NUMBERS
    )
    assert numeric_keys(AggregatorFile.model_fields["database"].annotation) == {"retention_days"}
    assert numeric_keys(AggregatorFile.model_fields["streaming"].annotation) == set(
        STREAMING_NUMBERS
    )
    assert numeric_keys(AggregatorFile.model_fields["metrics"].annotation) == {"port"}
    assert numeric_keys(NodeFile.model_fields["metrics"].annotation) == {
        "port",
        "stale_after_seconds",
    }
    assert numeric_keys(AggregatorFile.model_fields["limits"].annotation) == set(LIMITS_NUMBERS)
    assert numeric_keys(NodeFile.model_fields["oracle"].annotation) == set(NODE_ORACLE_NUMBERS)
    assert numeric_keys(NodeFile.model_fields["kraken"].annotation) == set(NODE_VENUE_NUMBERS)
    assert numeric_keys(NodeFile.model_fields["validation"].annotation) == {
        "min_price",
        "max_price",
    }
    assert numeric_keys(SimFile.model_fields["simulator"].annotation) == set(SIM_NUMBERS)


# Shared by the three services: the file itself and the [logging] table.
def common_cases(section: str) -> list[Case]:
    return [
        Case("missing-file", path="<tmp>/absent.toml", where="absent.toml", says="not found"),
        Case("directory", path="<tmp>", where="<tmp>", says="is a directory"),
        Case("dev-zero", path="/dev/zero", where="/dev/zero", says="not a regular file"),
        Case("fifo", path="<tmp>/fifo.toml", where="fifo.toml", says="not a regular file"),
        Case("huge-file", "# " + "x" * 300_000 + "\n", says="at most 256 KiB"),
        Case("not-utf8", b'[logging]\nlevel = "\xff\xfe"\n', says="not UTF-8"),
        Case("latin1-comment", f"# caf\xe9\n[{section}]\n".encode("latin-1"), says="not UTF-8"),
        Case("invalid-toml", f"[{section}\nport = 1\n", says="not valid TOML"),
        Case("duplicate-key", "[logging]\nlevel = 'info'\nlevel = 'debug'\n", says="TOML"),
        Case("unknown-table", "[loggin]\nlevel = 'info'\n", says="unknown table [loggin]"),
        Case("key-outside-table", "level = 'info'\n", says="unknown key 'level' outside"),
        Case("unknown-key", "[logging]\nlevl = 'info'\n", key="[logging]", says="'levl'"),
        Case("table-not-a-table", f"{section} = 3\n", key=f"[{section}]", says="a table"),
        Case("level-unknown", "[logging]\nlevel = 'loud'\n", key="[logging] level"),
        Case("level-number", "[logging]\nlevel = 3\n", key="[logging] level", says="one of"),
        Case("log-file-number", "[logging]\nfile = 123\n", key="[logging] file", says="path"),
        Case("log-file-directory", "[logging]\nfile = '/tmp'\n", key="[logging] file"),
        Case("log-file-empty", "[logging]\nfile = ''\n", key="[logging] file", says="empty"),
        Case(
            "log-file-unwritable",
            "[logging]\nfile = '/proc/version'\n",
            key="[logging] file",
            says="cannot append",
        ),
        Case(
            "log-file-fifo-without-reader",
            "[logging]\nfile = 'log.fifo'\n",
            key="[logging] file",
            says="No such device or address",
        ),
        Case(
            "log-file-under-a-file",
            "[logging]\nfile = '/etc/hostname/x.log'\n",
            key="[logging] file",
            says="cannot append",
        ),
    ]


AGGREGATOR_CASES = [
    *common_cases("aggregator"),
    *booleans("aggregator", AGGREGATOR_NUMBERS),
    *booleans("database", ("retention_days",)),
    *booleans("streaming", STREAMING_NUMBERS),
    *booleans("metrics", ("port",)),
    Case("streaming-unknown-key", "[streaming]\nmax_subscriber = 5\n", key="[streaming]"),
    Case("subscribers-zero", "[streaming]\nmax_subscribers = 0\n", key="max_subscribers"),
    Case("lag-zero", "[streaming]\nmax_lag_seconds = 0\n", key="[streaming] max_lag_seconds"),
    Case("lag-text", "[streaming]\nmax_lag_seconds = 'long'\n", key="max_lag_seconds"),
    Case("round-queue-huge", "[streaming]\nround_queue = 5000\n", key="[streaming] round_queue"),
    Case(
        "per-peer-above-total",
        "[streaming]\nmax_subscribers = 10\nmax_subscribers_per_peer = 20\n",
        key="[streaming] max_subscribers_per_peer",
        says="must not exceed max_subscribers",
    ),
    Case("metrics-port-range", "[metrics]\nport = 70000\n", key="[metrics] port", says="65535"),
    Case("metrics-host-empty", "[metrics]\nhost = ''\n", key="[metrics] host"),
    Case("metrics-enabled-number", "[metrics]\nenabled = 1\n", key="[metrics] enabled"),
    Case("metrics-unknown-key", "[metrics]\npath = '/m'\n", key="[metrics]", says="'path'"),
    Case(
        "env-metrics-port-true",
        env={"ORACLE_AGGREGATOR_METRICS_PORT": "true"},
        where="ORACLE_AGGREGATOR_METRICS_PORT",
        says="integer",
    ),
    Case("option-metrics-port", args=("--metrics-port", "-1"), where="option --metrics-port"),
    *booleans("limits", LIMITS_NUMBERS),
    Case("quorum-true", "[aggregator]\nquorum = true\n", key="[aggregator] min_sources"),
    Case("port-string", "[aggregator]\nport = '50051'\n", key="[aggregator] port", says="integer"),
    Case("port-float", "[aggregator]\nport = 50051.0\n", key="[aggregator] port"),
    Case("port-range", "[aggregator]\nport = 70000\n", key="[aggregator] port", says="65535"),
    Case("host-number", "[aggregator]\nhost = 5\n", key="[aggregator] host", says="string"),
    Case("host-empty", "[aggregator]\nhost = ''\n", key="[aggregator] host"),
    Case("timeout-string", "[aggregator]\nnode_timeout = '120'\n", key="[aggregator] node_timeout"),
    Case("timeout-zero", "[aggregator]\nnode_timeout = 0\n", key="[aggregator] node_timeout"),
    Case("staleness-tiny", "[aggregator]\nstaleness = 0.001\n", key="[aggregator] staleness"),
    Case("staleness-below-a-minute", "[aggregator]\nstaleness = 30\n", key="staleness"),
    Case("lateness-tiny", "[aggregator]\nlateness = 1e-9\n", key="[aggregator] lateness"),
    Case("max-price-negative", "[aggregator]\nmax_price = -1\n", key="[aggregator] max_price"),
    Case("max-price-inf", "[aggregator]\nmax_price = inf\n", key="[aggregator] max_price"),
    Case("max-price-nan", "[aggregator]\nmax_price = nan\n", key="[aggregator] max_price"),
    Case("future-range", "[aggregator]\nmax_future = 600\n", key="[aggregator] max_future"),
    Case("window-zero", "[aggregator]\nwindow = 0\n", key="[aggregator] window"),
    Case("grace-zero", "[aggregator]\ngrace_seconds = 0\n", key="[aggregator] grace_seconds"),
    Case("simulate-string", "[aggregator]\nsimulate = 'yes'\n", key="simulate", says="true or"),
    Case("simulate-number", "[aggregator]\nsimulate = 1\n", key="[aggregator] simulate"),
    Case("method-unknown", "[aggregator]\nmethod = 'avg'\n", key="[aggregator] method"),
    Case("exchanges-string", "[aggregator]\nexchanges = 'binance'\n", key="exchanges"),
    Case("exchanges-empty", "[aggregator]\nexchanges = []\n", key="[aggregator] exchanges"),
    Case("exchanges-unknown", "[aggregator]\nexchanges = ['bitstamp']\n", key="exchanges[0]"),
    Case(
        "exchanges-repeated",
        "[aggregator]\nexchanges = ['kraken', 'kraken']\n",
        key="[aggregator] exchanges",
        says="more than once",
    ),
    Case("deviation-range", "[aggregator]\nmax_deviation = 0.9\n", key="max_deviation"),
    Case("deviation-text", "[aggregator]\nmax_deviation = 'abc'\n", key="max_deviation"),
    Case("min-sources-zero", "[aggregator]\nmin_sources = 0\n", key="[aggregator] min_sources"),
    Case("db-enabled-number", "[database]\nenabled = 1\n", key="[database] enabled"),
    Case("db-path-empty", "[database]\npath = ''\n", key="[database] path"),
    Case("db-path-directory", "[database]\npath = '/tmp'\n", key="[database] path"),
    Case("db-retention-zero", "[database]\nretention_days = 0\n", key="retention_days"),
    Case(
        "min-price-above-max",
        "[aggregator]\nmin_price = 200\nmax_price = 100\n",
        key="[aggregator] min_price",
        says="below max_price",
    ),
    Case(
        "deadline-beyond-lateness",
        "[aggregator]\nround_deadline = 700\n",
        key="[aggregator] round_deadline",
        says="below lateness",
    ),
    Case(
        "min-sources-beyond-exchanges",
        "[aggregator]\nexchanges = ['binance', 'kraken']\nmin_sources = 3\n",
        key="[aggregator] min_sources",
        says="never be met",
    ),
    Case(
        "quorum-and-min-sources",
        "[aggregator]\nquorum = 2\nmin_sources = 2\n",
        key="[aggregator] quorum",
        says="set only min_sources",
    ),
    Case(
        "env-port-true",
        env={"ORACLE_AGGREGATOR_PORT": "true"},
        where="ORACLE_AGGREGATOR_PORT",
        says="integer",
    ),
    Case(
        "env-timeout-text",
        env={"ORACLE_AGGREGATOR_NODE_TIMEOUT": "soon"},
        where="ORACLE_AGGREGATOR_NODE_TIMEOUT",
    ),
    Case(
        "env-staleness-tiny",
        env={"ORACLE_AGGREGATOR_STALENESS": "0.001"},
        where="ORACLE_AGGREGATOR_STALENESS",
        says="from 60",
    ),
    Case(
        "env-simulate-maybe",
        env={"ORACLE_AGGREGATOR_SIMULATE": "maybe"},
        where="ORACLE_AGGREGATOR_SIMULATE",
        says="true or false",
    ),
    Case(
        "env-quorum-out-of-range",
        env={"ORACLE_AGGREGATOR_QUORUM": "99"},
        where="ORACLE_AGGREGATOR_QUORUM",
    ),
    Case(
        "env-log-file-directory",
        env={"ORACLE_AGGREGATOR_LOG_FILE": "/etc"},
        where="ORACLE_AGGREGATOR_LOG_FILE",
    ),
    Case("option-port-true", args=("--port", "true"), where="option --port"),
    Case("option-min-sources", args=("--min-sources", "9"), where="option --min-sources"),
    Case("option-method", args=("--method", "avg"), where="option --method", says="'median'"),
    Case("option-db-path-empty", args=("--db-path", ""), where="option --db-path"),
    Case(
        "option-quorum-and-min-sources",
        args=("--quorum", "1", "--min-sources", "2"),
        where="option --min-sources",
        says="give only one",
    ),
    Case(
        "option-log-file-unwritable",
        args=("--log-file", "/proc/version"),
        where="option --log-file",
        says="cannot append",
    ),
    # Issue 11: [auth], [tls], [limits]; and no allowlist while signatures are required.
    Case("no-allowlist", "", key="[auth] allowlist", says="required"),
    Case("allow-unsigned-number", "[auth]\nallow_unsigned = 1\n", key="[auth] allow_unsigned"),
    Case("allowlist-empty", "[auth]\nallowlist = ''\n", key="[auth] allowlist", says="empty"),
    Case("allowlist-dir", "[auth]\nallowlist = '/tmp'\n", key="[auth] allowlist"),
    Case(
        "allowlist-missing",
        "[auth]\nallowlist = '/nonexistent/allowlist.toml'\n",
        where="/nonexistent/allowlist.toml",
        says="allowlist file not found",
    ),
    Case(
        "allowlist-option-missing",
        args=("--allowlist", "/nonexistent/allowlist.toml"),
        where="/nonexistent/allowlist.toml",
        says="not found",
    ),
    Case("auth-unknown-key", "[auth]\nallow_unsigend = true\n", key="[auth]", says="'allow_"),
    Case("tls-cert-alone", "[tls]\ncert = '/etc/hostname'\n", key="[tls] key", says="together"),
    Case("tls-key-alone", "[tls]\nkey = '/etc/hostname'\n", key="[tls] cert", says="together"),
    Case("tls-ca-alone", "[tls]\nclient_ca = '/etc/hostname'\n", key="[tls] client_ca"),
    Case("limits-rate-zero", "[limits]\nrate = 0\n", key="[limits] rate"),
    Case("limits-rate-inf", "[limits]\nrate = inf\n", key="[limits] rate"),
    Case("limits-burst-below-one", "[limits]\nburst = 0.5\n", key="[limits] burst"),
    Case("limits-rpcs-zero", "[limits]\nmax_concurrent_rpcs = 0\n", key="max_concurrent_rpcs"),
    Case("limits-unknown-key", "[limits]\nrat = 1\n", key="[limits]", says="'rat'"),
]

NODE_CASES = [
    *common_cases("oracle"),
    # Issue 11: the key file and TLS settings.
    Case(
        "key-file-missing",
        "[oracle]\nkey_file = '/nonexistent/n.key'\n",
        where="/nonexistent/n.key",
        says="not found",
    ),
    Case(
        "key-file-world-readable",
        "[oracle]\nkey_file = '/etc/hostname'\n",
        where="/etc/hostname",
        says="group and others must have no access",
    ),
    Case("key-file-empty", "[oracle]\nkey_file = ''\n", key="[oracle] key_file", says="empty"),
    Case(
        "tls-client-cert-alone",
        "[oracle]\ntls_ca = '/etc/hostname'\ntls_client_cert = '/etc/hostname'\n",
        key="[oracle] tls_client_key",
        says="together",
    ),
    Case(
        "tls-ca-missing",
        "[oracle]\ntls_ca = '/nonexistent/ca.pem'\n",
        where="/nonexistent/ca.pem",
        says="not found",
    ),
    *booleans("oracle", NODE_ORACLE_NUMBERS),
    *booleans("validation", ("min_price", "max_price")),
    *booleans("metrics", ("port", "stale_after_seconds")),
    Case("transport-unknown", "[oracle]\ntransport = 'grpc'\n", key="[oracle] transport"),
    Case("transport-number", "[oracle]\ntransport = 1\n", key="[oracle] transport"),
    Case("node-metrics-port-range", "[metrics]\nport = -1\n", key="[metrics] port"),
    Case(
        "node-stale-after-short",
        "[metrics]\nstale_after_seconds = 5\n",
        key="[metrics] stale_after_seconds",
    ),
    Case("option-transport", args=("--transport", "udp"), where="option --transport"),
    Case(
        "env-node-metrics-port-text",
        env={"ORACLE_NODE_METRICS_PORT": "high"},
        where="ORACLE_NODE_METRICS_PORT",
    ),
    # The node runs kraken, yet the other exchanges' tables are checked as well.
    *booleans("binance", NODE_VENUE_NUMBERS, prefix="[oracle]\nexchange = 'kraken'\n"),
    *booleans("coinbase", NODE_VENUE_NUMBERS, prefix="[oracle]\nexchange = 'kraken'\n"),
    *booleans("kraken", NODE_VENUE_NUMBERS),
    Case(
        "other-exchange-timeout-text",
        "[oracle]\nexchange = 'kraken'\n[binance]\ntimeout = 'abc'\n",
        key="[binance] timeout",
    ),
    Case(
        "other-exchange-unknown-key",
        "[oracle]\nexchange = 'kraken'\n[coinbase]\nsymbl = 'BTC-USD'\n",
        key="[coinbase]",
        says="'symbl'",
    ),
    Case("interval-90", "[oracle]\nfetch_interval = 90\n", key="fetch_interval", says="of 60"),
    Case("interval-string", "[oracle]\nfetch_interval = '60'\n", key="[oracle] fetch_interval"),
    Case("exchange-unknown", "[oracle]\nexchange = 'bitstamp'\n", key="[oracle] exchange"),
    Case("node-id-bad", "[oracle]\nnode_id = 'node 1'\n", key="[oracle] node_id"),
    Case("node-id-number", "[oracle]\nnode_id = 7\n", key="[oracle] node_id", says="string"),
    Case("simulate-number", "[oracle]\nsimulate = 0\n", key="[oracle] simulate"),
    Case("url-scheme", "[oracle]\naggregator_url = 'https://x:1'\n", key="aggregator_url"),
    Case("offset-range", "[oracle]\nfetch_offset_seconds = 11\n", key="fetch_offset_seconds"),
    Case("run-dir-empty", "[oracle]\nrun_dir = ''\n", key="[oracle] run_dir"),
    Case("run-dir-a-file", "[oracle]\nrun_dir = '/etc/hostname'\n", key="[oracle] run_dir"),
    Case("enabled-string", "[sources]\nenabled = 'binance'\n", key="[sources] enabled"),
    Case("enabled-unknown", "[sources]\nenabled = ['gemini']\n", key="[sources] enabled"),
    Case("enabled-several", "[sources]\nenabled = ['binance', 'kraken']\n", key="enabled"),
    Case("symbol-quote", "[kraken]\nsymbol = 'XBTEUR'\n", key="[kraken] symbol", says="USD"),
    Case("api-url-bare", "[kraken]\napi_url = 'api.kraken.com'\n", key="[kraken] api_url"),
    Case("rate-symbol-number", "[kraken]\nusdt_rate_symbol = 1\n", key="usdt_rate_symbol"),
    Case("rate-symbol-bad", "[kraken]\nusdt_rate_symbol = 'USDT USD'\n", key="usdt_rate_symbol"),
    Case("user-agent-empty", "[kraken]\nuser_agent = ''\n", key="[kraken] user_agent"),
    Case("min-price-text", "[validation]\nmin_price = 'cheap'\n", key="[validation] min_price"),
    Case("min-price-inf", "[validation]\nmin_price = inf\n", key="[validation] min_price"),
    Case(
        "deadline-before-offset",
        "[oracle]\nfetch_offset_seconds = 10\nfetch_deadline_seconds = 5\n",
        key="[oracle] fetch_deadline_seconds",
        says="above fetch_offset_seconds",
    ),
    Case(
        "backoff-inverted",
        "[kraken]\nbackoff_initial = 20\nbackoff_max = 5\n",
        key="[kraken] backoff_max",
    ),
    Case(
        "prices-inverted",
        "[validation]\nmin_price = 5000\nmax_price = 4000\n",
        key="[validation] max_price",
    ),
    Case(
        "exchange-option-contradicts-sources",
        "[sources]\nenabled = ['binance']\n",
        args=("--exchange", "kraken"),
        where="option --exchange",
        says="not in [sources] enabled",
    ),
    Case(
        "exchange-variable-contradicts-sources",
        "[sources]\nenabled = ['coinbase']\n",
        env={"ORACLE_NODE_EXCHANGE": "kraken"},
        where="ORACLE_NODE_EXCHANGE",
        says="not in [sources] enabled",
    ),
    Case("option-exchange-unknown", args=("--exchange", "gemini"), where="option --exchange"),
    Case("option-interval-text", args=("--interval", "soon"), where="option --interval"),
    Case("option-node-id", args=("--node-id", "node$1"), where="option --node-id"),
    Case("option-api-url", args=("--api-url", "nonsense"), where="option --api-url"),
    Case(
        "env-interval-true",
        env={"ORACLE_NODE_INTERVAL": "true"},
        where="ORACLE_NODE_INTERVAL",
        says="integer",
    ),
    Case(
        "env-simulate-maybe",
        env={"ORACLE_NODE_SIMULATE": "maybe"},
        where="ORACLE_NODE_SIMULATE",
    ),
    Case("env-log-level", env={"ORACLE_NODE_LOG_LEVEL": "chatty"}, where="ORACLE_NODE_LOG_LEVEL"),
    Case("env-run-dir-empty-file", env={"ORACLE_RUN_DIR": "/etc/hostname"}, where="RUN_DIR"),
    Case(
        "option-log-file-directory",
        args=("--log-file", "/etc"),
        where="option --log-file",
        says="directory",
    ),
]

SIM_CASES = [
    *common_cases("simulator"),
    *booleans("simulator", SIM_NUMBERS),
    Case("price-text", "[simulator]\nprice = 'lots'\n", key="[simulator] price"),
    Case("price-zero", "[simulator]\nprice = 0\n", key="[simulator] price"),
    Case("volatility-range", "[simulator]\nvolatility = 0.5\n", key="[simulator] volatility"),
    Case("seed-negative", "[simulator]\nseed = -1\n", key="[simulator] seed"),
    Case("lag-range", "[simulator]\ncoinbase_lag_seconds = 601\n", key="coinbase_lag_seconds"),
    Case("host-empty", "[simulator]\nhost = ''\n", key="[simulator] host"),
    Case("port-file-dir", "[simulator]\nport_file = '/tmp'\n", key="[simulator] port_file"),
    Case("env-port-true", env={"ORACLE_SIM_PORT": "true"}, where="ORACLE_SIM_PORT"),
    Case("env-seed-text", env={"ORACLE_SIM_SEED": "abc"}, where="ORACLE_SIM_SEED"),
    Case("option-price-text", args=("--price", "abc"), where="option --price"),
    Case("option-price-nan", args=("--price", "nan"), where="option --price"),
    Case("option-volatility", args=("--volatility", "1"), where="option --volatility"),
]


@dataclass(frozen=True)
class Service:
    program: str
    command: click.Command
    stub: Callable[[pytest.MonkeyPatch], None]


def _stub_aggregator(monkeypatch: pytest.MonkeyPatch) -> None:
    async def serve(_config: AggregatorConfig) -> None:
        raise AssertionError("a bad setting was accepted: the aggregator started")

    monkeypatch.setattr(aggregator.cli, "serve", serve)


def _stub_node(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_node(_config: object) -> None:
        raise AssertionError("a bad setting was accepted: the node started")

    monkeypatch.setattr(oracle_node.cli, "run_node", run_node)


def _stub_sim(monkeypatch: pytest.MonkeyPatch) -> None:
    def create_server(*_args: object) -> None:
        raise AssertionError("a bad setting was accepted: the simulator started")

    monkeypatch.setattr(exchange_sim.cli, "create_server", create_server)


SERVICES = {
    "aggregator": Service("aggregator", aggregator.cli.main, _stub_aggregator),
    "oracle-node": Service("oracle-node", oracle_node.cli.main, _stub_node),
    "exchange-sim": Service("exchange-sim", exchange_sim.cli.main, _stub_sim),
}
ALL_CASES = [
    pytest.param(service, case, id=f"{service}-{case.id}")
    for service, cases in (
        ("aggregator", AGGREGATOR_CASES),
        ("oracle-node", NODE_CASES),
        ("exchange-sim", SIM_CASES),
    )
    for case in cases
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # No default config file is found, and nothing lands in the repository (run/, logs/).
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ORACLE_AGGREGATOR_", "ORACLE_NODE_", "ORACLE_SIM_", "ORACLE_RUN")):
            monkeypatch.delenv(name)
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _config_path(case: Case, tmp_path: Path) -> str:
    if case.id == "log-file-fifo-without-reader":
        os.mkfifo(tmp_path / "log.fifo")  # the test runs in tmp_path
    if case.path is None:
        path = tmp_path / "bad.toml"
        content = case.text if case.text is not None else ""
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)
    path_text = case.path.replace("<tmp>", str(tmp_path))
    if path_text.endswith("fifo.toml"):
        os.mkfifo(path_text)
    return path_text


@pytest.mark.parametrize(("service_name", "case"), ALL_CASES)
def test_bad_setting_is_one_clear_line_and_exit_2(
    service_name: str, case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SERVICES[service_name]
    service.stub(monkeypatch)
    config = _config_path(case, tmp_path)

    result = CliRunner().invoke(service.command, ["--config", config, *case.args], env=case.env)

    lines = result.stderr.splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    line = lines[0]
    assert line.startswith(f"{service.program}: configuration error: "), line
    where = config if case.where == FILE else case.where.replace("<tmp>", str(tmp_path))
    assert where in line, line
    assert case.key in line, line
    assert case.says in line, line


# --- the same through real processes: nothing hangs, nothing grows, no traceback ----------------

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("program", ["aggregator", "oracle-node", "exchange-sim"])
@pytest.mark.parametrize("config", ["/dev/zero", "not-utf8"])
def test_real_process_refuses_at_once(program: str, config: str, tmp_path: Path) -> None:
    if config == "not-utf8":
        path = tmp_path / "latin1.toml"
        path.write_bytes("# Réglages\n".encode("latin-1"))
        config = str(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORACLE_")}
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / program), "--config", config],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert time.monotonic() - started < 15  # the old code hung on /dev/zero, eating memory
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert config in result.stderr
    assert "Traceback" not in result.stderr


# --- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["aggregator", "oracle-node", "exchange-sim"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_flags_are_the_same_everywhere(program: str, flag: str) -> None:
    result = CliRunner().invoke(SERVICES[program].command, [flag])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage:")
    assert "-h, --help" in result.stdout


def test_every_option_shows_its_environment_variable() -> None:
    for service in SERVICES.values():
        text = CliRunner().invoke(service.command, ["--help"], terminal_width=200).stdout
        for param in service.command.params:
            # Fault flags (multiple) have no variable, on purpose; --once and --check-config are
            # actions.
            skip = not isinstance(param, click.Option) or param.multiple
            if skip or param.name in {"help", "once", "check_config"}:
                continue
            assert "env var:" in text.split(param.opts[0], 1)[1].split("\n  -", 1)[0]


def test_exchange_names_type_matches_the_exchanges() -> None:
    from common.exchanges import EXCHANGES, ExchangeName

    assert get_args(ExchangeName) == EXCHANGES


def test_every_setting_has_help_text() -> None:
    """The field docstrings are the help text: a setting without one is undocumented."""
    for document in (AggregatorFile, NodeFile, SimFile):
        for table_name, table in document.model_fields.items():
            model = _base_type(table.annotation)
            for name, info in model.model_fields.items():  # type: ignore[union-attr]
                assert info.description, f"{document.__name__} [{table_name}] {name}"
