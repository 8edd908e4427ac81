"""`oracle-node`: parse options, load and validate the config, then run the loop or `--once`.

Thin on purpose: every rule lives in `config`, `node` and below. Options beat `ORACLE_NODE_*`
variables (each option's variable is in `--help`), which beat the config file. A bad setting is
one line on stderr and exit status 2; so is a node id already used by another running node on
this machine (`instance_lock`) or a log file another process writes (`common.logsetup`). `--once`
submits nothing, so it takes no node-id lock.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import click

from common.errors import ConfigError
from common.settings import (
    LoggingConfig,
    check_config_option,
    check_log_file,
    click_options,
    exit_config_valid,
    exit_on_config_error,
    given_values,
    origin_of,
    start_logging,
)
from oracle_node.config import (
    DEFAULT_CONFIG_PATH,
    OVERRIDES,
    NodeConfig,
    NodeFile,
    Overrides,
    load_config,
)
from oracle_node.errors import FetchError, InvalidCandleError
from oracle_node.instance_lock import lock_node_id
from oracle_node.node import fetch_once, run_node

PROGRAM = "oracle-node"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="ORACLE_NODE_CONFIG",
    show_envvar=True,
    help=f"Configuration file  [default: {DEFAULT_CONFIG_PATH}, if it exists]",
)
@click_options(NodeFile, OVERRIDES)
@click.option(
    "--once",
    is_flag=True,
    help="Fetch the newest closed 1-minute candle, print it as JSON and exit",
)
@check_config_option
def main(config_path: Path | None, once: bool, check_config: bool, **options: object) -> None:
    """Collect one exchange's closed 1-minute BTC candle at every minute and submit its close."""
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    given = given_values(options, OVERRIDES)
    try:
        config = load_config(config_path, Overrides(**given), os.environ)
    except ConfigError as error:
        exit_on_config_error(PROGRAM, error)
    source = str(config.source) if config.source is not None else "<defaults>"
    origin = origin_of(("logging", "file"), OVERRIDES, given, os.environ, source)
    if check_config:
        try:
            check_log_file(config.logging, origin=origin)
        except ConfigError as error:
            exit_on_config_error(PROGRAM, error)
        exit_config_valid(
            PROGRAM, f"{source}; exchange {config.exchange.name}, node {config.node_id}"
        )
    if once:
        sys.exit(_once(config, origin))
    try:
        lock = lock_node_id(config.run_dir, config.node_id)
        # Also locks the log file against a second process (common.logsetup).
        start_logging(config.logging, service=PROGRAM, origin=origin)
    except ConfigError as error:
        exit_on_config_error(PROGRAM, error)
    try:
        asyncio.run(run_node(config))
    except ConfigError as error:  # the metrics port cannot be bound: a runtime failure, exit 1
        raise click.ClickException(str(error)) from error
    finally:
        lock.release()


def _once(config: NodeConfig, origin: str) -> int:
    # stdout holds exactly one JSON object: logs go to the log file, else warnings to stderr.
    quiet = LoggingConfig(level="warning")
    try:
        start_logging(config.logging if config.log_file else quiet, service=PROGRAM, origin=origin)
    except ConfigError as error:
        exit_on_config_error(PROGRAM, error)
    try:
        candle = asyncio.run(fetch_once(config))
    except (FetchError, InvalidCandleError) as error:
        click.echo(
            f"{PROGRAM}: cannot get a closed {config.exchange.name} candle from "
            f"{config.exchange.api_url}: {error}",
            err=True,
        )
        return 1
    click.echo(json.dumps(candle))
    return 0
