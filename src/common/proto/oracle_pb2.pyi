from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PriceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRICE_STATUS_UNSPECIFIED: _ClassVar[PriceStatus]
    PRICE_STATUS_OK: _ClassVar[PriceStatus]
    PRICE_STATUS_DEGRADED: _ClassVar[PriceStatus]
    PRICE_STATUS_UNKNOWN: _ClassVar[PriceStatus]

class AggregationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_METHOD_UNSPECIFIED: _ClassVar[AggregationMethod]
    AGGREGATION_METHOD_MEAN: _ClassVar[AggregationMethod]
    AGGREGATION_METHOD_MEDIAN: _ClassVar[AggregationMethod]

class RoundCloseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_CLOSE_REASON_UNSPECIFIED: _ClassVar[RoundCloseReason]
    ROUND_CLOSE_REASON_ALL_REPORTED: _ClassVar[RoundCloseReason]
    ROUND_CLOSE_REASON_DEADLINE: _ClassVar[RoundCloseReason]

class SignatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_STATUS_UNSPECIFIED: _ClassVar[SignatureStatus]
    SIGNATURE_STATUS_UNSIGNED: _ClassVar[SignatureStatus]
    SIGNATURE_STATUS_VERIFIED: _ClassVar[SignatureStatus]
PRICE_STATUS_UNSPECIFIED: PriceStatus
PRICE_STATUS_OK: PriceStatus
PRICE_STATUS_DEGRADED: PriceStatus
PRICE_STATUS_UNKNOWN: PriceStatus
AGGREGATION_METHOD_UNSPECIFIED: AggregationMethod
AGGREGATION_METHOD_MEAN: AggregationMethod
AGGREGATION_METHOD_MEDIAN: AggregationMethod
ROUND_CLOSE_REASON_UNSPECIFIED: RoundCloseReason
ROUND_CLOSE_REASON_ALL_REPORTED: RoundCloseReason
ROUND_CLOSE_REASON_DEADLINE: RoundCloseReason
SIGNATURE_STATUS_UNSPECIFIED: SignatureStatus
SIGNATURE_STATUS_UNSIGNED: SignatureStatus
SIGNATURE_STATUS_VERIFIED: SignatureStatus

