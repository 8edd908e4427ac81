"""An in-process aggregator that serves rounds exactly as proto/oracle.proto documents.

GetPriceHistory: closed rounds newest first, `limit` 0 = 100 and 1..1000 (else INVALID_ARGUMENT),
inclusive `from_minute`/`to_minute` (0 = unbounded), an opaque `page_token`. SubscribePrices: the
current state at once, then an update per round close, `sequence` increasing by one per update sent
to that subscriber. GetRound: NOT_FOUND when unknown. Test hooks: `close_round`, `drop_next_round`
(a conflated update: the subscriber sees a sequence gap), `restart` (every stream ends UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from common.proto import oracle_pb2, oracle_pb2_grpc


class FakeAggregator(oracle_pb2_grpc.OracleServiceServicer):
    def __init__(self) -> None:
        self.rounds: dict[int, oracle_pb2.Round] = {}
        self.subscribers: list[asyncio.Queue[oracle_pb2.Round | None]] = []
        self.history_calls = 0
        self.drop_next = 0

    def add_rounds(self, rounds: list[oracle_pb2.Round]) -> None:
        """Rounds closed while nobody watched (e.g. during the committer's downtime)."""
        for round_ in rounds:
            self.rounds[round_.minute] = round_

    def close_round(self, round_: oracle_pb2.Round) -> None:
        self.rounds[round_.minute] = round_
        for queue in self.subscribers:
            queue.put_nowait(round_)

    def drop_next_round(self) -> None:
        self.drop_next += 1

    def restart(self) -> None:
        for queue in self.subscribers:
            queue.put_nowait(None)

    async def GetRound(self, request: oracle_pb2.GetRoundRequest, context: Any) -> oracle_pb2.Round:
        if request.minute not in self.rounds:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no round for {request.minute}")
        return self.rounds[request.minute]

    async def GetPriceHistory(
        self, request: oracle_pb2.GetPriceHistoryRequest, context: Any
    ) -> oracle_pb2.GetPriceHistoryResponse:
        self.history_calls += 1
        limit = request.limit or 100
        if not 1 <= limit <= 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: 1 to 1000")
        if request.to_minute and request.from_minute > request.to_minute:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "from after to")
        before = None
        if request.page_token:
            if not request.page_token.startswith("before:"):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token")
            before = int(request.page_token.removeprefix("before:"))
        minutes = sorted(
            (
                m
                for m, r in self.rounds.items()
                if r.closed
                and m >= request.from_minute
                and (not request.to_minute or m <= request.to_minute)
                and (before is None or m < before)
            ),
            reverse=True,
        )
        page = minutes[:limit]
        token = f"before:{page[-1]}" if len(minutes) > limit else ""
        return oracle_pb2.GetPriceHistoryResponse(
            rounds=[self.rounds[m] for m in page], next_page_token=token
        )

    async def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: Any
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        queue: asyncio.Queue[oracle_pb2.Round | None] = asyncio.Queue()
        self.subscribers.append(queue)
        sequence = 1
        try:
            yield oracle_pb2.PriceUpdate(
                sequence=sequence,
                price=oracle_pb2.GetPriceResponse(success=False, message="no price"),
            )
            while True:
                round_ = await queue.get()
                if round_ is None:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "aggregator restarting")
                sequence += 1
                if self.drop_next:
                    self.drop_next -= 1
                    continue  # conflated away: this subscriber never sees that sequence number
                yield oracle_pb2.PriceUpdate(sequence=sequence, round=round_)
        finally:
            self.subscribers.remove(queue)


async def start_fake_aggregator() -> tuple[grpc.aio.Server, int, FakeAggregator]:
    # The generated .pyi marks every OracleService method abstract; the runtime base class answers
    # UNIMPLEMENTED for the ones this fake leaves out.
    servicer = FakeAggregator()  # type: ignore[abstract]
    server = grpc.aio.server()
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, servicer
