"""The node's loop: at each minute boundary fetch the candle that just closed, check it, submit it.

One cycle per boundary: the fetch may retry and poll until the minute's deadline, a candle that
fails validation is logged and dropped, and the submission goes through the buffered submitter so
an aggregator outage never stops collection. Each cycle logs how late the fetch started and
finished after the boundary (skew), so operators can see how well the nodes are synchronised.
On SIGINT/SIGTERM the in-flight minute gets a short grace period to finish, then is abandoned,
the buffer gets one last delivery attempt, and the process exits 0; a second signal stops it at
once (the two-stage shutdown of the style guide, as the aggregator does).
"""

from __future__ import annotations

import asyncio
import signal
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import structlog
from structlog.typing import FilteringBoundLogger

from common.grpc_client import PLAINTEXT, ChannelSecurity
from common.logsetup import get_logger
from common.metrics import MetricsServer
from common.schnorr import SigningKey, load_key_file
from common.timeutil import MINUTE, Clock, format_minute, minute_floor, system_clock
from common.tls import channel_credentials
from oracle_node.candle import Candle
from oracle_node.config import NodeConfig
from oracle_node.errors import (
    CandleNotYetAvailableError,
    FetchError,
    InvalidCandleError,
    RateLimitedError,
)
from oracle_node.fetcher import CandleFetcher, Sleep, make_client
from oracle_node.metrics import NodeMetrics
from oracle_node.rates import RATE_BOUNDS, RATE_FETCH_WINDOW
from oracle_node.scheduler import MinuteScheduler, Tick
from oracle_node.submitter import Observation, Submitter
from oracle_node.validation import PriceBounds, validate_candle

# `--once` waits this long for the newest closed minute, then tries older ones briefly.
_ONCE_LOOKBACK = 6
_ONCE_FIRST_WAIT = 10.0
_ONCE_OLDER_WAIT = 2.0
# Seconds before the next boundary by which a cycle stops waiting for the aggregator.
_NEXT_TICK_MARGIN = 1.0
# Skipped minutes looked for again in later answers (Coinbase publishes 1-7 minutes late): at most
# this many, and none older than this, so a late report still lands inside the aggregator's
# 600 s lateness limit (closed at m + 60, delivered before the next boundary after m + 540 + 60).
_BACKFILL_MINUTES = 5
_BACKFILL_HORIZON = 8 * MINUTE


@dataclass
class _Pair:
    """One pair the node collects: its fetcher, its bounds, the minutes it may still backfill.

    `prefix` starts the pair's log event names: "" for the BTC price (`fetch_started`, ...),
    "rate_" for the USDT/USD rate (`rate_fetch_started`, ...), so tools that read BTC events never
    mistake a rate for a price.
    """

    base: str
    prefix: str
    fetcher: CandleFetcher
    bounds: PriceBounds
    skipped: deque[int] = field(default_factory=lambda: deque(maxlen=_BACKFILL_MINUTES))