class PriceRequest(_message.Message):
    __slots__ = ("price", "timestamp", "source", "node_id", "signature", "quote", "simulated", "symbol", "price_e8", "observation_signature", "public_key", "base")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    price: float
    timestamp: int
    source: str
    node_id: str
    signature: str
    quote: str
    simulated: bool
    symbol: str
    price_e8: int
    observation_signature: bytes
    public_key: bytes
    base: str
    def __init__(self, price: _Optional[float] = ..., timestamp: _Optional[int] = ..., source: _Optional[str] = ..., node_id: _Optional[str] = ..., signature: _Optional[str] = ..., quote: _Optional[str] = ..., simulated: _Optional[bool] = ..., symbol: _Optional[str] = ..., price_e8: _Optional[int] = ..., observation_signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ..., base: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("aggregated_price", "data_points", "timestamp", "active_nodes", "sequence", "code", "message", "duplicate", "aggregate_minute", "status", "confidence", "simulated")
    AGGREGATED_PRICE_FIELD_NUMBER: _ClassVar[int]
    DATA_POINTS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_NODES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_MINUTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    aggregated_price: float
    data_points: int
    timestamp: int
    active_nodes: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    code: int
    message: str
    duplicate: bool
    aggregate_minute: int
    status: PriceStatus
    confidence: float
    simulated: bool
    def __init__(self, aggregated_price: _Optional[float] = ..., data_points: _Optional[int] = ..., timestamp: _Optional[int] = ..., active_nodes: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., duplicate: _Optional[bool] = ..., aggregate_minute: _Optional[int] = ..., status: _Optional[_Union[PriceStatus, str]] = ..., confidence: _Optional[float] = ..., simulated: _Optional[bool] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("healthy", "timestamp", "active_nodes", "version", "uptime_seconds", "message", "fresh_exchanges", "simulated", "draining", "status")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_NODES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRESH_EXCHANGES_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    timestamp: int
    active_nodes: int
    version: str
    uptime_seconds: int
    message: str
    fresh_exchanges: int
    simulated: bool
    draining: bool
    status: PriceStatus
    def __init__(self, healthy: _Optional[bool] = ..., timestamp: _Optional[int] = ..., active_nodes: _Optional[int] = ..., version: _Optional[str] = ..., uptime_seconds: _Optional[int] = ..., message: _Optional[str] = ..., fresh_exchanges: _Optional[int] = ..., simulated: _Optional[bool] = ..., draining: _Optional[bool] = ..., status: _Optional[_Union[PriceStatus, str]] = ...) -> None: ...

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
    __slots__ = ("success", "aggregated_price", "data_points", "last_update", "recent_prices", "aggregate_minute", "active_nodes", "message", "simulated", "age_seconds", "status", "confidence", "method", "excluded", "usdt_converted", "usdt_usd_rate", "usdt_at_par", "final", "aggregated_price_e8", "confidence_e8")
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
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    USDT_CONVERTED_FIELD_NUMBER: _ClassVar[int]
    USDT_USD_RATE_FIELD_NUMBER: _ClassVar[int]
    USDT_AT_PAR_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    AGGREGATED_PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_E8_FIELD_NUMBER: _ClassVar[int]
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
    status: PriceStatus
    confidence: float
    method: AggregationMethod
    excluded: _containers.RepeatedCompositeFieldContainer[RoundInput]
    usdt_converted: bool
    usdt_usd_rate: float
    usdt_at_par: bool
    final: bool
    aggregated_price_e8: int
    confidence_e8: int
    def __init__(self, success: _Optional[bool] = ..., aggregated_price: _Optional[float] = ..., data_points: _Optional[int] = ..., last_update: _Optional[int] = ..., recent_prices: _Optional[_Iterable[_Union[PriceDataPoint, _Mapping]]] = ..., aggregate_minute: _Optional[int] = ..., active_nodes: _Optional[int] = ..., message: _Optional[str] = ..., simulated: _Optional[bool] = ..., age_seconds: _Optional[int] = ..., status: _Optional[_Union[PriceStatus, str]] = ..., confidence: _Optional[float] = ..., method: _Optional[_Union[AggregationMethod, str]] = ..., excluded: _Optional[_Iterable[_Union[RoundInput, _Mapping]]] = ..., usdt_converted: _Optional[bool] = ..., usdt_usd_rate: _Optional[float] = ..., usdt_at_par: _Optional[bool] = ..., final: _Optional[bool] = ..., aggregated_price_e8: _Optional[int] = ..., confidence_e8: _Optional[int] = ...) -> None: ...

class PriceDataPoint(_message.Message):
    __slots__ = ("price", "timestamp", "source", "node_id", "quote", "node_count", "received_at", "price_e8", "usd_price", "deviation")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    USD_PRICE_FIELD_NUMBER: _ClassVar[int]
    DEVIATION_FIELD_NUMBER: _ClassVar[int]
    price: float
    timestamp: int
    source: str
    node_id: str
    quote: str
    node_count: int
    received_at: int
    price_e8: int
    usd_price: float
    deviation: float
    def __init__(self, price: _Optional[float] = ..., timestamp: _Optional[int] = ..., source: _Optional[str] = ..., node_id: _Optional[str] = ..., quote: _Optional[str] = ..., node_count: _Optional[int] = ..., received_at: _Optional[int] = ..., price_e8: _Optional[int] = ..., usd_price: _Optional[float] = ..., deviation: _Optional[float] = ...) -> None: ...

class RoundInput(_message.Message):
    __slots__ = ("source", "price", "price_e8", "quote", "usd_price", "usd_price_e8", "minute", "observations", "deviation", "excluded_reason", "excluded_detail")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    USD_PRICE_FIELD_NUMBER: _ClassVar[int]
    USD_PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DEVIATION_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_REASON_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_DETAIL_FIELD_NUMBER: _ClassVar[int]
    source: str
    price: float
    price_e8: int
    quote: str
    usd_price: float
    usd_price_e8: int
    minute: int
    observations: _containers.RepeatedCompositeFieldContainer[NodeObservation]
    deviation: float
    excluded_reason: str
    excluded_detail: str
    def __init__(self, source: _Optional[str] = ..., price: _Optional[float] = ..., price_e8: _Optional[int] = ..., quote: _Optional[str] = ..., usd_price: _Optional[float] = ..., usd_price_e8: _Optional[int] = ..., minute: _Optional[int] = ..., observations: _Optional[_Iterable[_Union[NodeObservation, _Mapping]]] = ..., deviation: _Optional[float] = ..., excluded_reason: _Optional[str] = ..., excluded_detail: _Optional[str] = ...) -> None: ...

class NodeObservation(_message.Message):
    __slots__ = ("node_id", "price", "price_e8", "quote", "symbol", "received_at_ms", "signature", "public_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    price: float
    price_e8: int
    quote: str
    symbol: str
    received_at_ms: int
    signature: bytes
    public_key: bytes
    def __init__(self, node_id: _Optional[str] = ..., price: _Optional[float] = ..., price_e8: _Optional[int] = ..., quote: _Optional[str] = ..., symbol: _Optional[str] = ..., received_at_ms: _Optional[int] = ..., signature: _Optional[bytes] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("minute", "status", "price", "price_e8", "confidence", "confidence_e8", "method", "inputs", "excluded", "closed", "closed_at_ms", "close_reason", "simulated", "usdt_converted", "usdt_usd_rate", "usdt_at_par", "late_reports", "expected_sources", "message")
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_E8_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_REASON_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    USDT_CONVERTED_FIELD_NUMBER: _ClassVar[int]
    USDT_USD_RATE_FIELD_NUMBER: _ClassVar[int]
    USDT_AT_PAR_FIELD_NUMBER: _ClassVar[int]
    LATE_REPORTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SOURCES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    minute: int
    status: PriceStatus
    price: float
    price_e8: int
    confidence: float
    confidence_e8: int
    method: AggregationMethod
    inputs: _containers.RepeatedCompositeFieldContainer[RoundInput]
    excluded: _containers.RepeatedCompositeFieldContainer[RoundInput]
    closed: bool
    closed_at_ms: int
    close_reason: RoundCloseReason
    simulated: bool
    usdt_converted: bool
    usdt_usd_rate: float
    usdt_at_par: bool
    late_reports: int
    expected_sources: _containers.RepeatedScalarFieldContainer[str]
    message: str
    def __init__(self, minute: _Optional[int] = ..., status: _Optional[_Union[PriceStatus, str]] = ..., price: _Optional[float] = ..., price_e8: _Optional[int] = ..., confidence: _Optional[float] = ..., confidence_e8: _Optional[int] = ..., method: _Optional[_Union[AggregationMethod, str]] = ..., inputs: _Optional[_Iterable[_Union[RoundInput, _Mapping]]] = ..., excluded: _Optional[_Iterable[_Union[RoundInput, _Mapping]]] = ..., closed: _Optional[bool] = ..., closed_at_ms: _Optional[int] = ..., close_reason: _Optional[_Union[RoundCloseReason, str]] = ..., simulated: _Optional[bool] = ..., usdt_converted: _Optional[bool] = ..., usdt_usd_rate: _Optional[float] = ..., usdt_at_par: _Optional[bool] = ..., late_reports: _Optional[int] = ..., expected_sources: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ...) -> None: ...

class GetRoundRequest(_message.Message):
    __slots__ = ("minute",)
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    minute: int
    def __init__(self, minute: _Optional[int] = ...) -> None: ...

class GetPriceHistoryRequest(_message.Message):
    __slots__ = ("from_minute", "to_minute", "limit", "page_token")
    FROM_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TO_MINUTE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    from_minute: int
    to_minute: int
    limit: int
    page_token: str
    def __init__(self, from_minute: _Optional[int] = ..., to_minute: _Optional[int] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetPriceHistoryResponse(_message.Message):
    __slots__ = ("rounds", "next_page_token")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rounds: _containers.RepeatedCompositeFieldContainer[Round]
    next_page_token: str
    def __init__(self, rounds: _Optional[_Iterable[_Union[Round, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("source_filter",)
    SOURCE_FILTER_FIELD_NUMBER: _ClassVar[int]
    source_filter: str
    def __init__(self, source_filter: _Optional[str] = ...) -> None: ...

class PriceUpdate(_message.Message):
    __slots__ = ("sequence", "timestamp_ms", "price", "round")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    timestamp_ms: int
    price: GetPriceResponse
    round: Round
    def __init__(self, sequence: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., price: _Optional[_Union[GetPriceResponse, _Mapping]] = ..., round: _Optional[_Union[Round, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "exchange", "active", "last_seen_ms", "submissions", "last_minute", "signature_status", "public_key")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    SUBMISSIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_STATUS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    exchange: str
    active: bool
    last_seen_ms: int
    submissions: int
    last_minute: int
    signature_status: SignatureStatus
    public_key: bytes
    def __init__(self, node_id: _Optional[str] = ..., exchange: _Optional[str] = ..., active: _Optional[bool] = ..., last_seen_ms: _Optional[int] = ..., submissions: _Optional[int] = ..., last_minute: _Optional[int] = ..., signature_status: _Optional[_Union[SignatureStatus, str]] = ..., public_key: _Optional[bytes] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "total", "node_timeout_seconds", "simulated")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    total: int
    node_timeout_seconds: int
    simulated: bool
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., total: _Optional[int] = ..., node_timeout_seconds: _Optional[int] = ..., simulated: _Optional[bool] = ...) -> None: ...

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
