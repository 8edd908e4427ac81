"""`committer` command line: `run`, `keygen`, `info` and `verify`.

Options beat the config file; `ORACLE_COMMITTER_<COMMAND>_<OPTION>` environment variables
(click's auto prefix, e.g. `ORACLE_COMMITTER_RUN_PORT`) fill options; `ORACLE_COMMITTER_CONFIG`
names the file.
Without --config, config/committer.toml is read when it exists, else the built-in defaults.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from pathlib import Path

import click

from committer.config import CommitterConfig, build_config, load_config
from common.errors import OracleError
from common.listen import ensure_can_listen
from common.logsetup import configure_logging
from common.settings import CHECK_CONFIG_HELP, check_log_file, exit_config_valid

DEFAULT_CONFIG = Path("config/committer.toml")
option = functools.partial(click.option, show_envvar=True)


def _config(config_path: Path | None, **overrides: dict[str, object]) -> CommitterConfig:
    if config_path is not None:
        return load_config(config_path, **overrides)
    if DEFAULT_CONFIG.is_file():
        return load_config(DEFAULT_CONFIG, **overrides)
    from committer.config import merge  # noqa: PLC0415

    return build_config(merge({}, overrides))


config_option = option(
    "--config",
    "config_path",
    envvar="ORACLE_COMMITTER_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"TOML config file.  [default: {DEFAULT_CONFIG}, if present]",
)


@click.group(
    context_settings={
        "auto_envvar_prefix": "ORACLE_COMMITTER",
        "help_option_names": ["-h", "--help"],
    }
)
def main() -> None:
    """Signed round reports, DLC oracle attestations and Bitcoin anchoring for the oracle."""


@main.command()
@config_option
@option("--aggregator", help="Aggregator gRPC address host:port.  [default: 127.0.0.1:50051]")
@option("--host", help="Listen address of gRPC and HTTP.  [default: 127.0.0.1]")
@option("--port", type=click.IntRange(0, 65535), help="gRPC port.  [default: 50061]")
@option("--http-port", type=click.IntRange(0, 65535), help="HTTP port.  [default: 8061]")
@option("--database", type=click.Path(dir_okay=False, path_type=Path), help="SQLite file.")
@option("--simulate/--no-simulate", default=None, help="Regtest, PSBTs to a directory, SIMULATED.")
@option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="JSON log file.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log level.")
@click.option(
    "--check-config", is_flag=True, help=CHECK_CONFIG_HELP + " Key files are checked when present."
)
def run(
    config_path: Path | None,
    aggregator: str | None,
    host: str | None,
    port: int | None,
    http_port: int | None,
    database: Path | None,
    simulate: bool | None,
    log_file: Path | None,
    log_level: str | None,
    check_config: bool,
) -> None:
    """Follow the aggregator's closed rounds; sign, attest and anchor them; serve the results."""
    from committer.server import run as serve  # noqa: PLC0415 (keeps `verify` light)

    try:
        config = _config(
            config_path,
            committer={
                "aggregator": aggregator,
                "host": host,
                "port": port,
                "http_port": http_port,
                "database": database,
                "simulate": simulate,
            },
            logging={"file": log_file, "level": log_level},
        )
        if check_config:
            _check(config)
        # Asked first, so a taken port is one clear line, not gRPC's own stderr line and ours.
        ensure_can_listen(
            config.committer.host, config.committer.port, what="the committer's gRPC port"
        )
        if config.committer.http_enabled:
            ensure_can_listen(
                config.committer.host,
                config.committer.http_port,
                what="the committer's HTTP port",
                option="--http-port",
            )
        configure_logging(
            config.logging.level,
            config.logging.file,
            service="committer",
            max_bytes=config.logging.max_bytes,
            backups=config.logging.backups,
        )
        asyncio.run(serve(config))
    except OracleError as error:
        if check_config:
            click.echo(f"committer: configuration error: {error}", err=True)
            sys.exit(2)
        raise click.ClickException(str(error)) from error


def _check(config: CommitterConfig) -> None:
    """`run --check-config`: the settings (already loaded), the log file and any existing keys."""
    from committer.server import key_paths, load_keys  # noqa: PLC0415

    check_log_file(config.logging, origin=config.source)
    if all(path.exists() for path in key_paths(config)):
        load_keys(config)  # modes, formats, and the anchor key apart from the oracle key
    exit_config_valid("committer", config.source)


