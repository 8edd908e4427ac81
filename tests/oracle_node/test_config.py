"""Config files and option overrides: shipped files load, mistakes are named before startup."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from common.errors import ConfigError
from oracle_node.config import Overrides, grpc_target, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("index", "exchange", "symbol", "log"),
    [
        (1, "binance", "BTCUSDT", "logs/node1_binance.log"),
        (2, "coinbase", "BTC-USD", "logs/node2_coinbase.log"),
        (3, "kraken", "XBTUSD", "logs/node3_kraken.log"),
    ],
)
def test_shipped_node_files_are_read(index: int, exchange: str, symbol: str, log: str) -> None:
    config = load_config(ROOT / f"config/oracle-node-{index}.toml")
    assert config.node_id == f"oracle-node-{index}"
    assert config.exchange.name == exchange
    assert config.exchange.symbol == symbol
    assert config.log_file == Path(log)
    assert config.interval == 60
    assert config.aggregator_target == "localhost:50051"


def test_shipped_default_file_serves_any_exchange() -> None:
    path = ROOT / "config/oracle-node.toml"
    assert load_config(path).exchange.name == "binance"
    kraken = load_config(path, Overrides(exchange="kraken"))
    assert kraken.exchange.api_url == "https://api.kraken.com"
    assert kraken.node_id == "kraken-node"
    assert kraken.bounds.max_price == Decimal(10_000_000)


def test_original_layout_still_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[oracle]
node_id = "oracle-node-2"
aggregator_url = "http://localhost:50051"
fetch_interval = 60

[sources]
enabled = ["coinbase"]

[coinbase]
api_url = "https://api.exchange.coinbase.com"
symbol = "BTC-USD"
timeout = 10
max_retries = 3

[logging]
level = "info"
""",
    )
    config = load_config(path)
    assert config.exchange.name == "coinbase"
    assert config.exchange.retry.max_retries == 3
    assert config.exchange.timeout == 10


def test_every_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[oracle]
node_id = "n1"
exchange = "kraken"
aggregator_url = "agg.internal:6000"
fetch_interval = 120
fetch_offset_seconds = 2
fetch_deadline_seconds = 40
simulate = true
buffer_size = 30
submit_timeout = 3
submit_retries = 4
shutdown_grace_seconds = 1

[kraken]
api_url = "http://127.0.0.1:8099/"
symbol = "XBTUSDT"
timeout = 4
max_retries = 5
backoff_initial = 0.5
backoff_max = 8
user_agent = "ops-check/1"

[validation]
min_price = 20000
max_price = "500000.5"

