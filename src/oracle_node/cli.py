"""`oracle-node`: parse options, load and validate the config, then run the loop or `--once`.

Thin on purpose: every rule lives in `config`, `node` and below. Options override the config file;
each option can also come from an `ORACLE_NODE_*` environment variable (shown in `--help`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from pathlib import Path

import click

from common.errors import ConfigError
from common.exchanges import EXCHANGES
from common.logsetup import configure_logging
from oracle_node.config import DEFAULT_CONFIG_PATH, NodeConfig, Overrides, load_config
from oracle_node.errors import FetchError, InvalidCandleError
from oracle_node.node import fetch_once, run_node

# Every option but --once can also come from its ORACLE_NODE_* variable, shown in --help.
option = functools.partial(click.option, show_envvar=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@option(
    "--exchange",
    type=click.Choice(EXCHANGES),
    envvar="ORACLE_NODE_EXCHANGE",
    help="Exchange to collect from  [default: from config, else binance]",
)
@option(
    "--node-id",
    envvar="ORACLE_NODE_ID",
    help='Node id  [default: from config, else "<exchange>-node"]',
)
@option(
    "--aggregator-url",
    envvar="ORACLE_NODE_AGGREGATOR_URL",
    help="gRPC aggregator, http://host:port or host:port  [default: http://localhost:50051]",
)
@option(
    "--interval",
    type=int,
    envvar="ORACLE_NODE_INTERVAL",
    help="Collection interval in seconds, a positive multiple of 60  [default: 60]",
)
@option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="ORACLE_NODE_CONFIG",
    help=f"Configuration file  [default: {DEFAULT_CONFIG_PATH}, if it exists]",
)
@option(
    "--simulate/--no-simulate",
    default=None,
    envvar="ORACLE_NODE_SIMULATE",
    help="Use the exchange simulator only; submissions are marked simulated",
)
@option(
    "--api-url",
    envvar="ORACLE_NODE_API_URL",
    help="Exchange base URL, overriding the config (e.g. the simulator's http://127.0.0.1:8099)",
)
@option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="ORACLE_NODE_LOG_FILE",
    help="Append JSON log lines here instead of the console  [default: from config]",
)
@option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    envvar="ORACLE_NODE_LOG_LEVEL",
    help="Log level  [default: from config, else info]",
)
@click.option(
    "--once",
    is_flag=True,
    help="Fetch the newest closed 1-minute candle, print it as JSON and exit",
)
def main(
    exchange: str | None,
    node_id: str | None,
    aggregator_url: str | None,
    interval: int | None,
    config_path: Path | None,
    simulate: bool | None,
    api_url: str | None,
    log_file: Path | None,
    log_level: str | None,
    once: bool,
) -> None:
    """Collect one exchange's closed 1-minute BTC candle at every minute and submit its close."""
    overrides = Overrides(
        exchange=exchange,
        node_id=node_id,
        aggregator_url=aggregator_url,
        interval=interval,
        api_url=api_url,
        simulate=simulate,
        log_file=log_file,
        log_level=log_level.lower() if log_level else None,
    )
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        click.echo(f"oracle-node: configuration error: {error}", err=True)
        sys.exit(2)
    if once:
        sys.exit(_once(config))
    configure_logging(config.log_level, config.log_file, service="oracle-node")
    asyncio.run(run_node(config))


def _once(config: NodeConfig) -> int:
    # stdout holds exactly one JSON object: logs go to the log file, else warnings to stderr.
    if config.log_file is not None:
        configure_logging(config.log_level, config.log_file, service="oracle-node")
    else:
        configure_logging("warning", None, service="oracle-node")
    try:
        candle = asyncio.run(fetch_once(config))
    except (FetchError, InvalidCandleError) as error:
        click.echo(
            f"oracle-node: cannot get a closed {config.exchange.name} candle from "
            f"{config.exchange.api_url}: {error}",
            err=True,
        )
        return 1
    click.echo(json.dumps(candle))
    return 0
