"""`aggregator` command line: parse options, load and validate config, run the server.

Options beat `ORACLE_AGGREGATOR_*` variables, which beat the config file (each option's variable
is in `--help`). Without --config, config/aggregator.toml is read when it exists and the built-in
defaults (the original's behaviour) apply otherwise. A bad setting is one line on stderr and exit
status 2, before anything binds a port.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from aggregator.config import (
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    OVERRIDES,
    AggregatorFile,
    load_config,
    require_authentication,
)
from aggregator.history import HistoryOpenError
from aggregator.server import serve
from common.errors import ConfigError
from common.listen import ensure_can_listen
from common.logsetup import get_logger
from common.settings import (
    check_config_option,
    check_log_file,
    click_options,
    exit_config_valid,
    exit_on_config_error,
    given_values,
    origin_of,
    start_logging,
)

PROGRAM = "aggregator"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar=f"{ENV_PREFIX}CONFIG",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help=f"TOML config file  [default: {DEFAULT_CONFIG_PATH}, if present]",
)
@click_options(AggregatorFile, OVERRIDES)
@check_config_option
def main(config_path: Path | None, check_config: bool, **options: object) -> None:
    """Aggregate per-exchange BTC prices from oracle nodes and serve them over gRPC."""
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    given = given_values(options, OVERRIDES)
    try:
        config = load_config(config_path, given, os.environ)
        origin = origin_of(("logging", "file"), OVERRIDES, given, os.environ, config.source)
        if check_config:
            check_log_file(config.logging, origin=origin)
            require_authentication(config)
        else:
            start_logging(config.logging, service=PROGRAM, origin=origin)
            require_authentication(config)
    except ConfigError as error:
        exit_on_config_error(PROGRAM, error)
    for warning in config.warnings:
        click.echo(f"{PROGRAM}: warning: {warning}", err=True)
        if not check_config:
            get_logger().warning("config_warning", detail=warning)
    if check_config:
        exit_config_valid(PROGRAM, config.source)
    try:
        # Asked first, so a taken port is one clear line, not gRPC's own stderr line and ours.
        ensure_can_listen(config.host, config.port, what="the aggregator's gRPC port")
        asyncio.run(serve(config))
    except HistoryOpenError as error:  # the database cannot be used: a restart cannot fix it
        exit_on_config_error(PROGRAM, error)
    except ConfigError as error:  # the port cannot be bound: a runtime failure, exit 1
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":  # pragma: no cover
    main()
