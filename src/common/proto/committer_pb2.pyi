from common.proto import oracle_pb2 as _oracle_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SigningMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNING_MODE_UNSPECIFIED: _ClassVar[SigningMode]
    SIGNING_MODE_PLAIN: _ClassVar[SigningMode]
    SIGNING_MODE_TAGGED: _ClassVar[SigningMode]

class EventState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_STATE_UNSPECIFIED: _ClassVar[EventState]
    EVENT_STATE_ANNOUNCED: _ClassVar[EventState]
    EVENT_STATE_ATTESTED: _ClassVar[EventState]
    EVENT_STATE_UNATTESTABLE: _ClassVar[EventState]

class AnchorMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANCHOR_MODE_UNSPECIFIED: _ClassVar[AnchorMode]
    ANCHOR_MODE_OP_RETURN: _ClassVar[AnchorMode]
    ANCHOR_MODE_TAPROOT: _ClassVar[AnchorMode]

class AnchorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANCHOR_STATE_UNSPECIFIED: _ClassVar[AnchorState]
    ANCHOR_STATE_COMMITTED: _ClassVar[AnchorState]
    ANCHOR_STATE_PSBT_WRITTEN: _ClassVar[AnchorState]
    ANCHOR_STATE_SIGNED: _ClassVar[AnchorState]
    ANCHOR_STATE_BROADCAST: _ClassVar[AnchorState]
SIGNING_MODE_UNSPECIFIED: SigningMode
SIGNING_MODE_PLAIN: SigningMode
SIGNING_MODE_TAGGED: SigningMode
EVENT_STATE_UNSPECIFIED: EventState
EVENT_STATE_ANNOUNCED: EventState
EVENT_STATE_ATTESTED: EventState
EVENT_STATE_UNATTESTABLE: EventState
ANCHOR_MODE_UNSPECIFIED: AnchorMode
ANCHOR_MODE_OP_RETURN: AnchorMode
ANCHOR_MODE_TAPROOT: AnchorMode
ANCHOR_STATE_UNSPECIFIED: AnchorState
ANCHOR_STATE_COMMITTED: AnchorState
ANCHOR_STATE_PSBT_WRITTEN: AnchorState
ANCHOR_STATE_SIGNED: AnchorState
ANCHOR_STATE_BROADCAST: AnchorState

class GetOracleInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OracleInfo(_message.Message):
    __slots__ = ("oracle_public_key", "signing_mode", "simulated", "network", "anchor_mode", "anchor_internal_key", "anchor_funding_address", "anchor_period_seconds", "event_interval_seconds", "announcement_lead_seconds", "nb_digits", "unit", "version")
    ORACLE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNING_MODE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_MODE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_INTERNAL_KEY_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FUNDING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCEMENT_LEAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NB_DIGITS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    oracle_public_key: bytes
    signing_mode: SigningMode
    simulated: bool
    network: str
    anchor_mode: AnchorMode
    anchor_internal_key: bytes
    anchor_funding_address: str
    anchor_period_seconds: int
    event_interval_seconds: int
    announcement_lead_seconds: int
    nb_digits: int
    unit: str
    version: str
    def __init__(self, oracle_public_key: _Optional[bytes] = ..., signing_mode: _Optional[_Union[SigningMode, str]] = ..., simulated: _Optional[bool] = ..., network: _Optional[str] = ..., anchor_mode: _Optional[_Union[AnchorMode, str]] = ..., anchor_internal_key: _Optional[bytes] = ..., anchor_funding_address: _Optional[str] = ..., anchor_period_seconds: _Optional[int] = ..., event_interval_seconds: _Optional[int] = ..., announcement_lead_seconds: _Optional[int] = ..., nb_digits: _Optional[int] = ..., unit: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetRoundReportRequest(_message.Message):
    __slots__ = ("minute",)
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    minute: int
    def __init__(self, minute: _Optional[int] = ...) -> None: ...

class RoundReport(_message.Message):
    __slots__ = ("minute", "report", "digest", "signature", "oracle_public_key", "status", "price_e8", "confidence_e8", "simulated", "label", "signed_at_ms", "round", "anchor_id")
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ORACLE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_E8_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SIGNED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_ID_FIELD_NUMBER: _ClassVar[int]
    minute: int
    report: bytes
    digest: bytes
    signature: bytes
    oracle_public_key: bytes
    status: _oracle_pb2.PriceStatus
    price_e8: int
    confidence_e8: int
    simulated: bool
    label: str
    signed_at_ms: int
    round: _oracle_pb2.Round
    anchor_id: int
    def __init__(self, minute: _Optional[int] = ..., report: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., oracle_public_key: _Optional[bytes] = ..., status: _Optional[_Union[_oracle_pb2.PriceStatus, str]] = ..., price_e8: _Optional[int] = ..., confidence_e8: _Optional[int] = ..., simulated: _Optional[bool] = ..., label: _Optional[str] = ..., signed_at_ms: _Optional[int] = ..., round: _Optional[_Union[_oracle_pb2.Round, _Mapping]] = ..., anchor_id: _Optional[int] = ...) -> None: ...

class StreamRoundReportsRequest(_message.Message):
    __slots__ = ("from_minute",)
    FROM_MINUTE_FIELD_NUMBER: _ClassVar[int]
    from_minute: int
    def __init__(self, from_minute: _Optional[int] = ...) -> None: ...

class ListAnnouncementsRequest(_message.Message):
    __slots__ = ("from_maturity", "to_maturity", "limit")
    FROM_MATURITY_FIELD_NUMBER: _ClassVar[int]
    TO_MATURITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    from_maturity: int
    to_maturity: int
    limit: int
    def __init__(self, from_maturity: _Optional[int] = ..., to_maturity: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAnnouncementsResponse(_message.Message):
    __slots__ = ("announcements",)
    ANNOUNCEMENTS_FIELD_NUMBER: _ClassVar[int]
    announcements: _containers.RepeatedCompositeFieldContainer[Announcement]
    def __init__(self, announcements: _Optional[_Iterable[_Union[Announcement, _Mapping]]] = ...) -> None: ...

class GetEventRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class Announcement(_message.Message):
    __slots__ = ("event_id", "maturity_epoch", "tlv", "signature", "oracle_public_key", "nonces", "base", "nb_digits", "unit", "precision", "signing_mode", "state", "round_minute", "simulated", "announced_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MATURITY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TLV_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ORACLE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NONCES_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    NB_DIGITS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    SIGNING_MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_MINUTE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    maturity_epoch: int
    tlv: bytes
    signature: bytes
    oracle_public_key: bytes
    nonces: _containers.RepeatedScalarFieldContainer[bytes]
    base: int
    nb_digits: int
    unit: str
    precision: int
    signing_mode: SigningMode
    state: EventState
    round_minute: int
    simulated: bool
    announced_at: int
    def __init__(self, event_id: _Optional[str] = ..., maturity_epoch: _Optional[int] = ..., tlv: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., oracle_public_key: _Optional[bytes] = ..., nonces: _Optional[_Iterable[bytes]] = ..., base: _Optional[int] = ..., nb_digits: _Optional[int] = ..., unit: _Optional[str] = ..., precision: _Optional[int] = ..., signing_mode: _Optional[_Union[SigningMode, str]] = ..., state: _Optional[_Union[EventState, str]] = ..., round_minute: _Optional[int] = ..., simulated: _Optional[bool] = ..., announced_at: _Optional[int] = ...) -> None: ...

class Attestation(_message.Message):
    __slots__ = ("event_id", "maturity_epoch", "tlv", "oracle_public_key", "signatures", "outcomes", "outcome_value", "clamped", "round_minute", "round_status", "round_price_e8", "signing_mode", "simulated", "attested_at_ms")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MATURITY_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TLV_FIELD_NUMBER: _ClassVar[int]
    ORACLE_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_VALUE_FIELD_NUMBER: _ClassVar[int]
    CLAMPED_FIELD_NUMBER: _ClassVar[int]
    ROUND_MINUTE_FIELD_NUMBER: _ClassVar[int]
    ROUND_STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUND_PRICE_E8_FIELD_NUMBER: _ClassVar[int]
    SIGNING_MODE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    ATTESTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    maturity_epoch: int
    tlv: bytes
    oracle_public_key: bytes
    signatures: _containers.RepeatedScalarFieldContainer[bytes]
    outcomes: _containers.RepeatedScalarFieldContainer[str]
    outcome_value: int
    clamped: bool
    round_minute: int
    round_status: _oracle_pb2.PriceStatus
    round_price_e8: int
    signing_mode: SigningMode
    simulated: bool
    attested_at_ms: int
    def __init__(self, event_id: _Optional[str] = ..., maturity_epoch: _Optional[int] = ..., tlv: _Optional[bytes] = ..., oracle_public_key: _Optional[bytes] = ..., signatures: _Optional[_Iterable[bytes]] = ..., outcomes: _Optional[_Iterable[str]] = ..., outcome_value: _Optional[int] = ..., clamped: _Optional[bool] = ..., round_minute: _Optional[int] = ..., round_status: _Optional[_Union[_oracle_pb2.PriceStatus, str]] = ..., round_price_e8: _Optional[int] = ..., signing_mode: _Optional[_Union[SigningMode, str]] = ..., simulated: _Optional[bool] = ..., attested_at_ms: _Optional[int] = ...) -> None: ...

class ListAnchorsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListAnchorsResponse(_message.Message):
    __slots__ = ("anchors",)
    ANCHORS_FIELD_NUMBER: _ClassVar[int]
    anchors: _containers.RepeatedCompositeFieldContainer[Anchor]
    def __init__(self, anchors: _Optional[_Iterable[_Union[Anchor, _Mapping]]] = ...) -> None: ...

class Anchor(_message.Message):
    __slots__ = ("anchor_id", "period_start", "period_end", "leaf_count", "minutes", "root", "commitment", "mode", "state", "txid", "tx", "psbt", "output_index", "internal_key", "detail", "simulated", "network")
    ANCHOR_ID_FIELD_NUMBER: _ClassVar[int]
    PERIOD_START_FIELD_NUMBER: _ClassVar[int]
    PERIOD_END_FIELD_NUMBER: _ClassVar[int]
    LEAF_COUNT_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TXID_FIELD_NUMBER: _ClassVar[int]
    TX_FIELD_NUMBER: _ClassVar[int]
    PSBT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_KEY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    anchor_id: int
    period_start: int
    period_end: int
    leaf_count: int
    minutes: _containers.RepeatedScalarFieldContainer[int]
    root: bytes
    commitment: bytes
    mode: AnchorMode
    state: AnchorState
    txid: str
    tx: bytes
    psbt: str
    output_index: int
    internal_key: bytes
    detail: str
    simulated: bool
    network: str
    def __init__(self, anchor_id: _Optional[int] = ..., period_start: _Optional[int] = ..., period_end: _Optional[int] = ..., leaf_count: _Optional[int] = ..., minutes: _Optional[_Iterable[int]] = ..., root: _Optional[bytes] = ..., commitment: _Optional[bytes] = ..., mode: _Optional[_Union[AnchorMode, str]] = ..., state: _Optional[_Union[AnchorState, str]] = ..., txid: _Optional[str] = ..., tx: _Optional[bytes] = ..., psbt: _Optional[str] = ..., output_index: _Optional[int] = ..., internal_key: _Optional[bytes] = ..., detail: _Optional[str] = ..., simulated: _Optional[bool] = ..., network: _Optional[str] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("report", "anchor", "index", "count", "siblings")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SIBLINGS_FIELD_NUMBER: _ClassVar[int]
    report: RoundReport
    anchor: Anchor
    index: int
    count: int
    siblings: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, report: _Optional[_Union[RoundReport, _Mapping]] = ..., anchor: _Optional[_Union[Anchor, _Mapping]] = ..., index: _Optional[int] = ..., count: _Optional[int] = ..., siblings: _Optional[_Iterable[bytes]] = ...) -> None: ...
