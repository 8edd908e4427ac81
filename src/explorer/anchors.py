"""The seam to the committer: a round's signed report, Merkle proof and anchoring transaction.

The committer (issue 13) serves them over its own gRPC contract (`proto/committer.proto`, built
in parallel). Until the explorer speaks that contract, every round is "not anchored yet" and the
page says why. An implementation of `AnchorSource` for the committer's contract plugs in here,
selected by `committer_target` in the config; nothing else in the explorer changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

AnchorStateName = Literal["not_anchored", "anchored", "unavailable"]


@dataclass(frozen=True, slots=True)
class AnchorInfo:
    """What the committer says about one round (fields beyond `state` only once anchored)."""

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

    async def close(self) -> None: ...


class NoCommitter:
    """No committer configured (or not yet supported): every round is "not anchored yet"."""

    def __init__(self, target: str = "") -> None:
        self._target = target

    async def anchor(self, minute: int) -> AnchorInfo:
        del minute  # the same answer for every round
        if self._target:
            detail = (
                f"not anchored yet: a committer is configured at {self._target}, but this "
                "explorer does not read the committer's contract yet"
            )
        else:
            detail = (
                "not anchored yet: no committer is configured (committer_target), so there is "
                "no signed round report, Merkle proof or anchoring transaction to show"
            )
        return AnchorInfo(state="not_anchored", detail=detail)

    async def close(self) -> None:
        return None


def anchor_source(committer_target: str) -> AnchorSource:
    """The committer client for the configured target."""
    return NoCommitter(committer_target)
