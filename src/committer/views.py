"""The read side: validated queries from the store to CommitterService messages, and to JSON.

The gRPC servicer and the HTTP endpoint both answer through these functions, so both validate the
same way and serve the same facts. JSON is the proto message with bytes as lowercase hex and
enums by name (what a DLC tool or a shell script can paste), never base64.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from committer import __version__
from committer.app import Committer
from committer.dlc.oracle import BASE, SigningMode
from committer.dlc.tlv import parse_announcement
from committer.errors import BadRequestError, NotFoundError, NotReadyError
from committer.merkle import merkle_proofs
from committer.store import AnchorRow, AnnouncementRow
from common.proto import committer_pb2
from common.timeutil import MINUTE

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_EVENT_ID = 128
_MODES = {
    SigningMode.PLAIN: committer_pb2.SIGNING_MODE_PLAIN,
    SigningMode.TAGGED: committer_pb2.SIGNING_MODE_TAGGED,
}
_ANCHOR_MODES = {
    "op_return": committer_pb2.ANCHOR_MODE_OP_RETURN,
    "taproot": committer_pb2.ANCHOR_MODE_TAPROOT,
}


def _limit(value: int) -> int:
    if value == 0:
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequestError(f"limit: {value} is outside 1..{MAX_LIMIT} (0 = {DEFAULT_LIMIT})")
    return value


def _minute(value: int) -> int:
    if value <= 0 or value % MINUTE or value >= 2**63:
        raise BadRequestError(f"minute: {value} is not a positive multiple of 60")
    return value


def _event_id(value: str) -> str:
    if not value or len(value) > MAX_EVENT_ID:
        raise BadRequestError(f"event_id: 1 to {MAX_EVENT_ID} characters")
    return value


def oracle_info(committer: Committer) -> committer_pb2.OracleInfo:
    config = committer.config
    return committer_pb2.OracleInfo(
        oracle_public_key=committer.keys.oracle.public_key,
        signing_mode=_MODES[config.dlc.signing_mode],
        simulated=config.simulate,
        network=config.network.value,
        anchor_mode=_ANCHOR_MODES[config.anchor.mode.value],
        anchor_internal_key=committer.keys.anchor_internal_key,
        anchor_funding_address=committer.funding_address(),
        anchor_period_seconds=config.anchor.period_seconds,
        event_interval_seconds=config.dlc.event_interval_seconds,
        announcement_lead_seconds=config.dlc.lead_seconds,
        nb_digits=config.dlc.nb_digits,
        unit=config.dlc.unit,
        version=__version__,
    )


def get_report(committer: Committer, minute: int) -> committer_pb2.RoundReport:
    row = committer.store.report(_minute(minute))
    if row is None:
        raise NotFoundError(f"no report for minute {minute}")
    return committer.report_message(row)


def announcement_message(committer: Committer, row: AnnouncementRow) -> committer_pb2.Announcement:
    announcement = parse_announcement(row.tlv)
    event = announcement.event
    return committer_pb2.Announcement(
        event_id=row.event_id,
        maturity_epoch=row.maturity,
        tlv=row.tlv,
        signature=announcement.signature,
        oracle_public_key=announcement.public_key,
        nonces=list(event.nonces),
        base=BASE,
        nb_digits=event.descriptor.nb_digits,
        unit=event.descriptor.unit,
        precision=event.descriptor.precision,
        signing_mode=_MODES[SigningMode(row.mode)],
        state=row.state,  # type: ignore[arg-type]
        round_minute=row.maturity - MINUTE,
        simulated=row.simulated,
        announced_at=row.announced_at,
    )


def list_announcements(
    committer: Committer, low: int, high: int, limit: int
) -> committer_pb2.ListAnnouncementsResponse:
    if high and low > high:
        raise BadRequestError("from_maturity is after to_maturity")
    rows = committer.store.announcements(low, high or 2**62, _limit(limit))
    return committer_pb2.ListAnnouncementsResponse(
        announcements=[announcement_message(committer, row) for row in rows]
    )


def get_announcement(committer: Committer, event_id: str) -> committer_pb2.Announcement:
    row = committer.store.announcement(_event_id(event_id))
    if row is None:
        raise NotFoundError(f"no event {event_id!r}")
    return announcement_message(committer, row)


def get_attestation(committer: Committer, event_id: str) -> committer_pb2.Attestation:
    announcement = committer.store.announcement(_event_id(event_id))
    if announcement is None:
        raise NotFoundError(f"no event {event_id!r}")
    row = committer.store.attestation(event_id)
    if row is None:
        if announcement.state == committer_pb2.EVENT_STATE_UNATTESTABLE:
            raise NotReadyError(
                f"event {event_id} is never attested: its round closed UNKNOWN (no price)"
            )
        raise NotReadyError(
            f"event {event_id} is not attested yet (matures {announcement.maturity})"
        )
    from committer.dlc.tlv import parse_attestation  # noqa: PLC0415

    attestation = parse_attestation(row.tlv)
    return committer_pb2.Attestation(
        event_id=row.event_id,
        maturity_epoch=row.maturity,
        tlv=row.tlv,
        oracle_public_key=attestation.public_key,
        signatures=list(attestation.signatures),
        outcomes=list(attestation.outcomes),
        outcome_value=row.outcome_value,
        clamped=row.clamped,
        round_minute=row.round_minute,
        round_status=row.round_status,  # type: ignore[arg-type]
        round_price_e8=row.round_price_e8,
        signing_mode=_MODES[SigningMode(announcement.mode)],
        simulated=announcement.simulated,
        attested_at_ms=row.attested_at_ms,
    )


def anchor_message(committer: Committer, row: AnchorRow) -> committer_pb2.Anchor:
    return committer_pb2.Anchor(
        anchor_id=row.anchor_id,
        period_start=row.period_start,
        period_end=row.period_end,
        leaf_count=len(row.minutes),
        minutes=list(row.minutes),
        root=row.root,
        commitment=row.commitment,
        mode=_ANCHOR_MODES[row.mode],
        state=row.state,  # type: ignore[arg-type]
        txid=row.txid,
        tx=row.tx,
        psbt=row.psbt,
        output_index=row.output_index,
        internal_key=row.internal_key,
        detail=row.detail,
        simulated=committer.simulated,
        network=committer.config.network.value,
    )


def list_anchors(committer: Committer, limit: int) -> committer_pb2.ListAnchorsResponse:
    rows = committer.store.anchors(_limit(limit))
    return committer_pb2.ListAnchorsResponse(anchors=[anchor_message(committer, r) for r in rows])


def inclusion_proof(committer: Committer, minute: int) -> committer_pb2.InclusionProof:
    row = committer.store.report(_minute(minute))
    if row is None:
        raise NotFoundError(f"no report for minute {minute}")
    if row.anchor_id is None or row.leaf_index is None:
        raise NotReadyError(f"the report of minute {minute} is not anchored yet")
    anchor = committer.store.anchor(row.anchor_id)
    if anchor is None:  # pragma: no cover (one transaction writes both)
        raise NotFoundError(f"anchor {row.anchor_id} is missing")
    digests = []
    for leaf_minute in anchor.minutes:
        leaf = committer.store.report(leaf_minute)
        if leaf is None:  # pragma: no cover
            raise NotFoundError(f"report {leaf_minute} of anchor {anchor.anchor_id} is missing")
        digests.append(leaf.digest)
    _root, proofs = merkle_proofs(digests)
    proof = proofs[row.leaf_index]
    return committer_pb2.InclusionProof(
        report=committer.report_message(row),
        anchor=anchor_message(committer, anchor),
        index=proof.index,
        count=proof.count,
        siblings=list(proof.siblings),
    )


def to_json(message: Message) -> dict[str, Any]:
    """The message as JSON-ready data: every field (defaults too), bytes as hex, enums by name."""
    result: dict[str, Any] = {}
    fields: Any = message.DESCRIPTOR.fields  # two descriptor classes (upb, Python) in the stubs
    for descriptor in fields:
        value = getattr(message, descriptor.name)
        if descriptor.is_repeated:
            result[descriptor.name] = [_json_value(descriptor, item) for item in value]
        elif descriptor.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(
            descriptor.name
        ):
            result[descriptor.name] = None
        else:
            result[descriptor.name] = _json_value(descriptor, value)
    return result


def _json_value(descriptor: FieldDescriptor, value: Any) -> Any:  # noqa: ANN401 (proto values)
    if descriptor.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if descriptor.type == FieldDescriptor.TYPE_ENUM:
        enum: Any = descriptor.enum_type
        return enum.values_by_number[int(value)].name
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    return value
