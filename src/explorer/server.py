"""Building the explorer (gRPC client, live feed, web app, bound socket) apart from running it.

Tests build the real explorer on port 0 in-process against a fake aggregator; the CLI calls
`serve`, which runs until SIGTERM/SIGINT and then closes the event streams, the feed and the
gRPC channel in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from dataclasses import dataclass

from aiohttp import web

from common.errors import ConfigError
from common.logsetup import get_logger
from common.timeutil import Clock, system_clock
from explorer.anchors import AnchorSource, anchor_source
from explorer.app import build_app
from explorer.config import ExplorerConfig
from explorer.documents import Documents
from explorer.feed import LiveFeed
from explorer.upstream import AggregatorClient

_log = get_logger(service="explorer")


@dataclass(slots=True)
class RunningExplorer:
    """A started explorer: its URL, and what `stop` closes."""

    runner: web.AppRunner
    port: int
    feed: LiveFeed
    client: AggregatorClient
    anchors: AnchorSource
    host: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.feed.stop()
        await self.anchors.close()
        await self.client.close()


async def start_explorer(
    config: ExplorerConfig,
    *,
    clock: Clock = system_clock,
    anchors: AnchorSource | None = None,
) -> RunningExplorer:
    """Connect (lazily) to the aggregator, start the live feed, bind and start the web server.

    `anchors` replaces the committer client chosen by the config (tests pass a fake).
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        # Our own socket, bound first: a taken port is a clear error before anything starts,
        # and port 0 tells its number (the verify command needs it).
        sock = socket.create_server((config.host, config.port), family=family)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {error.strerror or error} "
            "(is another explorer running? try --port)"
        ) from error
    port = int(sock.getsockname()[1])
    client = AggregatorClient(config.aggregator_target, timeout=config.rpc_timeout)
    if anchors is None:
        anchors = anchor_source(config.committer_target, timeout=config.rpc_timeout)
    feed = LiveFeed(client, config, clock)
    app = build_app(config, Documents(feed, client, anchors, clock), feed, port=port)
    # Event streams never end by themselves: give them a short grace, then close them.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    feed.start()
    return RunningExplorer(runner, port, feed, client, anchors, config.host)


async def serve(config: ExplorerConfig, *, clock: Clock = system_clock) -> None:
    """Run until SIGTERM/SIGINT."""
    explorer = await start_explorer(config, clock=clock)
    _log.info(
        "explorer_started",
        url=explorer.url,
        aggregator=config.aggregator_target,
        committer=config.committer_target or None,
        config=config.source,
    )
    if not config.loopback:
        _log.warning(
            "explorer_exposed",
            host=config.host,
            detail="the explorer listens beyond this machine; it is read-only but public",
        )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        _log.info("explorer_stopping")
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):
                loop.remove_signal_handler(signum)
        await explorer.stop()
        _log.info("explorer_stopped")