@main.command()
@config_option
def keygen(config_path: Path | None) -> None:
    """Create the oracle key, the DLC nonce seed and the anchor key (0600; never overwritten)."""
    from committer.server import generate_keys, load_keys  # noqa: PLC0415

    try:
        config = _config(config_path)
        for path in generate_keys(config):
            click.echo(f"created {path} (mode 0600)")
        keys = load_keys(config)
    except OracleError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"oracle public key:   {keys.oracle.public_key.hex()}")
    click.echo(f"anchor internal key: {keys.anchor_internal_key.hex()}")


@main.command()
@config_option
def info(config_path: Path | None) -> None:
    """Print the public keys, the funding address and the settings (no secret is printed)."""
    from committer.bitcoin import address, output_key, p2tr_script  # noqa: PLC0415
    from committer.server import load_keys  # noqa: PLC0415

    try:
        config = _config(config_path)
        keys = load_keys(config)
    except OracleError as error:
        raise click.ClickException(str(error)) from error
    funding = address(p2tr_script(output_key(keys.anchor_internal_key)), config.network)
    click.echo(
        json.dumps(
            {
                "oracle_public_key": keys.oracle.public_key.hex(),
                "anchor_internal_key": keys.anchor_internal_key.hex(),
                "funding_address": funding,
                "network": config.network.value,
                "simulate": config.simulate,
                "signing_mode": config.dlc.signing_mode.value,
                "anchor_mode": config.anchor.mode.value,
            },
            indent=1,
        )
    )


def _node_keys(path: Path | None) -> dict[str, bytes] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(node): bytes.fromhex(str(key)) for node, key in data.items()}
    except (OSError, ValueError, AttributeError) as error:
        raise click.ClickException(
            f"{path}: not a JSON object of node id -> hex key: {error}"
        ) from None


@main.command()
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tx", "tx_hex", help="The anchoring transaction, hex.")
@click.option(
    "--tx-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File with the transaction hex.",
)
@click.option("--txid", help="Fetch the anchoring transaction by id from --backend.")
@click.option(
    "--backend", type=click.Choice(["esplora", "bitcoind"]), help="Where --txid is fetched."
)
@click.option("--backend-url", help="Esplora base URL or Bitcoin Core RPC URL.")
@click.option(
    "--rpc-cookie-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Bitcoin Core cookie.",
)
@click.option("--oracle-key", help="Pin the oracle's x-only public key (hex).")
@click.option(
    "--node-keys",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON {node_id: hex key}.",
)
def verify(
    bundle: Path,
    tx_hex: str | None,
    tx_file: Path | None,
    txid: str | None,
    backend: str | None,
    backend_url: str | None,
    rpc_cookie_file: Path | None,
    oracle_key: str | None,
    node_keys: Path | None,
) -> None:
    """Check a report, its node signatures, its Merkle proof and its on-chain commitment.

    BUNDLE is the JSON of GET /v1/proofs/<minute>. Prints each check and VERIFIED: yes or no;
    exits 0 when everything holds, 1 otherwise.
    """
    from committer.verify import parse_bundle, verify_bundle  # noqa: PLC0415

    try:
        document = parse_bundle(bundle.read_text(encoding="utf-8"))
        pinned = bytes.fromhex(oracle_key) if oracle_key else None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if tx_file is not None:
        tx_hex = tx_file.read_text(encoding="ascii").strip()
    if tx_hex is None and txid is not None:
        tx_hex = asyncio.run(_fetch_tx(txid, backend, backend_url, rpc_cookie_file))
    if tx_hex is None and document.get("anchor", {}).get("tx"):
        click.echo("  note  using the transaction inside the bundle (served by the committer)")
        tx_hex = document["anchor"]["tx"]
    verdict = verify_bundle(document, tx_hex, oracle_key=pinned, node_keys=_node_keys(node_keys))
    for line in verdict.lines():
        click.echo(line)
    sys.exit(0 if verdict.ok else 1)


async def _fetch_tx(txid: str, backend: str | None, url: str | None, cookie: Path | None) -> str:
    from committer.backends import BackendError, BitcoinCoreBackend, EsploraBackend  # noqa: PLC0415

    if backend is None or url is None:
        raise click.ClickException("--txid needs --backend and --backend-url")
    client = (
        EsploraBackend(url) if backend == "esplora" else BitcoinCoreBackend(url, cookie_file=cookie)
    )
    try:
        return await client.transaction_hex(txid)
    except BackendError as error:
        raise click.ClickException(str(error)) from None
    finally:
        await client.aclose()
