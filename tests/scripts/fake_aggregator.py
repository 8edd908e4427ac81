"""A stand-in aggregator that answers HealthCheck and GetAggregatedPrice with set responses.

The scripts only ever see the aggregator over the wire, so a servicer returning chosen messages is
the honest fake for their refusal and reporting paths (mode mismatch, unhealthy, an original
aggregator that knows none of the new fields). It runs in a thread of the test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from common.proto import oracle_pb2, oracle_pb2_grpc


@dataclass
class FakeAggregator(oracle_pb2_grpc.OracleServiceServicer):
    health: oracle_pb2.HealthResponse = field(default_factory=oracle_pb2.HealthResponse)
    price: oracle_pb2.GetPriceResponse = field(default_factory=oracle_pb2.GetPriceResponse)
    probes: list[str] = field(default_factory=list)

    def HealthCheck(
        self, request: oracle_pb2.HealthRequest, context: grpc.ServicerContext
    ) -> oracle_pb2.HealthResponse:
        self.probes.append(request.node_id)
        return self.health

    def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: grpc.ServicerContext
    ) -> oracle_pb2.PriceResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake aggregator takes no prices")

    def StreamPrices(
        self, request_iterator: Iterator[oracle_pb2.PriceRequest], context: grpc.ServicerContext
    ) -> Iterator[oracle_pb2.AggregatedPriceUpdate]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented")

    def UpdateConfig(
        self, request: oracle_pb2.ConfigRequest, context: grpc.ServicerContext
    ) -> oracle_pb2.ConfigResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented")

    def GetAggregatedPrice(
        self, request: oracle_pb2.GetPriceRequest, context: grpc.ServicerContext
    ) -> oracle_pb2.GetPriceResponse:
        return self.price


@contextmanager
def serving(fake: FakeAggregator, port: int = 0) -> Iterator[int]:
    """Serve `fake` on 127.0.0.1 (`port`, or a free one); yields the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(fake, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield bound
    finally:
        server.stop(grace=None)


def healthy_three_exchanges(
    *, simulated: bool = False, minute: int = 1_795_648_860
) -> FakeAggregator:
    """An aggregator in good health with one input per exchange, as the real one answers."""
    inputs = [
        oracle_pb2.PriceDataPoint(
            price=price, timestamp=minute, source=source, node_id=node, quote=quote, node_count=1
        )
        for price, source, node, quote in (
            (100010.5, "binance", "oracle-node-1", "USDT"),
            (100020.25, "coinbase", "oracle-node-2", "USD"),
            (100000.0, "kraken", "oracle-node-3", "USD"),
        )
    ]
    prefix = "SIMULATED " if simulated else ""
    return FakeAggregator(
        health=oracle_pb2.HealthResponse(
            healthy=True,
            timestamp=minute + 70,
            active_nodes=3,
            version="0.1.0",
            uptime_seconds=300,
            message=f"{prefix}3 exchange(s) fresh; 3 node(s) active",
            fresh_exchanges=3,
            simulated=simulated,
        ),
        price=oracle_pb2.GetPriceResponse(
            success=True,
            aggregated_price=100010.25,
            data_points=3,
            last_update=minute + 62,
            recent_prices=inputs,
            aggregate_minute=minute,
            active_nodes=3,
            message=f"{prefix}BTC/USD 100010.25 from 3 exchange(s)",
            simulated=simulated,
            age_seconds=10,
        ),
    )
