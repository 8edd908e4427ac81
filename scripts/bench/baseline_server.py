"""The bare baseline: a `grpc.aio` OracleService whose RPCs return one prebuilt constant answer.

It measures what gRPC and Python cost on this machine with no oracle logic at all, so the
aggregator's figures can be read as a ratio ("0.85x the bare server") that means the same on a
laptop and on a 2-core CI runner. The answers have the same shape and size as real ones (three
recent prices, a message) so serialisation costs match. Run as
`python -m bench.baseline_server --port 0`; it prints `PORT <n>` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from bench.procs import serve_until_signalled
from common.proto import oracle_pb2, oracle_pb2_grpc

_MINUTE = 29_000_000 * 60  # an arbitrary fixed candle minute: the answer never changes

_PRICE_RESPONSE = oracle_pb2.PriceResponse(
    success=True,
    message="Price data received",
    aggregated_price=100_000.5,
    timestamp=_MINUTE + 75,
    aggregate_minute=_MINUTE,
    data_points=3,
)

_GET_RESPONSE = oracle_pb2.GetPriceResponse(
    success=True,
    aggregated_price=100_000.5,
    data_points=3,
    last_update=_MINUTE + 62,
    recent_prices=[
        oracle_pb2.PriceDataPoint(
            price=100_000.0 + i,
            timestamp=_MINUTE,
            source=source,
            node_id=f"oracle-node-{i + 1}",
            quote=quote,
            node_count=1,
            received_at=_MINUTE + 61,
        )
        for i, (source, quote) in enumerate(
            (("binance", "USDT"), ("coinbase", "USD"), ("kraken", "USD"))
        )
    ],
    aggregate_minute=_MINUTE,
    active_nodes=3,
    message="BTC/USD 100000.50 from 3 exchanges for 2025-02-19T05:20Z",
    simulated=False,
    age_seconds=15,
)


def _round(minute: int) -> oracle_pb2.Round:
    """A closed round of the size the aggregator stores: three inputs, each with a signed report."""
    price_e8 = 10_000_050_000_000
    return oracle_pb2.Round(
        minute=minute,
        status=oracle_pb2.PRICE_STATUS_OK,
        price=price_e8 / 1e8,
        price_e8=price_e8,
        confidence=12.5,
        confidence_e8=1_250_000_000,
        method=oracle_pb2.AGGREGATION_METHOD_MEAN,
        inputs=[
            oracle_pb2.RoundInput(
                source=source,
                price=price_e8 / 1e8,
                price_e8=price_e8,
                quote="USD",
                usd_price=price_e8 / 1e8,
                usd_price_e8=price_e8,
                minute=minute,
                deviation=0.0001,
                observations=[
                    oracle_pb2.NodeObservation(
                        node_id=f"{source}-node",
                        price=price_e8 / 1e8,
                        price_e8=price_e8,
                        quote="USD",
                        symbol="BTCUSD",
                        received_at_ms=(minute + 60) * 1000 + 412,
                        signature=bytes(range(64)),
                        public_key=bytes(range(32)),
                    )
                ],
            )
            for source in ("binance", "coinbase", "kraken")
        ],
        closed=True,
        closed_at_ms=(minute + 60) * 1000 + 450,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED,
        expected_sources=["binance", "coinbase", "kraken"],
        message="OK: 3 of 3 exchanges, mean",
    )


# GetPriceHistory(limit=100) as the aggregator answers it: 100 rounds and a page token.
_HISTORY_RESPONSE = oracle_pb2.GetPriceHistoryResponse(
    rounds=[_round(_MINUTE - 60 * i) for i in range(100)], next_page_token="A" * 50
)
_NODES_RESPONSE = oracle_pb2.ListNodesResponse(
    nodes=[
        oracle_pb2.NodeInfo(node_id=f"oracle-node-{i}", exchange="kraken", active=True)
        for i in range(3)
    ],
    total=3,
    node_timeout_seconds=120,
)

Context = grpc.aio.ServicerContext[Any, Any]


class BaselineServicer(oracle_pb2_grpc.OracleServiceServicer):
    """Constant answers: the cheapest servicer gRPC allows, the yardstick for the real one."""

    def __init__(self) -> None:
        self._started = time.time()

    async def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: Context
    ) -> oracle_pb2.PriceResponse:
        return _PRICE_RESPONSE

    async def GetAggregatedPrice(
        self, request: oracle_pb2.GetPriceRequest, context: Context
    ) -> oracle_pb2.GetPriceResponse:
        return _GET_RESPONSE

    async def HealthCheck(
        self, request: oracle_pb2.HealthRequest, context: Context
    ) -> oracle_pb2.HealthResponse:
        return oracle_pb2.HealthResponse(
            healthy=True,
            timestamp=int(time.time()),
            version="baseline",
            uptime_seconds=int(time.time() - self._started),
            message="bare baseline",
        )

    async def GetPriceHistory(
        self, request: oracle_pb2.GetPriceHistoryRequest, context: Context
    ) -> oracle_pb2.GetPriceHistoryResponse:
        return _HISTORY_RESPONSE

    async def ListNodes(
        self, request: oracle_pb2.ListNodesRequest, context: Context
    ) -> oracle_pb2.ListNodesResponse:
        return _NODES_RESPONSE

    async def GetRound(
        self, request: oracle_pb2.GetRoundRequest, context: Context
    ) -> oracle_pb2.Round:
        return _HISTORY_RESPONSE.rounds[0]

    def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: Context
    ) -> Iterator[oracle_pb2.PriceUpdate] | AsyncIterator[oracle_pb2.PriceUpdate]:
        raise NotImplementedError("not part of the baseline")

    async def UpdateConfig(
        self, request: oracle_pb2.ConfigRequest, context: Context
    ) -> oracle_pb2.ConfigResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of the baseline")

    def StreamPrices(
        self, request_iterator: object, context: Context
    ) -> (
        Iterator[oracle_pb2.AggregatedPriceUpdate] | AsyncIterator[oracle_pb2.AggregatedPriceUpdate]
    ):
        raise NotImplementedError("not part of the baseline")


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server()
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(BaselineServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await serve_until_signalled(server, bound, grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
