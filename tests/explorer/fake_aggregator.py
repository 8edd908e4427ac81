"""An in-process fake of the aggregator's read side, built exactly as proto/oracle.proto documents.

It serves HealthCheck, GetAggregatedPrice, GetRound, GetPriceHistory, SubscribePrices and
ListNodes from state a test sets (rounds, the live price, the node table), with the contract's
validation (NOT_FOUND, INVALID_ARGUMENT, limits, page tokens) so the explorer is tested against
the documented behaviour, not against whatever a mock happens to return. Each RPC can be switched
to UNIMPLEMENTED, as the real aggregator answers before those RPCs are built.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import grpc

from common.errors import InvalidObservationError
from common.observation import ObservationPayload, sign_observation
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.schnorr import SigningKey

E8 = Decimal(10**8)
NODE_FOR = {"binance": "oracle-node-1", "coinbase": "oracle-node-2", "kraken": "oracle-node-3"}
SYMBOL_FOR = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "XBTUSD"}
_Context = grpc.aio.ServicerContext[Any, Any]


def node_key(node_id: str) -> SigningKey:
    """A fixed key per node id, so tests know the public keys."""
    return SigningKey(hashlib.sha256(node_id.encode()).digest())


def e8(value: Decimal) -> int:
    return int((value * E8).to_integral_value(rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class Excluded:
    price: Decimal
    reason: str
    detail: str


def make_input(
    exchange: str,
    price: Decimal,
    minute: int,
    median: Decimal,
    *,
    received_at_ms: int,
    excluded: Excluded | None = None,
    node_id: str | None = None,
    signed: bool = True,
    simulated: bool = True,
) -> oracle_pb2.RoundInput:
    quote = "USDT" if exchange == "binance" else "USD"
    node = node_id or NODE_FOR.get(exchange, f"{exchange}-node")
    symbol = SYMBOL_FOR.get(exchange, "")
    observation = oracle_pb2.NodeObservation(
        node_id=node,
        price=float(price),
        price_e8=e8(price),
        quote=quote,
        symbol=symbol,
        received_at_ms=received_at_ms,
    )
    if signed:
        # A real BIP340 signature by the node's key over docs/signing.md's encoding, as the
        # signing work makes nodes sign (a node id outside the encoding's alphabet stays unsigned).
        key = node_key(node)
        try:
            payload = ObservationPayload(
                node_id=node,
                exchange=exchange,
                base="BTC",
                quote=quote,
                symbol=symbol,
                minute=minute,
                price_e8=e8(price),
                simulated=simulated,
            )
        except InvalidObservationError:
            pass
        else:
            observation.signature = sign_observation(key, payload, aux=bytes(32))
            observation.public_key = key.public_key
    return oracle_pb2.RoundInput(
        source=exchange,
        price=float(price),
        price_e8=e8(price),
        quote=quote,
        usd_price=float(price),
        usd_price_e8=e8(price),
        minute=minute,
        observations=[observation],
        deviation=float((price - median) / median),
        excluded_reason=excluded.reason if excluded else "",
        excluded_detail=excluded.detail if excluded else "",
    )


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def make_round(
    minute: int,
    prices: dict[str, Decimal],
    *,
    excluded: dict[str, Excluded] | None = None,
    simulated: bool = True,
    min_sources: int = 2,
    node_ids: dict[str, str] | None = None,
) -> oracle_pb2.Round:
    """A closed round as the rounds engineer's aggregator documents it: mean of the kept inputs,
    confidence half their range, status by `min_sources`."""
    excluded = excluded or {}
    node_ids = node_ids or {}
    every = [*prices.values(), *(item.price for item in excluded.values())]
    median = _median(every) if every else Decimal(1)
    received = (minute + 62) * 1000
    kept = [
        make_input(
            ex,
            p,
            minute,
            median,
            received_at_ms=received,
            node_id=node_ids.get(ex),
            simulated=simulated,
        )
        for ex, p in sorted(prices.items())
    ]
    dropped = [
        make_input(
            ex,
            item.price,
            minute,
            median,
            received_at_ms=received,
            excluded=item,
            simulated=simulated,
        )
        for ex, item in sorted(excluded.items())
    ]
    values = list(prices.values())
    if len(values) >= min_sources:
        status = oracle_pb2.PRICE_STATUS_OK
    elif values:
        status = oracle_pb2.PRICE_STATUS_DEGRADED
    else:
        status = oracle_pb2.PRICE_STATUS_UNKNOWN
    price = sum(values, Decimal(0)) / len(values) if values else Decimal(0)
    confidence = (max(values) - min(values)) / 2 if values else Decimal(0)
    label = "SIMULATED " if simulated else ""
    return oracle_pb2.Round(
        minute=minute,
        status=status,
        price=float(price),
        price_e8=e8(price),
        confidence=float(confidence),
        confidence_e8=e8(confidence),
        method=oracle_pb2.AGGREGATION_METHOD_MEAN,
        inputs=kept,
        excluded=dropped,
        closed=True,
        closed_at_ms=(minute + 61) * 1000,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED
        if len(kept) + len(dropped) == 3
        else oracle_pb2.ROUND_CLOSE_REASON_DEADLINE,
        simulated=simulated,
        expected_sources=["binance", "coinbase", "kraken"],
        message=f"{label}BTC/USD {price:.2f} from {len(kept)} exchange(s)",
    )


def price_from_round(round_: oracle_pb2.Round, now: float) -> oracle_pb2.GetPriceResponse:
    """The live answer for a closed round, as GetAggregatedPrice documents it."""
    response = oracle_pb2.GetPriceResponse(
        success=round_.status != oracle_pb2.PRICE_STATUS_UNKNOWN,
        aggregated_price=round_.price,
        aggregated_price_e8=round_.price_e8,
        confidence=round_.confidence,
        confidence_e8=round_.confidence_e8,
        data_points=len(round_.inputs),
        aggregate_minute=round_.minute,
        active_nodes=len(round_.inputs) + len(round_.excluded),
        message=round_.message,
        simulated=round_.simulated,
        age_seconds=max(0, int(now - round_.minute - 60)),
        status=round_.status,
        method=round_.method,
        excluded=list(round_.excluded),
        final=True,
        last_update=int(now),
    )
    for item in round_.inputs:
        response.recent_prices.add(
            price=item.price,
            price_e8=item.price_e8,
            timestamp=item.minute,
            source=item.source,
            node_id=",".join(obs.node_id for obs in item.observations),
            quote=item.quote,
            node_count=len(item.observations),
            received_at=item.observations[0].received_at_ms // 1000,
            usd_price=item.usd_price,
            deviation=item.deviation,
        )
    return response


class FakeAggregator(oracle_pb2_grpc.OracleServiceServicer):
    """State set by the test; every read RPC answers from it."""

    def __init__(
        self,
        *,
        simulated: bool = True,
        subscribe: bool = True,
        list_nodes: bool = True,
        history: bool = True,
    ) -> None:
        self.simulated = simulated
        self.implemented = {
            "SubscribePrices": subscribe,
            "ListNodes": list_nodes,
            "GetRound": history,
            "GetPriceHistory": history,
        }
        self.rounds: dict[int, oracle_pb2.Round] = {}
        self.price = oracle_pb2.GetPriceResponse(
            success=False, simulated=simulated, message="no aggregate yet"
        )
        self.nodes: list[oracle_pb2.NodeInfo] = []
        self.subscribers: set[asyncio.Queue[oracle_pb2.PriceUpdate]] = set()
        self.calls: dict[str, int] = {}
        self._sequence = 0

    # -- test controls ----------------------------------------------------------------------

    def add_rounds(self, rounds: Iterable[oracle_pb2.Round]) -> None:
        for round_ in rounds:
            self.rounds[round_.minute] = round_

    def close_round(self, round_: oracle_pb2.Round, now: float) -> None:
        """A round closes: stored, the live price follows it, subscribers hear both."""
        self.rounds[round_.minute] = round_
        self.set_price(price_from_round(round_, now))
        self._broadcast(oracle_pb2.PriceUpdate(round=round_))

    def set_price(self, price: oracle_pb2.GetPriceResponse) -> None:
        self.price = price
        self._broadcast(oracle_pb2.PriceUpdate(price=price))

    def _broadcast(self, update: oracle_pb2.PriceUpdate) -> None:
        for queue in self.subscribers:
            queue.put_nowait(update)

    def _count(self, rpc: str) -> None:
        self.calls[rpc] = self.calls.get(rpc, 0) + 1

    async def _gate(self, rpc: str, context: _Context) -> None:
        self._count(rpc)
        if not self.implemented.get(rpc, True):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not implemented yet")

    # -- RPCs ------------------------------------------------------------------------------

    async def HealthCheck(
        self, request: oracle_pb2.HealthRequest, context: _Context
    ) -> oracle_pb2.HealthResponse:
        self._count("HealthCheck")
        ok = self.price.status == oracle_pb2.PRICE_STATUS_OK
        return oracle_pb2.HealthResponse(
            healthy=ok,
            timestamp=0,
            active_nodes=self.price.active_nodes,
            version="fake-1",
            message=("SIMULATED " if self.simulated else "") + ("ok" if ok else "no price"),
            simulated=self.simulated,
            status=self.price.status or oracle_pb2.PRICE_STATUS_UNKNOWN,
        )

    async def GetAggregatedPrice(
        self, request: oracle_pb2.GetPriceRequest, context: _Context
    ) -> oracle_pb2.GetPriceResponse:
        self._count("GetAggregatedPrice")
        return self.price

    async def GetRound(
        self, request: oracle_pb2.GetRoundRequest, context: _Context
    ) -> oracle_pb2.Round:
        await self._gate("GetRound", context)
        if request.minute == 0 or request.minute % 60:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "minute: a multiple of 60")
        round_ = self.rounds.get(request.minute)
        if round_ is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no round for minute {request.minute}")
        return round_

    async def GetPriceHistory(
        self, request: oracle_pb2.GetPriceHistoryRequest, context: _Context
    ) -> oracle_pb2.GetPriceHistoryResponse:
        await self._gate("GetPriceHistory", context)
        if request.limit > 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: 1 to 1000")
        if request.from_minute and request.to_minute and request.from_minute > request.to_minute:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "from_minute after to_minute")
        limit = request.limit or 100
        before = None
        if request.page_token:
            if not request.page_token.startswith("before:"):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token: not ours")
            before = int(request.page_token.removeprefix("before:"))
        minutes = sorted(
            (
                minute
                for minute, round_ in self.rounds.items()
                if round_.closed
                and (not request.from_minute or minute >= request.from_minute)
                and (not request.to_minute or minute <= request.to_minute)
                and (before is None or minute < before)
            ),
            reverse=True,
        )
        page = minutes[:limit]
        token = f"before:{page[-1]}" if len(minutes) > limit else ""
        return oracle_pb2.GetPriceHistoryResponse(
            rounds=[self.rounds[minute] for minute in page], next_page_token=token
        )

    async def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        await self._gate("SubscribePrices", context)
        queue: asyncio.Queue[oracle_pb2.PriceUpdate] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            queue.put_nowait(oracle_pb2.PriceUpdate(price=self.price))
            while True:
                update = await queue.get()
                self._sequence += 1
                update.sequence = self._sequence
                yield update
        finally:
            self.subscribers.discard(queue)

    async def ListNodes(
        self, request: oracle_pb2.ListNodesRequest, context: _Context
    ) -> oracle_pb2.ListNodesResponse:
        await self._gate("ListNodes", context)
        if request.limit > 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit: 1 to 1000")
        limit = request.limit or 100
        ordered = sorted(self.nodes, key=lambda node: -node.last_seen_ms)
        return oracle_pb2.ListNodesResponse(
            nodes=ordered[:limit],
            total=len(self.nodes),
            node_timeout_seconds=120,
            simulated=self.simulated,
        )


async def start_fake(fake: FakeAggregator, port: int = 0) -> tuple[grpc.aio.Server, int]:
    """The fake on a loopback port (0: any free one), started."""
    server = grpc.aio.server()
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(fake, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


def simulated_history(
    now_minute: int, count: int, *, start_price: Decimal = Decimal("100000.00")
) -> list[oracle_pb2.Round]:
    """`count` closed simulated rounds ending at `now_minute`, a few with an excluded input."""
    rounds = []
    for index in range(count):
        minute = now_minute - (count - 1 - index) * 60
        base = start_price + Decimal(index * 7) + Decimal("0.37")
        prices = {
            "binance": base + Decimal("1.25"),
            "coinbase": base - Decimal("0.75"),
            "kraken": base + Decimal("0.10"),
        }
        excluded: dict[str, Excluded] = {}
        if index % 10 == 3:
            jumped = prices.pop("kraken") * Decimal("1.05")
            excluded["kraken"] = Excluded(
                jumped, "deviation", "5.00 % from the median, more than max_deviation 1 %"
            )
        rounds.append(make_round(minute, prices, excluded=excluded))
    return rounds


def node_table(now: float, simulated: bool = True) -> list[oracle_pb2.NodeInfo]:
    del simulated
    return [
        oracle_pb2.NodeInfo(
            node_id=node,
            exchange=exchange,
            active=True,
            last_seen_ms=int((now - 3 - index) * 1000),
            submissions=120 + index,
            last_minute=int(now // 60 * 60 - 60),
            signature_status=oracle_pb2.SIGNATURE_STATUS_VERIFIED,
            public_key=node_key(node).public_key,
        )
        for index, (exchange, node) in enumerate(sorted(NODE_FOR.items()))
    ]