class OracleNode:
    """Collects one exchange's closed candles minute by minute and hands them to the submitter.

    Each minute: the BTC candle, then (where the venue lists one) the USDT/USD rate of the same
    minute. The rate comes second and fails on its own: nothing that happens to it can cost the
    BTC minute, which is already queued (and delivered) before the rate is asked for.
    """

    def __init__(
        self,
        config: NodeConfig,
        fetcher: CandleFetcher,
        submitter: Submitter,
        scheduler: MinuteScheduler,
        *,
        clock: Clock = system_clock,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._fetcher = fetcher
        self._submitter = submitter
        self._scheduler = scheduler
        self._clock = clock
        self._btc = _Pair("BTC", "", fetcher, config.bounds)
        rate_symbol = config.exchange.usdt_rate_symbol
        self._rate = (
            _Pair("USDT", "rate_", fetcher.sibling(rate_symbol), RATE_BOUNDS)
            if rate_symbol
            else None
        )
        bound = {"node_id": config.node_id, "exchange": config.exchange.name}
        if config.simulate:
            bound["mode"] = "SIMULATED"
        self._log = get_logger().bind(**bound)

    async def collect(self, tick: Tick) -> Candle | None:
        """One cycle for `tick`: the validated BTC candle that was queued, or None if skipped.

        Whatever became of this minute, the buffer gets a delivery attempt: after an aggregator
        restart, observations from earlier minutes must not wait for the next successful fetch,
        or they grow older than the aggregator's lateness limit and are refused. The BTC candle
        is delivered before the rate is fetched, so a slow rate never delays the price.
        """
        candle: Candle | None = None
        try:
            candle = await self._collect(
                self._btc, tick, tick.boundary + self._config.fetch_deadline
            )
        except Exception as error:  # noqa: BLE001 - one bad minute must never end the node
            self._cycle_failed(tick, error, self._btc)
        await self._deliver_buffered(tick)
        if self._rate is not None:
            try:
                await self._collect(self._rate, tick, self._rate_deadline(tick))
            except Exception as error:  # noqa: BLE001 - nor may a bad rate
                self._cycle_failed(tick, error, self._rate)
            await self._deliver_buffered(tick)
        return candle

    def _rate_deadline(self, tick: Tick) -> float:
        """The BTC deadline, or a few seconds after now if the BTC fetch used it all; never
        later than shortly before the next collection."""
        wanted = max(tick.boundary + self._config.fetch_deadline, self._clock() + RATE_FETCH_WINDOW)
        latest = tick.boundary + self._config.interval - RATE_FETCH_WINDOW
        return min(wanted, latest)

    async def _collect(self, pair: _Pair, tick: Tick, deadline: float) -> Candle | None:
        """Fetch, check and queue `pair`'s minute of `tick`; None if it was skipped or refused."""
        minute_text = format_minute(tick.minute)
        started = self._clock()
        journal = self._log.bind(symbol=pair.fetcher.symbol) if pair.prefix else self._log
        journal.info(
            f"{pair.prefix}fetch_started", minute=minute_text, skew_ms=_ms(tick.skew(started))
        )
        try:
            result = await pair.fetcher.fetch(
                tick.minute, deadline, backfill=self._backlog(pair, tick.minute)
            )
        except CandleNotYetAvailableError as error:
            pair.skipped.append(tick.minute)
            self._record_fetch(pair, tick, started, "skipped", error)
            journal.warning(
                f"{pair.prefix}minute_skipped",
                minute=minute_text,
                reason=f"not published by the deadline ({deadline - tick.boundary:g} s "
                f"after the boundary): {error}",
                backfill="taken from a later answer if it appears in time",
            )
            return None
        except RateLimitedError as error:
            pair.skipped.append(tick.minute)
            self._record_fetch(pair, tick, started, "failed", error)
            # Retry-After reaches past this minute's deadline (e.g. a 418 ban): skip, say why.
            journal.error(
                "Rate limit exceeded - Too many requests",
                hint="automatic retry with exponential backoff from the next minute on",
                minute=minute_text,
                base=pair.base,
                error=str(error),
                retry_after=error.retry_after,
            )
            return None
        except FetchError as error:
            pair.skipped.append(tick.minute)
            self._record_fetch(pair, tick, started, "failed", error)
            journal.error(
                f"{pair.prefix}fetch_failed",
                minute=minute_text,
                error=str(error),
                kind=type(error).__name__,
                retryable=error.retryable,
            )
            return None
        finally:
            # Earlier minutes found in this minute's answers go first: observations in order.
            self._queue_backfilled(pair, journal)
        finished = self._clock()
        self._record_fetch(pair, tick, started, "ok", None)
        candle = result.candle
        journal.info(
            f"{pair.prefix}fetch_finished",
            minute=minute_text,
            close=str(candle.close),
            quote=candle.quote,
            skew_start_ms=_ms(tick.skew(started)),
            skew_end_ms=_ms(tick.skew(finished)),
            latency_ms=result.latency_ms,
            attempts=result.attempts,
        )
        try:
            validate_candle(candle, pair.bounds)
        except InvalidCandleError as error:
            journal.error(f"{pair.prefix}candle_rejected", minute=minute_text, reason=str(error))
            return None
        self._submitter.enqueue(Observation(candle=candle, collected_at=finished))
        return candle

    def _record_fetch(
        self, pair: _Pair, tick: Tick, started: float, outcome: str, error: Exception | None
    ) -> None:
        # The BTC price only: the node's fetch metrics and /healthz are about its price.
        if self._metrics is None or pair.prefix:
            return
        finished = self._clock()
        self._metrics.record_fetch(
            outcome=outcome,
            seconds=finished - started,
            start_skew=tick.skew(started),
            finish_skew=tick.skew(finished),
            minute=tick.minute,
            now=finished,
            error="" if error is None else str(error),
        )

    def _backlog(self, pair: _Pair, minute: int) -> tuple[int, ...]:
        """The skipped minutes still worth submitting late, oldest first."""
        for old in [skipped for skipped in pair.skipped if skipped < minute - _BACKFILL_HORIZON]:
            pair.skipped.remove(old)
        return tuple(sorted(pair.skipped))

    def _queue_backfilled(self, pair: _Pair, journal: FilteringBoundLogger) -> None:
        for candle in pair.fetcher.take_backfilled():
            minute_text = format_minute(candle.minute)
            with suppress(ValueError):
                pair.skipped.remove(candle.minute)
            try:
                validate_candle(candle, pair.bounds)
            except InvalidCandleError as error:
                journal.error(
                    f"{pair.prefix}candle_rejected", minute=minute_text, reason=str(error)
                )
                continue
            collected_at = self._clock()
            journal.info(
                f"{pair.prefix}minute_backfilled",
                minute=minute_text,
                close=str(candle.close),
                quote=candle.quote,
                late_s=round(collected_at - (candle.minute + MINUTE)),
            )
            self._submitter.enqueue(Observation(candle=candle, collected_at=collected_at))

    async def _deliver_buffered(self, tick: Tick) -> None:
        """Send what is buffered; may wait for a restarting aggregator, never into the next tick.

        Whatever is not sent by then stays buffered for the next minute.
        """
        if not self._submitter.pending:
            return
        budget = tick.boundary + self._config.interval - self._clock() - _NEXT_TICK_MARGIN
        if budget > 0:
            try:
                await asyncio.wait_for(self._submitter.flush(), timeout=budget)
            except TimeoutError:
                self._log.warning("delivery_postponed", pending=self._submitter.pending)

    def _cycle_failed(self, tick: Tick, error: Exception, pair: _Pair | None = None) -> None:
        # A bug or an answer nobody foresaw: lose this minute, say why, keep collecting.
        if self._metrics is not None:
            self._metrics.record_error(f"cycle failed: {error!r}", self._clock(), tick.minute)
        self._log.exception(
            "cycle_failed",
            minute=format_minute(tick.minute),
            base=pair.base if pair is not None else None,
            error=repr(error)[:500],
            kind=type(error).__name__,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Collect at every boundary until `stop` is set, then shut down cleanly."""
        self._log.info(
            "node_started",
            aggregator=self._config.aggregator_url,
            api_url=self._fetcher.api_url,
            symbol=self._config.exchange.symbol,
            interval=self._config.interval,
            fetch_offset=self._config.fetch_offset,
            config=str(self._config.source) if self._config.source else None,
            signed=self._config.key_file is not None,
            tls=self._config.tls is not None,
        )
        if self._config.simulate:
            self._log.warning("SIMULATED_MODE", detail="prices come from the exchange simulator")
        if self._config.key_file is None:
            self._log.warning(
                "unsigned_submissions",
                detail="no [oracle] key_file: observations are sent unsigned, which an "
                "aggregator refuses unless it runs with --allow-unsigned (oracle-node keygen)",
            )
        await self._submitter.check_health()
        previous: Tick | None = None
        while not stop.is_set():
            tick = await self._scheduler.wait(stop)
            if tick is None:
                break
            if previous is not None and tick.boundary > previous.boundary + self._config.interval:
                self._log.warning(
                    "collections_missed",
                    after=format_minute(previous.minute),
                    next_minute=format_minute(tick.minute),
                    reason="the previous cycle ran past the next boundary",
                )
            previous = tick
            await self._run_cycle(tick, stop)
        await self._shutdown()

    async def _run_cycle(self, tick: Tick, stop: asyncio.Event) -> None:
        cycle = asyncio.ensure_future(self.collect(tick))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({cycle, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not cycle.done():
                self._log.info("shutdown_waiting_for_minute", minute=format_minute(tick.minute))
                try:
                    await asyncio.wait_for(cycle, timeout=self._config.shutdown_grace)
                except TimeoutError:
                    self._log.warning(
                        "minute_abandoned_on_shutdown", minute=format_minute(tick.minute)
                    )
            else:
                cycle.result()
        except Exception as error:  # noqa: BLE001 - e.g. delivery failing in a way nobody foresaw
            self._cycle_failed(tick, error)
        finally:
            stopped.cancel()

    async def _shutdown(self) -> None:
        if self._submitter.pending:
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._submitter.flush(), timeout=max(self._config.shutdown_grace, 0.1)
                )
        self._log.info("node_stopped", pending=self._submitter.pending)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@contextmanager
def _two_stage_signals(
    stop: asyncio.Event, running: asyncio.Future[None], log: FilteringBoundLogger
) -> Iterator[list[str]]:
    """First SIGINT/SIGTERM sets `stop` (finish the minute within the grace period, flush the
    buffer); a second one cancels `running` at once. Yields the list of forced stops' signal names.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    forced: list[str] = []

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.info("shutdown_requested", signal=signum.name, hint="a second signal stops at once")
            stop.set()
            return
        log.warning("shutdown_forced", signal=signum.name)
        forced.append(signum.name)
        running.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        yield forced
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def load_credentials(config: NodeConfig) -> tuple[SigningKey | None, ChannelSecurity]:
    """The node's signing key and channel security from its config; `ConfigError` naming the
    file when a key is unreadable, readable by group or others, or not a key (never its content).
    """
    key = None if config.key_file is None else load_key_file(config.key_file)
    tls = config.tls
    if tls is None:
        return key, PLAINTEXT
    credentials = channel_credentials(
        tls.ca, client_cert=tls.client_cert, client_key=tls.client_key
    )
    return key, ChannelSecurity(credentials=credentials, server_name=tls.server_name)


async def run_node(
    config: NodeConfig, *, clock: Clock = system_clock, sleep: Sleep = asyncio.sleep
) -> None:
    """The whole process: build the client, fetcher, submitter and loop; run until a signal."""
    # Every line of this process names the node, also those of the fetcher and the venue client
    # (candle_not_yet_published, fetch_retry, ...), which know the exchange but not the node.
    with structlog.contextvars.bound_contextvars(node_id=config.node_id):
        await _run_node(config, clock=clock, sleep=sleep)


async def _run_node(config: NodeConfig, *, clock: Clock, sleep: Sleep) -> None:
    stop = asyncio.Event()
    metrics = NodeMetrics(
        exchange=config.exchange.name,
        node_id=config.node_id,
        simulated=config.simulate,
        settings=config.metrics,
        clock=clock,
        transport=config.transport,
    )
    endpoint = (
        MetricsServer(metrics.registry, config.metrics, health=metrics.health)
        if config.metrics.enabled
        else None
    )
    if endpoint is not None:
        endpoint.start()  # a taken port is a ConfigError before the first minute
    try:
        await _run_collecting(config, metrics, clock=clock, sleep=sleep, stop=stop)
    finally:
        if endpoint is not None:
            endpoint.stop()


async def _run_collecting(
    config: NodeConfig, metrics: NodeMetrics, *, clock: Clock, sleep: Sleep, stop: asyncio.Event
) -> None:
    async with make_client(config.exchange) as client:
        fetcher = CandleFetcher(
            client,
            config.exchange,
            simulate=config.simulate,
            clock=clock,
            sleep=sleep,
            on_retry=metrics.record_retry,
        )
        signing_key, security = load_credentials(config)
        submitter = Submitter(
            config.aggregator_target,
            config.node_id,
            simulated=config.simulate,
            buffer_size=config.buffer_size,
            call_timeout=config.submit_timeout,
            retries=config.submit_retries,
            sleep=sleep,
            transport=config.transport,
            metrics=metrics,
            clock=clock,
            security=security,
            signing_key=signing_key,
        )
        scheduler = MinuteScheduler(config.interval, config.fetch_offset, clock=clock, sleep=sleep)
        node = OracleNode(config, fetcher, submitter, scheduler, clock=clock, metrics=metrics)
        running = asyncio.ensure_future(node.run(stop))
        log = get_logger().bind(node_id=config.node_id, exchange=config.exchange.name)
        try:
            with _two_stage_signals(stop, running, log) as forced:
                try:
                    await running
                except asyncio.CancelledError:
                    if not forced:
                        raise
                    log.warning("node_stopped", forced=True, pending=submitter.pending)
        finally:
            await submitter.close()


async def fetch_once(config: NodeConfig, *, clock: Clock = system_clock) -> dict[str, object]:
    """`--once`: the newest closed candle, validated, as the JSON object the CLI prints."""
    now = clock()
    # The minute that closed most recently: the one before the minute containing `now`. Coinbase
    # may publish it minutes late, so after a short wait fall back to the newest one it has.
    newest = minute_floor(now) - MINUTE
    async with make_client(config.exchange) as client:
        fetcher = CandleFetcher(client, config.exchange, simulate=config.simulate, clock=clock)
        for minutes_back in range(_ONCE_LOOKBACK):
            minute = newest - minutes_back * MINUTE
            wait = _ONCE_FIRST_WAIT if minutes_back == 0 else _ONCE_OLDER_WAIT
            try:
                result = await fetcher.fetch(minute, clock() + wait)
                break
            except CandleNotYetAvailableError:
                if minutes_back == _ONCE_LOOKBACK - 1:
                    raise
    validate_candle(result.candle, config.bounds)
    return {
        **result.candle.as_json(),
        "latency_ms": result.latency_ms,
        "simulated": config.simulate,
        "api_url": config.exchange.api_url,
    }