[logging]
level = "DEBUG"
file = "logs/k.log"
""",
    )
    config = load_config(path)
    assert (config.node_id, config.interval, config.fetch_offset) == ("n1", 120, 2.0)
    assert (config.fetch_deadline, config.simulate, config.buffer_size) == (40.0, True, 30)
    assert (config.submit_timeout, config.submit_retries, config.shutdown_grace) == (3, 4, 1)
    assert config.aggregator_target == "agg.internal:6000"
    assert config.exchange.api_url == "http://127.0.0.1:8099"
    assert (config.exchange.symbol, config.exchange.quote) == ("XBTUSDT", "USDT")
    assert config.exchange.timeout == 4
    assert config.exchange.retry.max_retries == 5
    assert config.exchange.retry.backoff_initial == 0.5
    assert config.exchange.retry.backoff_max == 8
    assert config.exchange.user_agent == "ops-check/1"
    assert config.bounds.min_price == Decimal(20000)
    assert config.bounds.max_price == Decimal("500000.5")
    assert (config.log_level, config.log_file) == ("debug", Path("logs/k.log"))


def test_options_override_the_file() -> None:
    config = load_config(
        ROOT / "config/oracle-node-1.toml",
        Overrides(
            node_id="custom",
            aggregator_url="127.0.0.1:7000",
            interval=180,
            api_url="http://127.0.0.1:8099",
            simulate=True,
            log_file=Path("x.log"),
            log_level="warning",
        ),
    )
    assert config.node_id == "custom"
    assert config.aggregator_target == "127.0.0.1:7000"
    assert config.interval == 180
    assert config.exchange.api_url == "http://127.0.0.1:8099"
    assert config.simulate is True
    assert (config.log_file, config.log_level) == (Path("x.log"), "warning")


def test_a_node_id_option_the_aggregator_would_refuse_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^option --node-id: .*'node\$1'"):
        load_config(None, Overrides(exchange="kraken", node_id="node$1"))
    accepted = load_config(None, Overrides(exchange="kraken", node_id="eu-1.node_3:a@b"))
    assert accepted.node_id == "eu-1.node_3:a@b"


def test_no_file_means_defaults() -> None:
    config = load_config(None, Overrides(exchange="coinbase"))
    assert config.node_id == "coinbase-node"
    assert config.exchange.api_url == "https://api.exchange.coinbase.com"
    assert config.aggregator_url == "http://localhost:50051"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[oracle]\nnode_idd = 'x'\n", r"\[oracle\] unknown key 'node_idd'"),
        ("[binance]\napi_key = 'x'\n", r"\[binance\] unknown key 'api_key'"),
        ("[exchange]\nx = 1\n", r"unknown table \[exchange\]"),
        (
            "[oracle]\nfetch_interval = 90\n",
            r"\[oracle\] fetch_interval: must be an integer multiple of 60 from 60",
        ),
        ("[oracle]\nfetch_interval = 0\n", r"fetch_interval: must be an integer multiple of 60"),
        ("[oracle]\nfetch_interval = '60'\n", r"fetch_interval: must be an integer"),
        ("[oracle]\nexchange = 'bitstamp'\n", r"\[oracle\] exchange: must be one of"),
        ("[oracle]\naggregator_url = 'https://x:1'\n", r"aggregator_url: scheme 'https'"),
        ("[oracle]\naggregator_url = 'localhost'\n", r"aggregator_url: must be host:port"),
        ("[oracle]\nnode_id = ''\n", r"node_id: must be 1 to 64 characters"),
        ("[oracle]\nnode_id = 'node 1'\n", r"\[oracle\] node_id: .*letters, digits.*'node 1'"),
        ("[oracle]\nnode_id = '-node'\n", r"\[oracle\] node_id: .*starting with a letter"),
        ("[oracle]\nnode_id = 'nœud'\n", r"\[oracle\] node_id: .*aggregator refuses"),
        (f"[oracle]\nnode_id = '{'n' * 65}'\n", r"\[oracle\] node_id: must be 1 to 64"),
        ("[oracle]\nfetch_deadline_seconds = 75\n", r"fetch_deadline_seconds"),
        ("[oracle]\nbuffer_size = 0\n", r"buffer_size: must be an integer from 1 to 10000, got 0"),
        ("[sources]\nenabled = ['binance', 'kraken']\n", r"\[sources\] enabled: lists several"),
        (
            "[oracle]\nexchange = 'kraken'\n[sources]\nenabled = ['binance']\n",
            r"\[oracle\] exchange: 'kraken' is not in \[sources\] enabled = \['binance'\]",
        ),
        (
            "[binance]\ntimeout = -1\n",
            r"\[binance\] timeout: must be a number of seconds above 0 and at most 60, got -1",
        ),
        ("[binance]\nmax_retries = true\n", r"\[binance\] max_retries: must be an integer"),
        ("[binance]\nsymbol = 'BTCEUR'\n", r"\[binance\] symbol: .*not quoted in USD or USDT"),
        ("[binance]\napi_url = 'api.binance.com'\n", r"\[binance\] api_url: must be an http"),
        (
            "[validation]\nmin_price = 0\n",
            r"\[validation\] min_price: must be a number above 0, got 0",
        ),
        ("[validation]\nmax_price = 500\n", r"\[validation\] max_price: must be above min_price"),
        ("[logging]\nlevel = 'loud'\n", r"\[logging\] level: must be one of"),
        ("oracle = 3\n", r"\[oracle\]: must be a table, got 3"),
        ("[oracle\n", r"not valid TOML"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (Overrides(interval=90), "option --interval: must be an integer multiple of 60"),
        (Overrides(interval=-60), "option --interval"),
        (Overrides(aggregator_url="ftp://x:1"), "option --aggregator-url"),
        (Overrides(api_url="nonsense"), "option --api-url"),
        (Overrides(exchange="gemini"), "option --exchange"),
    ],
)
def test_bad_options_name_the_option(overrides: Overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://localhost:50051", "localhost:50051"),
        ("localhost:50051", "localhost:50051"),
        ("http://127.0.0.1:6000/", "127.0.0.1:6000"),
        ("http://[::1]:50051", "[::1]:50051"),
    ],
)
def test_aggregator_url_forms(url: str, target: str) -> None:
    assert grpc_target(url) == target
