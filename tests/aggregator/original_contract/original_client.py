"""A client in the style of the original scripts/test_aggregator.py, built on the ORIGINAL contract.

Run in its own process (its descriptors share full names with ours). Submits three prices for the
minute given on the command line, reads back, prints one JSON line.
"""

import json
import sys

import grpc
import oracle_pb2
import oracle_pb2_grpc

target, minute = sys.argv[1], int(sys.argv[2])
stub = oracle_pb2_grpc.OracleServiceStub(grpc.insecure_channel(target))
health = stub.HealthCheck(oracle_pb2.HealthRequest(node_id="test-client"))
submitted = []
for index, (source, price) in enumerate(
    (("binance", 106170.10), ("coinbase", 106160.42), ("kraken", 106150.74)), start=1
):
    response = stub.SubmitPrice(
        oracle_pb2.PriceRequest(
            price=price, timestamp=minute, source=source, node_id=f"oracle-node-{index}"
        )
    )
    submitted.append([response.success, response.message, response.aggregated_price])
answer = stub.GetAggregatedPrice(oracle_pb2.GetPriceRequest())
health_after = stub.HealthCheck(oracle_pb2.HealthRequest(node_id="test-client"))
print(
    json.dumps(
        {
            "version": health.version,
            "submitted": submitted,
            "success": answer.success,
            "aggregated_price": answer.aggregated_price,
            "data_points": answer.data_points,
            "recent": [[p.source, p.node_id, p.price, p.timestamp] for p in answer.recent_prices],
            "active_nodes": health_after.active_nodes,
        }
    )
)
