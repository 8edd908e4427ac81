"""Test keys, allowlist files and signed PriceRequests, shared by the aggregator and node tests.

Keys are derived from a name (SHA256 of it), so a failing test names a reproducible key; they are
test keys, public by design.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from common.observation import ObservationPayload, e8_to_double, sign_observation
from common.proto import oracle_pb2
from common.schnorr import SigningKey
from oracle_node.keys import allowlist_entry


def key_for(name: str) -> SigningKey:
    """A deterministic key for `name` (never a real one)."""
    return SigningKey(hashlib.sha256(f"btcfi-oracle test key {name}".encode()).digest())


def write_allowlist(path: Path, nodes: Iterable[tuple[str, SigningKey, tuple[str, ...]]]) -> Path:
    """An allowlist file naming each (node id, key, exchanges); mode 0644."""
    path.write_text(
        "\n".join(
            allowlist_entry(key.public_key, node_id=node_id, exchanges=exchanges)
            for node_id, key, exchanges in nodes
        )
    )
    path.chmod(0o644)
    return path


DEFAULT_QUOTES = {"binance": "USDT", "coinbase": "USD", "kraken": "USD"}
DEFAULT_SYMBOLS = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "XBTUSD"}


def signed_request(
    key: SigningKey | None,
    *,
    node_id: str,
    exchange: str,
    minute: int,
    price_e8: int,
    base: str = "BTC",
    quote: str | None = None,
    symbol: str | None = None,
    simulated: bool = False,
    signer: SigningKey | None = None,
) -> oracle_pb2.PriceRequest:
    """A PriceRequest as a node sends it, signed by `signer` (default `key`) with `key`'s public
    key on the wire; `key=None` leaves it unsigned (price_e8 still set)."""
    quote = quote or ("USD" if base == "USDT" else DEFAULT_QUOTES[exchange])
    symbol = DEFAULT_SYMBOLS[exchange] if symbol is None else symbol
    request = oracle_pb2.PriceRequest(
        price=e8_to_double(price_e8),
        timestamp=minute,
        source=exchange,
        node_id=node_id,
        quote=quote,
        simulated=simulated,
        symbol=symbol,
        price_e8=price_e8,
        base=base,
    )
    if key is None:
        return request
    payload = ObservationPayload(
        node_id, exchange, base, quote, symbol, minute, price_e8, simulated
    )
    request.observation_signature = sign_observation(signer or key, payload)
    request.public_key = key.public_key
    return request
