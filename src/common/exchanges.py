"""The exchanges the oracle knows and the quote currencies their BTC pairs use.

Binance's default pair BTCUSDT is quoted in USDT, Coinbase's BTC-USD and Kraken's XBTUSD in USD.
The aggregator converts USDT to USD with the USDT/USD rate nodes collect, and says so when it
has none and takes USDT at par (as the original always did); every input carries its quote so
a consumer can see it (and an operator who wants USD only can point Binance at Binance.US BTCUSD).
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

# The type of a config value naming an exchange; EXCHANGES is the same names as a tuple.
ExchangeName = Literal["binance", "coinbase", "kraken"]
EXCHANGES: Final[tuple[ExchangeName, ...]] = get_args(ExchangeName)

# The quote of each exchange's default pair: what an original node (which sent no quote) meant.
DEFAULT_QUOTE: Final[dict[str, str]] = {"binance": "USDT", "coinbase": "USD", "kraken": "USD"}

QUOTES: Final[frozenset[str]] = frozenset({"USD", "USDT"})

# Node ids and exchange names: 1 to 64 characters. Node ids end up in logs and answers, so they are
# printable ASCII without spaces (log lines cannot be forged); the node checks its own id with the
# same rule at startup, so a node never runs with an id the aggregator refuses.
MAX_ID_LENGTH: Final = 64
NODE_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
NODE_ID_RULE: Final = "letters, digits and . _ : @ - only, starting with a letter or digit"
