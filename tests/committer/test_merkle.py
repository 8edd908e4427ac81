"""The anchoring Merkle tree: proofs for every leaf of odd and even trees, and what must fail."""

from __future__ import annotations

import hashlib

import pytest

from committer.merkle import (
    MerkleError,
    MerkleProof,
    commitment,
    leaf_hash,
    merkle_proofs,
    merkle_root,
    node_hash,
    root_from_proof,
)


def digests(count: int) -> list[bytes]:
    return [hashlib.sha256(index.to_bytes(4, "big")).digest() for index in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 60, 61])
def test_every_leaf_proves_into_the_root(count: int) -> None:
    leaves = digests(count)
    root, proofs = merkle_proofs(leaves)
    assert root == merkle_root(leaves)
    for index, (digest, proof) in enumerate(zip(leaves, proofs, strict=True)):
        assert proof.index == index
        assert proof.count == count
        assert root_from_proof(digest, proof) == root
        # The same proof for another leaf, or at another position, leads elsewhere.
        other = leaves[(index + 1) % count]
        if count > 1:
            assert root_from_proof(other, proof) != root


def test_three_leaves_carry_the_odd_one_up() -> None:
    a, b, c = (leaf_hash(d) for d in digests(3))
    assert merkle_root(digests(3)) == node_hash(node_hash(a, b), c)
    assert merkle_root(digests(1)) == leaf_hash(digests(1)[0])


def test_duplicating_the_last_leaf_gives_another_root() -> None:
    leaves = digests(3)
    assert merkle_root(leaves) != merkle_root([*leaves, leaves[-1]])


def test_a_leaf_is_never_an_inner_node() -> None:
    leaves = digests(2)
    inner = node_hash(leaf_hash(leaves[0]), leaf_hash(leaves[1]))
    assert leaf_hash(inner) != inner


def test_malformed_proofs_are_refused() -> None:
    leaves = digests(5)
    _root, proofs = merkle_proofs(leaves)
    proof = proofs[1]
    with pytest.raises(MerkleError, match="too short"):
        root_from_proof(leaves[1], MerkleProof(1, 5, proof.siblings[:-1]))
    with pytest.raises(MerkleError, match="longer"):
        root_from_proof(leaves[1], MerkleProof(1, 5, (*proof.siblings, bytes(32))))
    with pytest.raises(MerkleError, match="outside"):
        root_from_proof(leaves[1], MerkleProof(5, 5, proof.siblings))
    with pytest.raises(MerkleError):
        merkle_root([])


def test_commitment_binds_period_and_count() -> None:
    root = merkle_root(digests(4))
    base = commitment(3600, 3600, 4, root)
    assert base != commitment(7200, 3600, 4, root)
    assert base != commitment(3600, 1800, 4, root)
    assert base != commitment(3600, 3600, 5, root)
