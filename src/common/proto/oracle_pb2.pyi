from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PriceRequest(_message.Message):
    __slots__ = ("price", "timestamp", "source", "node_id", "signature", "quote", "simulated", "symbol")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    price: float
    timestamp: int
    source: str
    node_id: str
    signature: str
    quote: str
    simulated: bool
    symbol: str
    def __init__(self, price: _Optional[float] = ..., timestamp: _Optional[int] = ..., source: _Optional[str] = ..., node_id: _Optional[str] = ..., signature: _Optional[str] = ..., quote: _Optional[str] = ..., simulated: _Optional[bool] = ..., symbol: _Optional[str] = ...) -> None: ...

class PriceResponse(_message.Message):
    __slots__ = ("success", "message", "aggregated_price", "timestamp", "aggregate_minute", "data_points", "duplicate")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATED_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_MINUTE_FIELD_NUMBER: _ClassVar[int]
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    aggregated_price: float
    timestamp: int
    aggregate_minute: int
    data_points: int
    duplicate: bool
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., aggregated_price: _Optional[float] = ..., timestamp: _Optional[int] = ..., aggregate_minute: _Optional[int] = ..., data_points: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class AggregatedPriceUpdate(_message.Message):
    __slots__ = ("aggregated_price", "data_points", "timestamp", "active_nodes")
    AGGREGATED_PRICE_FIELD_NUMBER: _ClassVar[int]
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_NODES_FIELD_NUMBER: _ClassVar[int]
    aggregated_price: float
    data_points: int
    timestamp: int
    active_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, aggregated_price: _Optional[float] = ..., data_points: _Optional[int] = ..., timestamp: _Optional[int] = ..., active_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("healthy", "timestamp", "active_nodes", "version", "uptime_seconds", "message", "fresh_exchanges", "simulated", "draining")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_NODES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRESH_EXCHANGES_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    timestamp: int
    active_nodes: int
    version: str
    uptime_seconds: int
    message: str
    fresh_exchanges: int
    simulated: bool
    draining: bool
    def __init__(self, healthy: _Optional[bool] = ..., timestamp: _Optional[int] = ..., active_nodes: _Optional[int] = ..., version: _Optional[str] = ..., uptime_seconds: _Optional[int] = ..., message: _Optional[str] = ..., fresh_exchanges: _Optional[int] = ..., simulated: _Optional[bool] = ..., draining: _Optional[bool] = ...) -> None: ...

class ConfigRequest(_message.Message):
    __slots__ = ("node_id", "fetch_interval", "timeout", "aggregator_url")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FETCH_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_URL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    fetch_interval: int
    timeout: int
    aggregator_url: str
    def __init__(self, node_id: _Optional[str] = ..., fetch_interval: _Optional[int] = ..., timeout: _Optional[int] = ..., aggregator_url: _Optional[str] = ...) -> None: ...

class ConfigResponse(_message.Message):
    __slots__ = ("success", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GetPriceRequest(_message.Message):
    __slots__ = ("source_filter",)
    SOURCE_FILTER_FIELD_NUMBER: _ClassVar[int]
    source_filter: str
    def __init__(self, source_filter: _Optional[str] = ...) -> None: ...

class GetPriceResponse(_message.Message):
    __slots__ = ("success", "aggregated_price", "data_points", "last_update", "recent_prices", "aggregate_minute", "active_nodes", "message", "simulated", "age_seconds")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    AGGREGATED_PRICE_FIELD_NUMBER: _ClassVar[int]
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_FIELD_NUMBER: _ClassVar[int]
    RECENT_PRICES_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_MINUTE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_NODES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    aggregated_price: float
    data_points: int
    last_update: int
    recent_prices: _containers.RepeatedCompositeFieldContainer[PriceDataPoint]
    aggregate_minute: int
    active_nodes: int
    message: str
    simulated: bool
    age_seconds: int
    def __init__(self, success: _Optional[bool] = ..., aggregated_price: _Optional[float] = ..., data_points: _Optional[int] = ..., last_update: _Optional[int] = ..., recent_prices: _Optional[_Iterable[_Union[PriceDataPoint, _Mapping]]] = ..., aggregate_minute: _Optional[int] = ..., active_nodes: _Optional[int] = ..., message: _Optional[str] = ..., simulated: _Optional[bool] = ..., age_seconds: _Optional[int] = ...) -> None: ...

class PriceDataPoint(_message.Message):
    __slots__ = ("price", "timestamp", "source", "node_id", "quote", "node_count", "received_at")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    price: float
    timestamp: int
    source: str
    node_id: str
    quote: str
    node_count: int
    received_at: int
    def __init__(self, price: _Optional[float] = ..., timestamp: _Optional[int] = ..., source: _Optional[str] = ..., node_id: _Optional[str] = ..., quote: _Optional[str] = ..., node_count: _Optional[int] = ..., received_at: _Optional[int] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("code", "message", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...
