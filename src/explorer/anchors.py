"""The seam to the committer: a round's signed report, Merkle proof and anchoring transaction.

The committer (`proto/committer.proto`, `CommitterService`) signs each closed round and anchors
the reports of each period in one Bitcoin transaction. `CommitterClient` asks it about one round
over gRPC; without a committer (`committer_target` empty) every round is "not anchored yet" and
the page says why. The states a page shows:

- `not_anchored`: no signed report yet, or a signed report whose anchoring period has not ended;
- `committed`: the report is in an anchor's Merkle tree and the commitment is fixed, but the
  transaction is not broadcast (a PSBT waits for an external wallet, or it is signed only);
- `anchored`: the anchoring transaction was broadcast;
- `unavailable`: the committer did not answer (the round itself is still shown).

The proof bundle the explorer serves (`/api/rounds/{minute}/proof`) is `GetInclusionProof` as
JSON exactly as the committer's own `GET /v1/proofs/<minute>` writes it (every field, bytes as
hex, enums by name), which is what `committer verify` reads.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from common.grpc_client import aio_channel
from common.proto import committer_pb2, committer_pb2_grpc
from explorer.errors import ExplorerError, NotFoundError, UpstreamError, UpstreamUnavailableError

AnchorStateName = Literal["not_anchored", "committed", "anchored", "unavailable"]

_TRANSACTION_STATES = {
    committer_pb2.ANCHOR_STATE_COMMITTED: "committed: no transaction could be built yet",
    committer_pb2.ANCHOR_STATE_PSBT_WRITTEN: (
        "committed: an unsigned PSBT waits for an external wallet to fund, sign and broadcast it"
    ),
    committer_pb2.ANCHOR_STATE_SIGNED: "committed: the transaction is signed, not broadcast yet",
    committer_pb2.ANCHOR_STATE_BROADCAST: "anchored: the transaction was broadcast",
}


@dataclass(frozen=True, slots=True)
class AnchorInfo:
    """What the committer says about one round (fields beyond `state` only once known)."""

    state: AnchorStateName
    detail: str
    report_hex: str = ""
    report_signature: str = ""
    oracle_public_key: str = ""
    merkle_root: str = ""
    merkle_proof: tuple[str, ...] = field(default=())
    leaf_index: int | None = None
    txid: str = ""
    network: str = ""
    verify_command: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "report": {"hex": self.report_hex, "signature": self.report_signature}
            if self.report_hex
            else None,
            "oracle_public_key": self.oracle_public_key or None,
            "merkle_root": self.merkle_root or None,
            "merkle_proof": list(self.merkle_proof),
            "leaf_index": self.leaf_index,
            "txid": self.txid or None,
            "network": self.network or None,
            "verify_command": self.verify_command or None,
        }


class AnchorSource(Protocol):
    """Where the explorer asks about a round's report and anchoring."""

    async def anchor(self, minute: int) -> AnchorInfo: ...

    async def proof_bundle(self, minute: int) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class NoCommitter:
    """No committer configured: every round is "not anchored yet"."""

    DETAIL = (
        "not anchored yet: no committer is configured (committer_target), so there is no "
        "signed round report, Merkle proof or anchoring transaction to show"
    )

    async def anchor(self, minute: int) -> AnchorInfo:
        del minute  # the same answer for every round
        return AnchorInfo(state="not_anchored", detail=self.DETAIL)

    async def proof_bundle(self, minute: int) -> dict[str, Any]:
        raise NotFoundError(f"no proof for minute {minute}: {self.DETAIL}")

    async def close(self) -> None:
        return None


def message_json(message: Message) -> dict[str, Any]:
    """A message as the committer's HTTP endpoint writes it: every field (defaults too), bytes
    as hex, enums by name, an unset message as null (the `committer verify` bundle format)."""
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


def _json_value(descriptor: FieldDescriptor, value: Any) -> Any:  # noqa: ANN401 - proto values
    if descriptor.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if descriptor.type == FieldDescriptor.TYPE_ENUM:
        enum: Any = descriptor.enum_type
        return enum.values_by_number[int(value)].name
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        return message_json(value)
    return value


