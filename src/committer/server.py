"""Building the committer (keys, store, gRPC server, HTTP endpoint) apart from running it.

`build` binds everything on the configured ports (0 = free ports, for tests) without starting
anything; `run` starts the follower, the scheduler (announcements and anchors, checked every
`TICK` seconds) and both servers, and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc

from committer.app import Committer, Keys
from committer.backends import Backend, BitcoinCoreBackend, EsploraBackend
from committer.config import CommitterConfig
from committer.follower import Follower
from committer.http import start_http
from committer.service import CommitterServicer
from committer.store import open_store
from common.errors import ConfigError
from common.grpc_client import aio_channel
from common.logsetup import get_logger
from common.proto import committer_pb2_grpc
from common.schnorr import SigningKey, load_key_file, write_key_file
from common.timeutil import Clock, system_clock

_log = get_logger(service="committer")
TICK = 5.0


def key_paths(config: CommitterConfig) -> list[Path]:
    paths = [config.committer.key_file, config.committer.nonce_seed_file]
    if config.anchor.signer == "local" or not config.anchor.internal_key:
        paths.append(config.anchor.anchor_key_file)
    return paths


def generate_keys(config: CommitterConfig) -> list[Path]:
    """Create every key file the config names that does not exist yet (0600); never overwrite."""
    made = []
    for path in key_paths(config):
        if not path.exists():
            write_key_file(path, SigningKey.generate())
            made.append(path)
    return made


def load_keys(config: CommitterConfig) -> Keys:
    oracle = load_key_file(config.committer.key_file)
    seed = load_key_file(config.committer.nonce_seed_file).secret_bytes()
    anchor_key: SigningKey | None = None
    if config.anchor.internal_key:
        internal = bytes.fromhex(config.anchor.internal_key)
        if config.anchor.signer == "local":
            anchor_key = load_key_file(config.anchor.anchor_key_file)
            if anchor_key.public_key != internal:
                raise ConfigError("[anchor] internal_key is not the anchor key file's public key")
    else:
        anchor_key = load_key_file(config.anchor.anchor_key_file)
        internal = anchor_key.public_key
    if anchor_key is not None and anchor_key.public_key == oracle.public_key:
        raise ConfigError("the anchor key must not be the oracle key (keep funds apart)")
    return Keys(oracle, seed, anchor_key if config.anchor.signer == "local" else None, internal)


def make_backend(config: CommitterConfig) -> Backend | None:
    anchor = config.anchor
    if anchor.backend == "bitcoind":
        return BitcoinCoreBackend(
            anchor.backend_url, user=anchor.rpc_user, cookie_file=anchor.rpc_cookie_file
        )
    if anchor.backend == "esplora":
        return EsploraBackend(anchor.backend_url)
    return None


@dataclass(slots=True)
class Built:
    committer: Committer
    server: grpc.aio.Server
    port: int


def build(
    config: CommitterConfig,
    *,
    keys: Keys | None = None,
    backend: Backend | None = None,
) -> Built:
    """The committer and its bound, unstarted gRPC server."""
    store = open_store(config.committer.database)
    committer = Committer(config, store, keys or load_keys(config), backend=backend)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    committer_pb2_grpc.add_CommitterServiceServicer_to_server(CommitterServicer(committer), server)
    host = config.committer.host
    address = (
        f"[{host}]:{config.committer.port}" if ":" in host else f"{host}:{config.committer.port}"
    )
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        store.close()
        raise ConfigError(f"cannot listen on {address}: port taken? (try --port)") from error
    return Built(committer, server, port)


async def scheduler(committer: Committer, stopping: asyncio.Event, clock: Clock) -> None:
    """Announce and anchor when due; errors are logged and retried on the next tick."""
    while not stopping.is_set():
        try:
            committer.announce_due(clock())
            await committer.discover_funding()
            await committer.anchor_due(clock())
        except Exception:  # noqa: BLE001 (a bad tick must not stop the committer)
            _log.exception("scheduler_tick_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=TICK)


async def run(config: CommitterConfig, *, clock: Clock = system_clock) -> None:
    backend = make_backend(config)
    built = build(config, backend=backend)
    committer = built.committer
    await built.server.start()
    http_server = None
    if config.committer.http_enabled:
        http_server = await start_http(committer, config.committer.host, config.committer.http_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    _log.info(
        "committer_started",
        grpc=f"{config.committer.host}:{built.port}",
        http=f"{config.committer.host}:{config.committer.http_port}" if http_server else "off",
        aggregator=config.committer.aggregator,
        oracle_public_key=committer.keys.oracle.public_key.hex(),
        funding_address=committer.funding_address(),
        network=config.network.value,
        simulate=config.simulate,
        config=config.source,
    )
    if config.simulate:
        _log.warning(
            "SIMULATED_MODE", detail="regtest, PSBTs to a directory, every report SIMULATED"
        )
    channel = aio_channel(config.committer.aggregator)
    follower = Follower(committer, channel, clock=clock)
    tasks = [
        asyncio.create_task(follower.run(stopping)),
        asyncio.create_task(scheduler(committer, stopping, clock)),
    ]
    try:
        await stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close(None)
        if http_server is not None:
            http_server.close()
            await http_server.wait_closed()
        await built.server.stop(config.committer.grace_seconds)
        if backend is not None:
            await backend.aclose()
        committer.store.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        _log.info("committer_stopped")
