"""Following closed rounds from the aggregator over gRPC, with no gap and no double report.

The stream (`SubscribePrices`) is opened first and history (`GetPriceHistory`) read second, so a
round that closes during the catch-up arrives on the stream and none falls between the two.
Exactly once comes from the committer's database (the minute is the primary key), not from the
stream: `SubscribePrices` conflates a slow subscriber's updates and an aggregator may restart, so
whenever the stream skips a sequence number or a minute, breaks, or `resync_seconds` pass, the
follower re-reads history from `lookback_seconds` before its last report (rounds can close out of
minute order: a round waiting for its deadline closes after a later one whose venues all
reported). The follower never reads the aggregator's files; the real aggregator drops in for the
fake one in the tests because both implement the RPCs exactly as proto/oracle.proto documents.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from committer.app import Committer
from common.logsetup import get_logger
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.timeutil import MINUTE, Clock, system_clock

_log = get_logger(service="committer")
PAGE_LIMIT = 1000
# Rounds per database transaction while catching up.
INGEST_CHUNK = 500


class Follower:
    """Keeps the committer's reports level with the aggregator's closed rounds."""

    def __init__(
        self,
        committer: Committer,
        channel: grpc.aio.Channel,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.committer = committer
        self.stub = oracle_pb2_grpc.OracleServiceStub(channel)
        self.clock = clock
        self.config = committer.config.committer
        self.connected = asyncio.Event()
        self.catch_ups = 0

    def _resume_from(self) -> int:
        last = self.committer.store.last_report_minute()
        now = self.clock()
        if last is None:
            start = now - self.config.backfill_seconds
        else:
            start = max(last - self.config.lookback_seconds, now - self.config.backfill_seconds)
            start = min(start, last)
        return max(MINUTE, int(start) // MINUTE * MINUTE)

    async def catch_up(self) -> int:
        """Read every closed round since the resume point and report the new ones."""
        from_minute = self._resume_from()
        rounds: list[oracle_pb2.Round] = []
        token = ""
        # A day is two pages; the bound keeps a broken or hostile aggregator that hands out
        # tokens forever from holding the follower (the next catch-up resumes from the last one).
        max_pages = (int(self.clock()) - from_minute) // MINUTE // PAGE_LIMIT + 3
        for _page in range(max_pages):
            page = await self.stub.GetPriceHistory(
                oracle_pb2.GetPriceHistoryRequest(
                    from_minute=from_minute, limit=PAGE_LIMIT, page_token=token
                ),
                timeout=30,
            )
            rounds.extend(page.rounds)
            if not page.next_page_token or page.next_page_token == token:
                break
            token = page.next_page_token
        else:
            _log.warning("history_truncated", pages=max_pages, from_minute=from_minute)
        rounds.sort(key=lambda r: r.minute)
        fresh = 0
        for start in range(0, len(rounds), INGEST_CHUNK):
            fresh += len(
                await self.committer.ingest(rounds[start : start + INGEST_CHUNK], self.clock())
            )
        self.catch_ups += 1
        _log.info("caught_up", from_minute=from_minute, rounds=len(rounds), new_reports=fresh)
        return fresh

    async def follow_once(self) -> None:
        """One subscription: catch up, then report each round as it closes, until it breaks."""
        stream = self.stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        try:
            await stream.wait_for_connection()
            await self.catch_up()
            self.connected.set()
            last_sequence = 0
            resync_at = self.clock() + self.config.resync_seconds
            async for update in stream:
                skipped = last_sequence and update.sequence != last_sequence + 1
                last_sequence = update.sequence
                if update.WhichOneof("update") == "round":
                    newest = self.committer.store.last_report_minute() or 0
                    if skipped or (newest and update.round.minute > newest + MINUTE):
                        await self.catch_up()  # something may have been conflated away
                    await self.committer.ingest([update.round], self.clock())
                elif skipped:
                    await self.catch_up()
                if self.clock() >= resync_at:
                    await self.catch_up()
                    resync_at = self.clock() + self.config.resync_seconds
        finally:
            self.connected.clear()
            stream.cancel()

    async def run(self, stopping: asyncio.Event) -> None:
        """Follow until `stopping` is set; reconnect with capped exponential backoff."""
        delay = 0.5
        while not stopping.is_set():
            try:
                await self.follow_once()
                delay = 0.5  # a clean end of stream (aggregator shutdown): reconnect soon
            except grpc.aio.AioRpcError as error:
                _log.warning(
                    "aggregator_unavailable",
                    code=error.code().name,
                    detail=error.details(),
                    retry_in=delay,
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 (a bug is logged and retried, never a silent stop)
                _log.exception("follower_failed", retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay)
            delay = min(delay * 2, self.config.reconnect_max_seconds)
