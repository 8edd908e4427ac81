"""The oracle explorer: a read-only web page and JSON API over the aggregator's gRPC contract."""

__version__ = "0.1.0"
