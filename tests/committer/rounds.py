"""Closed rounds as the aggregator serves them, with real node signatures (test data builder)."""

from __future__ import annotations

from collections.abc import Sequence

from common.observation import ObservationPayload, sign_observation
from common.proto import oracle_pb2
from common.schnorr import SigningKey

NODE_KEYS = {
    "oracle-node-1": SigningKey(bytes.fromhex("11" * 32)),
    "oracle-node-2": SigningKey(bytes.fromhex("22" * 32)),
    "oracle-node-3": SigningKey(bytes.fromhex("33" * 32)),
}
VENUES = (
    ("binance", "oracle-node-1", "BTCUSDT", "USDT"),
    ("coinbase", "oracle-node-2", "BTC-USD", "USD"),
    ("kraken", "oracle-node-3", "XBTUSD", "USD"),
)
ALLOWLIST = {node: key.public_key for node, key in NODE_KEYS.items()}
BASE_MINUTE = 1_796_000_400  # 2026-11-30T...: a multiple of 3600


def signed_observation(
    exchange: str,
    node_id: str,
    symbol: str,
    quote: str,
    minute: int,
    price_e8: int,
    *,
    simulated: bool,
) -> oracle_pb2.NodeObservation:
    key = NODE_KEYS[node_id]
    payload = ObservationPayload(
        node_id, exchange, "BTC", quote, symbol, minute, price_e8, simulated
    )
    return oracle_pb2.NodeObservation(
        node_id=node_id,
        price=price_e8 / 1e8,
        price_e8=price_e8,
        quote=quote,
        symbol=symbol,
        received_at_ms=(minute + 61) * 1000,
        signature=sign_observation(key, payload, aux=bytes(32)),
        public_key=key.public_key,
    )


def make_round(
    minute: int,
    prices_e8: Sequence[int] = (10_000_012_345_678, 10_000_112_345_678, 10_000_212_345_678),
    *,
    simulated: bool = False,
    status: oracle_pb2.PriceStatus = oracle_pb2.PRICE_STATUS_OK,
) -> oracle_pb2.Round:
    """A closed round with one signed input per venue (the mean of `prices_e8`)."""
    inputs = []
    for (exchange, node_id, symbol, quote), price_e8 in zip(VENUES, prices_e8, strict=False):
        inputs.append(
            oracle_pb2.RoundInput(
                source=exchange,
                price=price_e8 / 1e8,
                price_e8=price_e8,
                quote=quote,
                usd_price=price_e8 / 1e8,
                usd_price_e8=price_e8,
                minute=minute,
                observations=[
                    signed_observation(
                        exchange, node_id, symbol, quote, minute, price_e8, simulated=simulated
                    )
                ],
            )
        )
    if status == oracle_pb2.PRICE_STATUS_UNKNOWN:
        inputs = []
    mean = sum(i.usd_price_e8 for i in inputs) // len(inputs) if inputs else 0
    spread = (
        (max(i.usd_price_e8 for i in inputs) - min(i.usd_price_e8 for i in inputs)) // 2
        if inputs
        else 0
    )
    return oracle_pb2.Round(
        minute=minute,
        status=status,
        price=mean / 1e8,
        price_e8=mean,
        confidence=spread / 1e8,
        confidence_e8=spread,
        method=oracle_pb2.AGGREGATION_METHOD_MEAN,
        inputs=inputs,
        closed=True,
        closed_at_ms=(minute + 62) * 1000,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED,
        simulated=simulated,
        usdt_at_par=True,
        expected_sources=["binance", "coinbase", "kraken"],
        message=("SIMULATED " if simulated else "") + "BTC/USD",
    )
