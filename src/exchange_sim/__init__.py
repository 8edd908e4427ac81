"""Local exchange simulator: Binance, Coinbase and Kraken candle APIs in their real formats."""
