"""The anchoring Merkle tree over one period's round-report digests, its proofs and commitment.

Leaves and inner nodes are BIP340 tagged hashes under different tags, so a leaf can never pass
for an inner node (the second-preimage trick against Bitcoin's own block tree). An odd node at
the end of a level is carried up unchanged rather than paired with itself, so no two different
leaf lists share a root (Bitcoin's duplicate-last-node rule allows exactly that, CVE-2012-2459).
A proof is the leaf's index, the leaf count and the sibling hashes bottom-up: the verifier derives
left/right from the index and count itself, so a proof binds the leaf's position, and with leaves
in minute order it binds the minute. What goes on chain is the *commitment*: a tagged hash of the
period (start, length), the leaf count and the tree root, so a root is never ambiguous about which
hour it covers. Layout and a worked example: docs/committer.md, "Anchoring".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from common.schnorr import tagged_hash

LEAF_TAG: Final = "btcfi-oracle/anchor/leaf/v1"
NODE_TAG: Final = "btcfi-oracle/anchor/node/v1"
COMMITMENT_TAG: Final = "btcfi-oracle/anchor/commitment/v1"
MAX_LEAVES: Final = 2**20

_PERIOD = struct.Struct(">QII")


class MerkleError(ValueError):
    """A tree cannot be built (no leaves, bad hash) or a proof is malformed."""


def leaf_hash(report_digest: bytes) -> bytes:
    if len(report_digest) != 32:
        raise MerkleError("a leaf is a 32-byte report digest")
    return tagged_hash(LEAF_TAG, report_digest)


def node_hash(left: bytes, right: bytes) -> bytes:
    return tagged_hash(NODE_TAG, left + right)


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """The siblings from a leaf up to the root; sides follow from `index` and `count`."""

    index: int
    count: int
    siblings: tuple[bytes, ...]


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise MerkleError("a tree needs at least one leaf")
    if len(leaves) > MAX_LEAVES:
        raise MerkleError(f"more than {MAX_LEAVES} leaves")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        parents = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])  # the odd node is carried up, never duplicated
        levels.append(parents)
    return levels


def merkle_root(report_digests: Sequence[bytes]) -> bytes:
    """The root over the digests, in the order given (the committer orders them by minute)."""
    return _levels([leaf_hash(digest) for digest in report_digests])[-1][0]


def merkle_proofs(report_digests: Sequence[bytes]) -> tuple[bytes, list[MerkleProof]]:
    """The root and one proof per leaf, built in one pass over the tree."""
    levels = _levels([leaf_hash(digest) for digest in report_digests])
    count = len(report_digests)
    proofs = []
    for index in range(count):
        siblings = []
        position = index
        for level in levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                siblings.append(level[sibling])
            position //= 2
        proofs.append(MerkleProof(index, count, tuple(siblings)))
    return levels[-1][0], proofs


def root_from_proof(report_digest: bytes, proof: MerkleProof) -> bytes:
    """The root `proof` leads to from `report_digest`; MerkleError for a malformed proof."""
    if not 0 <= proof.index < proof.count <= MAX_LEAVES:
        raise MerkleError(f"leaf index {proof.index} outside a tree of {proof.count}")
    current = leaf_hash(report_digest)
    position, width = proof.index, proof.count
    remaining = list(proof.siblings)
    while width > 1:
        if position ^ 1 < width:  # this node has a sibling on this level
            if not remaining:
                raise MerkleError("proof is too short for its tree")
            sibling = remaining.pop(0)
            if len(sibling) != 32:
                raise MerkleError("a sibling is a 32-byte hash")
            current = node_hash(sibling, current) if position & 1 else node_hash(current, sibling)
        position //= 2
        width = (width + 1) // 2
    if remaining:
        raise MerkleError("proof is longer than its tree")
    return current


def commitment(period_start: int, period_seconds: int, count: int, root: bytes) -> bytes:
    """The 32 bytes put on chain: the tree root bound to its period and leaf count."""
    if len(root) != 32:
        raise MerkleError("a root is 32 bytes")
    return tagged_hash(COMMITMENT_TAG, _PERIOD.pack(period_start, period_seconds, count) + root)
