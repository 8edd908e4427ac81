"""`oracle-node`: parse options, load and validate the config, then run the loop or `--once`.

Thin on purpose: every rule lives in `config`, `node` and below. `oracle-node keygen --out PATH`
creates the node's signing key (0600) and prints the allowlist entry; `oracle-node pubkey
--key-file PATH` prints the entry of an existing key. Options beat `ORACLE_NODE_*`
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from common.errors import ConfigError
from common.exchanges import EXCHANGES
from common.schnorr import load_key_file
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
from oracle_node.keys import allowlist_entry, keygen, keygen_report
from oracle_node.node import fetch_once, load_credentials, run_node

PROGRAM = "oracle-node"


class _NodeCommand(click.Command):
    """The node command, which also answers `oracle-node keygen ...` and `oracle-node pubkey ...`.

    The node itself keeps taking options only (`oracle-node --exchange kraken`, as the
    original's scripts call it), so the key commands are dispatched by their first word rather
    than turning the node into a command group.
    """

    def main(self, args: Sequence[str] | None = None, *rest: Any, **extra: Any) -> Any:  # noqa: ANN401
        argv = list(sys.argv[1:] if args is None else args)
        if argv[:1] == ["keygen"]:
            return keygen_command.main(
                argv[1:], *rest, **{**extra, "prog_name": f"{PROGRAM} keygen"}
            )
        if argv[:1] == ["pubkey"]:
            return pubkey_command.main(
                argv[1:], *rest, **{**extra, "prog_name": f"{PROGRAM} pubkey"}
            )
        return super().main(argv, *rest, **extra)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,  # noqa: ANN401
    ) -> click.Context:
        """Parsing alone (as tests/test_readme.py checks a command) follows the same dispatch."""
        commands = {"keygen": keygen_command, "pubkey": pubkey_command}
        if args[:1] and args[0] in commands:
            return commands[args[0]].make_context(
                f"{info_name} {args[0]}", args[1:], parent, **extra
            )
        return super().make_context(info_name, args, parent, **extra)


_ENTRY_OPTIONS = (
    click.option("--node-id", help="Node id for the allowlist entry printed (its config's)"),
    click.option(
        "--exchange",
        "exchanges",
        multiple=True,
        type=click.Choice(EXCHANGES),
        help="Exchange the node may report, for the entry printed (repeatable)",
    ),
)


def _entry_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_ENTRY_OPTIONS):
        command = option(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Key file to create (mode 0600; an existing file is never overwritten)",
)
@_entry_options
def keygen_command(out: Path, node_id: str | None, exchanges: tuple[str, ...]) -> None:
    """Create this node's signing key; print its public key and the allowlist entry to paste."""
    try:
        public_key = keygen(out)
    except ConfigError as error:
        exit_on_config_error(f"{PROGRAM} keygen", error)
    except OSError as error:
        exit_on_config_error(
            f"{PROGRAM} keygen", ConfigError(f"{out}: cannot create the key file: {error.strerror}")
        )
    click.echo(keygen_report(out, public_key, node_id=node_id, exchanges=exchanges))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--key-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The node's key file (checked as at start: mode 0600, one valid key)",
)
@_entry_options
def pubkey_command(key_file: Path, node_id: str | None, exchanges: tuple[str, ...]) -> None:
    """Print the allowlist entry of an existing key (the secret is never printed)."""
    try:
        key = load_key_file(key_file)
    except ConfigError as error:
        exit_on_config_error(f"{PROGRAM} pubkey", error)
    click.echo(allowlist_entry(key.public_key, node_id=node_id, exchanges=exchanges), nl=False)


@click.command(cls=_NodeCommand, context_settings={"help_option_names": ["-h", "--help"]})
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
    if not once:
        try:
            # The key file (mode 0600, one valid key) and TLS files, before anything starts.
            load_credentials(config)
        except ConfigError as error:
            exit_on_config_error(PROGRAM, error)
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
