"""Record builders and a fake clock shared by the store tests and their helper processes."""

from __future__ import annotations

from decimal import Decimal

from aggregator.store import NodeRecordRow, ObservationRecord, RoundRecord
from common.proto import oracle_pb2

# A fixed minute well inside every window the tests use (the aggregator tests' T0).
T0 = 1_795_000_000 // 60 * 60
DAY = 86_400


class FakeClock:
    """The injected clock: tests move time by assignment, never by sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def observation(
    exchange: str = "binance",
    node_id: str | None = None,
    minute: int = T0,
    price: str = "100000.12345678",
    *,
    base: str = "BTC",
    quote: str = "USD",
    symbol: str | None = None,
    received_at: float | None = None,
    simulated: bool = False,
    signature: bytes = b"",
    public_key: bytes = b"",
) -> ObservationRecord:
    return ObservationRecord(
        exchange=exchange,
        node_id=node_id or f"{exchange}-node",
        minute=minute,
        base=base,
        quote=quote,
        symbol=symbol or f"{base}{quote}",
        price=Decimal(price),
        received_at=received_at if received_at is not None else minute + 61.5,
        simulated=simulated,
        signature=signature,
        public_key=public_key,
    )


def signed_observation(**kwargs: object) -> ObservationRecord:
    return observation(signature=bytes(range(64)), public_key=bytes(range(100, 132)), **kwargs)  # type: ignore[arg-type]


def round_proto(
    minute: int,
    *,
    status: int = oracle_pb2.PRICE_STATUS_OK,
    simulated: bool = False,
    message: str = "",
    price_e8: int = 10_000_012_345_678,
) -> bytes:
    inputs = [
        oracle_pb2.RoundInput(
            source=exchange,
            price=price_e8 / 1e8,
            price_e8=price_e8,
            quote="USD",
            usd_price=price_e8 / 1e8,
            usd_price_e8=price_e8,
            minute=minute,
            observations=[
                oracle_pb2.NodeObservation(
                    node_id=f"{exchange}-node",
                    price=price_e8 / 1e8,
                    price_e8=price_e8,
                    quote="USD",
                    symbol="BTCUSD",
                    received_at_ms=(minute + 61) * 1000,
                    signature=bytes(64),
                    public_key=bytes(32),
                )
            ],
        )
        for exchange in ("binance", "coinbase", "kraken")
    ]
    served = oracle_pb2.Round(
        minute=minute,
        status=status,  # type: ignore[arg-type]
        price=price_e8 / 1e8,
        price_e8=price_e8,
        method=oracle_pb2.AGGREGATION_METHOD_MEAN,
        inputs=inputs,
        closed=True,
        closed_at_ms=(minute + 62) * 1000,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED,
        simulated=simulated,
        expected_sources=["binance", "coinbase", "kraken"],
        message=message or ("SIMULATED" if simulated else ""),
    )
    return served.SerializeToString()


def round_record(
    minute: int, *, status: int = oracle_pb2.PRICE_STATUS_OK, simulated: bool = False
) -> RoundRecord:
    return RoundRecord(
        minute=minute,
        status=status,
        closed_at=minute + 62.0,
        simulated=simulated,
        round_proto=round_proto(minute, status=status, simulated=simulated),
    )


def node_row(
    node_id: str = "binance-node", last_seen: float = T0 + 61.0, n: int = 1
) -> NodeRecordRow:
    return NodeRecordRow(node_id, node_id.split("-", 1)[0], last_seen, n)
