"""`aggregator` command line: parse options, load and validate config, run the server.

Options beat the config file; `ORACLE_AGGREGATOR_<OPTION>` environment variables fill options
(e.g. ORACLE_AGGREGATOR_PORT=50052). Without --config, config/aggregator.toml is read when it
exists and the built-in defaults (the original's behaviour) apply otherwise.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import click

from aggregator.config import LOG_LEVELS, AggregatorConfig, load_config
from aggregator.server import serve
from common.errors import ConfigError
from common.logsetup import configure_logging

DEFAULT_CONFIG = Path("config/aggregator.toml")
option = functools.partial(click.option, show_envvar=True)


@click.command(context_settings={"auto_envvar_prefix": "ORACLE_AGGREGATOR", "show_default": True})
@option("--host", help="Address to listen on.  [default: 0.0.0.0]")
@option("--port", type=click.IntRange(0, 65535), help="gRPC port.  [default: 50051]")
@option(
    "--config",
    "config_path",
    envvar="ORACLE_AGGREGATOR_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"TOML config file.  [default: {DEFAULT_CONFIG}, if present]",
)
@option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="JSON log file.")
@option("--log-level", type=click.Choice(LOG_LEVELS), help="Log level.  [default: info]")
@option(
    "--simulate/--no-simulate",
    default=None,
    help="Accept only simulated prices (offline mode); every answer says SIMULATED.",
)
@option("--node-timeout", type=click.FloatRange(min=1), help="Seconds a node stays active.")
@option("--staleness", type=click.FloatRange(min=1), help="Seconds a price stays fresh.")
@option("--quorum", type=click.IntRange(1, 16), help="Fresh exchanges needed.")
@option("--grace", type=click.FloatRange(min=0.1), help="Shutdown grace period, seconds.")
def main(
    host: str | None,
    port: int | None,
    config_path: Path | None,
    log_file: Path | None,
    log_level: str | None,
    simulate: bool | None,
    node_timeout: float | None,
    staleness: float | None,
    quorum: int | None,
    grace: float | None,
) -> None:
    """Aggregate per-exchange BTC prices from oracle nodes and serve them over gRPC."""
    try:
        if config_path is not None:
            base = load_config(config_path)
        elif DEFAULT_CONFIG.is_file():
            base = load_config(DEFAULT_CONFIG)
        else:
            base = AggregatorConfig()
        config = base.with_overrides(
            host=host,
            port=port,
            log_file=log_file,
            log_level=log_level,
            simulate=simulate,
            node_timeout=node_timeout,
            staleness=staleness,
            quorum=quorum,
            grace_seconds=grace,
        )
        configure_logging(config.log_level, config.log_file, service="aggregator")
        asyncio.run(serve(config))
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":  # pragma: no cover
    main()
