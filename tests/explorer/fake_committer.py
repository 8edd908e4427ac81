"""A stand-in for the committer behind the explorer's `AnchorSource` seam: anchored rounds.

The committer's contract is built in parallel; this fake answers with what an anchored round
carries (signed report, Merkle proof, transaction, verify command) so the page's anchored view
and its copy button are tested before the real client exists.
"""

from __future__ import annotations

from typing import Any

from explorer.anchors import AnchorInfo
from explorer.errors import NotFoundError


class AnchoredCommitter:
    """Every round at or before `anchored_until` is anchored; later ones are not yet."""

    def __init__(self, anchored_until: int) -> None:
        self.anchored_until = anchored_until

    async def anchor(self, minute: int) -> AnchorInfo:
        if minute > self.anchored_until:
            return AnchorInfo(state="not_anchored", detail="not anchored yet: next anchor at :00")
        return AnchorInfo(
            state="anchored",
            detail="anchored in regtest transaction (SIMULATED)",
            report_hex="01" + f"{minute:016x}" + "ab" * 40,
            report_signature="cd" * 64,
            oracle_public_key="ef" * 32,
            merkle_root="12" * 32,
            merkle_proof=("34" * 32, "56" * 32),
            leaf_index=3,
            txid="78" * 32,
            network="regtest",
            verify_command=f"committer verify proof-{minute}.json --oracle-key {'ef' * 32}",
        )

    async def proof_bundle(self, minute: int) -> dict[str, Any]:
        if minute > self.anchored_until:
            raise NotFoundError(f"the report of minute {minute} is not anchored yet")
        return {"report": {"minute": minute}, "index": 3, "count": 8, "siblings": []}

    async def close(self) -> None:
        return None
