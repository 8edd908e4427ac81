"""`exchange-sim`: parse flags, bind, announce the port, serve until SIGTERM/SIGINT, exit 0.

The first stdout line is the banner `SIMULATED exchange-sim listening on http://HOST:PORT ...`,
so a script that started it with `--port 0` can read the port from it; `--port-file PATH` also
writes the bare port number to PATH (atomically, removed again on a clean exit). Fault flags
take the same faults as `POST /_sim/faults` (see `exchange_sim.faults`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from common.errors import ConfigError
from common.settings import (
    click_options,
    exit_on_config_error,
    given_values,
    origin_of,
    start_logging,
)

from .app import SimApp, sim_logger
from .config import ENV_PREFIX, OVERRIDES, SimFile, load_config
from .faults import FaultSpecError
from .server import create_server, run_in_thread

PROGRAM = "exchange-sim"
_DRAIN_SECONDS = 2.0


def _split(flag: str, raw: str, min_parts: int, max_parts: int) -> list[str]:
    parts = raw.split(":")
    if not min_parts <= len(parts) <= max_parts or not parts[0]:
        raise click.BadParameter(f"{raw!r} does not match the documented form", param_hint=flag)
    return parts


def _count(flag: str, raw: str) -> int | None:
    if raw in ("", "0", "inf"):
        return None
    if not raw.isdigit():
        raise click.BadParameter(f"count {raw!r} must be a positive integer", param_hint=flag)
    return int(raw)


def _number(flag: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise click.BadParameter(f"{raw!r} is not a number", param_hint=flag) from None


def fault_specs_from_flags(
    rate_limit: tuple[str, ...],
    http_5xx: tuple[str, ...],
    slow: tuple[str, ...],
    malformed: tuple[str, ...],
    freeze: tuple[str, ...],
    jump: tuple[str, ...],
    fault_json: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Translate the fault flags into `POST /_sim/faults` bodies (one per flag; `--fault` as is)."""
    specs: list[dict[str, Any]] = []
    for raw in rate_limit:
        venue, *rest = _split("--rate-limit", raw, 1, 3)
        fault: dict[str, Any] = {"count": _count("--rate-limit", rest[0] if rest else "")}
        if len(rest) > 1:
            fault["retry_after"] = int(_number("--rate-limit", rest[1]))
        specs.append({"venue": venue, "rate_limit": fault})
    for raw in http_5xx:
        venue, *rest = _split("--http-5xx", raw, 1, 3)
        fault = {"count": _count("--http-5xx", rest[0] if rest else "")}
        if len(rest) > 1:
            fault["status"] = int(_number("--http-5xx", rest[1]))
        specs.append({"venue": venue, "http_5xx": fault})
    for raw in slow:
        venue, delay, *rest = _split("--slow", raw, 2, 3)
        fault = {"delay_seconds": _number("--slow", delay)}
        fault["count"] = _count("--slow", rest[0] if rest else "")
        specs.append({"venue": venue, "slow": fault})
    for raw in malformed:
        venue, *rest = _split("--malformed", raw, 1, 2)
        specs.append(
            {"venue": venue, "malformed": {"count": _count("--malformed", rest[0] if rest else "")}}
        )
    specs.extend({"venue": venue, "freeze": True} for venue in freeze)
    for raw in jump:
        venue, percent = _split("--jump", raw, 2, 2)
        specs.append({"venue": venue, "jump": {"percent": _number("--jump", percent)}})
    for raw in fault_json:
        try:
            specs.append(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{raw!r} is not JSON ({exc})", param_hint="--fault") from None
    return specs


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _write_port_file(path: Path, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(f"{port}\n", encoding="utf-8")
    partial.replace(path)  # atomic: a reader never sees an empty or half-written file


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar=f"{ENV_PREFIX}CONFIG",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help="TOML file with [simulator] and [logging] tables  [default: none]",
)
@click_options(SimFile, OVERRIDES)
@click.option(
    "--rate-limit",
    multiple=True,
    metavar="VENUE[:COUNT[:RETRY_AFTER]]",
    help="Rate-limit VENUE (429 + Retry-After; Kraken: EAPI error in HTTP 200).",
)
@click.option(
    "--http-5xx",
    "http_5xx",
    multiple=True,
    metavar="VENUE[:COUNT[:STATUS]]",
    help="Answer VENUE with a burst of 5xx (default 503).",
)
@click.option(
    "--slow", multiple=True, metavar="VENUE:SECONDS[:COUNT]", help="Delay VENUE's answers."
)
@click.option(
    "--malformed",
    multiple=True,
    metavar="VENUE[:COUNT]",
    help="Answer VENUE with truncated, invalid JSON.",
)
@click.option("--freeze", multiple=True, metavar="VENUE", help="VENUE's price stops moving.")
@click.option(
    "--fault",
    "fault_json",
    multiple=True,
    metavar="JSON",
    help='Any fault as POST /_sim/faults takes it, e.g. \'{"venue":"kraken","drip":{}}\'.',
)
@click.option(
    "--jump",
    multiple=True,
    metavar="VENUE:PERCENT",
    help="VENUE's price jumps by PERCENT from now on.",
)
def main(
    config_path: Path | None,
    rate_limit: tuple[str, ...],
    http_5xx: tuple[str, ...],
    slow: tuple[str, ...],
    malformed: tuple[str, ...],
    freeze: tuple[str, ...],
    fault_json: tuple[str, ...],
    jump: tuple[str, ...],
    **options: object,
) -> None:
    """SIMULATED Binance/Coinbase/Kraken candle APIs on one port (offline mode, test fake).

    Every answer carries the header X-Oracle-Simulated: 1. Prices are NOT real.
    Fault flags repeat; VENUE is binance, coinbase, kraken or all; no COUNT means
    until cleared (DELETE /_sim/faults).
    """
    specs = fault_specs_from_flags(rate_limit, http_5xx, slow, malformed, freeze, jump, fault_json)
    given = given_values(options, OVERRIDES)
    try:
        config = load_config(config_path, given, os.environ, startup_faults=tuple(specs))
        origin = origin_of(("logging", "file"), OVERRIDES, given, os.environ, config.source)
        start_logging(config.logging, service=PROGRAM, origin=origin)
    except ConfigError as error:
        exit_on_config_error(PROGRAM, error)
    log = sim_logger()
    try:
        app = SimApp(config)
    except FaultSpecError as exc:
        raise click.UsageError(str(exc)) from None

    host, port, port_file = config.host, config.port, config.port_file
    try:
        server = create_server(app, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None

    bound = server.port
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    # Serve first, then announce: whoever reads the port file or the banner can connect at once.
    run_in_thread(server)
    if port_file is not None:
        _write_port_file(port_file, bound)
    if not _is_loopback(host):
        warning = (
            f"WARNING: SIMULATED exchange-sim bound to {host}, reachable from other machines; "
            "its prices are fake. Use --host 127.0.0.1 unless you mean it."
        )
        click.echo(warning, err=True)
        log.warning("bound_beyond_loopback", host=host, port=bound)
    click.echo(
        f"SIMULATED exchange-sim listening on http://{host}:{bound} "
        f"(seed={config.seed}, price={config.price}, coinbase_lag={config.coinbase_lag_seconds}s; "
        "NOT real prices)"
    )
    sys.stdout.flush()
    log.info(
        "listening",
        host=host,
        port=bound,
        seed=config.seed,
        price=str(config.price),
        coinbase_lag_seconds=config.coinbase_lag_seconds,
        pid=os.getpid(),
        faults=app.faults.snapshot() if specs else None,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()  # stop accepting; answers already being written may finish
        if not server.drain(_DRAIN_SECONDS):
            log.warning("stopped_with_requests_in_flight", grace_seconds=_DRAIN_SECONDS)
        server.server_close()
        if port_file is not None:
            port_file.unlink(missing_ok=True)
        log.info("stopped")
