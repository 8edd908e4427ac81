"""The aggregator: receives per-exchange observations over gRPC and serves their aggregate."""

__version__ = "0.1.0"
