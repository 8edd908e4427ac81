"""`oracle-explorer` command line: parse options, load and validate config, run the web server.

Options beat the config file; `ORACLE_EXPLORER_<OPTION>` environment variables fill options
(e.g. ORACLE_EXPLORER_PORT=8091). Without --config, config/explorer.toml is read when it exists
and the built-in defaults apply otherwise.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import click

from common.errors import ConfigError
from common.logsetup import configure_logging
from explorer.config import LOG_LEVELS, ExplorerConfig, load_config
from explorer.server import serve

DEFAULT_CONFIG = Path("config/explorer.toml")
option = functools.partial(click.option, show_envvar=True)


@click.command(context_settings={"auto_envvar_prefix": "ORACLE_EXPLORER", "show_default": True})
@option("--host", help="Address to listen on.  [default: 127.0.0.1]")
@option("--port", type=click.IntRange(0, 65535), help="HTTP port.  [default: 8090]")
@option(
    "--config",
    "config_path",
    envvar="ORACLE_EXPLORER_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"TOML config file.  [default: {DEFAULT_CONFIG}, if present]",
)
@option("--aggregator", help="Aggregator gRPC address, host:port.  [default: 127.0.0.1:50051]")
@option("--committer", help="Committer gRPC address, host:port (empty: none).")
@option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="JSON log file.")
@option("--log-level", type=click.Choice(LOG_LEVELS), help="Log level.  [default: info]")
def main(
    host: str | None,
    port: int | None,
    config_path: Path | None,
    aggregator: str | None,
    committer: str | None,
    log_file: Path | None,
    log_level: str | None,
) -> None:
    """Serve the oracle explorer: live BTC/USD, rounds, nodes and proofs, as pages and JSON."""
    try:
        if config_path is not None:
            base = load_config(config_path)
        elif DEFAULT_CONFIG.is_file():
            base = load_config(DEFAULT_CONFIG)
        else:
            base = ExplorerConfig()
        config = base.with_overrides(
            host=host,
            port=port,
            aggregator_target=aggregator,
            committer_target=committer,
            log_file=log_file,
            log_level=log_level,
        )
        configure_logging(config.log_level, config.log_file, service="explorer")
        asyncio.run(serve(config))
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":  # pragma: no cover
    main()