class CommitterClient:
    """`CommitterService` over gRPC, deadline on every call; raises only `ExplorerError`s."""

    def __init__(self, target: str, *, timeout: float) -> None:
        self.target = target
        self._timeout = timeout
        self._channel = aio_channel(target)
        self._stub = committer_pb2_grpc.CommitterServiceStub(self._channel)

    def _error(self, error: grpc.aio.AioRpcError, rpc: str) -> ExplorerError:
        code = error.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return UpstreamUnavailableError(
                f"cannot reach the committer at {self.target} ({code.name.lower()})"
            )
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
            return NotFoundError(error.details() or code.name)
        return UpstreamError(f"{rpc} at the committer answered {code.name}: {error.details()}")

    async def _report(self, minute: int) -> committer_pb2.RoundReport | None:
        try:
            return await self._stub.GetRoundReport(
                committer_pb2.GetRoundReportRequest(minute=minute), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._error(error, "GetRoundReport") from error

    async def _proof(self, minute: int) -> committer_pb2.InclusionProof:
        try:
            return await self._stub.GetInclusionProof(
                committer_pb2.GetRoundReportRequest(minute=minute), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise self._error(error, "GetInclusionProof") from error

    async def anchor(self, minute: int) -> AnchorInfo:
        try:
            report = await self._report(minute)
            if report is None:
                return AnchorInfo(
                    state="not_anchored",
                    detail="not anchored yet: the committer has not signed this round (yet)",
                )
            signed = AnchorInfo(
                state="not_anchored",
                detail="",
                report_hex=report.report.hex(),
                report_signature=report.signature.hex(),
                oracle_public_key=report.oracle_public_key.hex(),
            )
            label = "SIMULATED " if report.simulated else ""
            if not report.anchor_id:
                return replace(
                    signed,
                    detail=f"{label}signed report; not anchored yet (its anchoring period has "
                    "not ended)",
                )
            proof = await self._proof(minute)
        except UpstreamUnavailableError as error:
            return AnchorInfo(state="unavailable", detail=error.message)
        except NotFoundError as error:
            return AnchorInfo(state="not_anchored", detail=f"not anchored yet: {error.message}")
        anchor = proof.anchor
        broadcast = anchor.state == committer_pb2.ANCHOR_STATE_BROADCAST
        state_text = _TRANSACTION_STATES.get(anchor.state, "committed")
        return replace(
            signed,
            state="anchored" if broadcast else "committed",
            detail=f"{label}{state_text} (anchor {anchor.anchor_id}, {anchor.network}, "
            f"leaf index {proof.index} of {proof.count})",
            merkle_root=anchor.root.hex(),
            merkle_proof=tuple(sibling.hex() for sibling in proof.siblings),
            leaf_index=proof.index,
            txid=anchor.txid,
            network=anchor.network,
        )

    async def proof_bundle(self, minute: int) -> dict[str, Any]:
        return message_json(await self._proof(minute))

    async def close(self) -> None:
        await self._channel.close(grace=None)


def verify_command(base_url: str, minute: int, oracle_key: str) -> str:
    """The command that checks a round without trusting the explorer or the committer: fetch
    the bundle, then `committer verify` it (add `--txid ... --backend ...` to check the chain
    rather than the transaction inside the bundle)."""
    bundle = f"proof-{minute}.json"
    url = f"{base_url}/api/rounds/{minute}/proof"
    key = f" --oracle-key {oracle_key}" if oracle_key else ""
    return f"curl -sf {shlex.quote(url)} -o {bundle} && committer verify {bundle}{key}"


def anchor_source(committer_target: str, *, timeout: float) -> AnchorSource:
    """The committer client for the configured target (none: every round "not anchored yet")."""
    if not committer_target:
        return NoCommitter()
    return CommitterClient(committer_target, timeout=timeout)
