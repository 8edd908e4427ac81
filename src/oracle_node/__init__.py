"""The oracle node: fetches one exchange's closed 1-minute candle at each minute and submits it."""
