"""Anchoring: BIP341 vectors through our code, consensus checks of our transactions, proofs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pbk
import pytest
from btclib.script import sig_hash
from btclib.tx import Tx, TxOut

from committer import views
from committer.anchoring import (
    AnchorMode,
    AnchorUtxo,
    build_anchor_tx,
    check_spend,
    find_commitment,
    sign_anchor_tx,
)
from committer.bitcoin import (
    BitcoinError,
    Network,
    address,
    op_return_script,
    output_key,
    p2tr_script,
    sign_key_path,
    tap_tweak,
    tweaked_secret,
)
from committer.verify import verify_bundle
from tests.committer.conftest import ANCHOR_KEY
from tests.committer.rounds import ALLOWLIST, BASE_MINUTE, make_round

VECTORS = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "bitcoin"
        / "bip341_wallet_test_vectors.json"
    ).read_text()
)
INTERNAL = ANCHOR_KEY.public_key
COMMITMENT = hashlib.sha256(b"an hour of reports").digest()


def consensus_ok(tx: Tx, prevouts: list[TxOut]) -> bool:
    """Bitcoin Core's interpreter (libbitcoinkernel) on every input."""
    raw = tx.serialize(include_witness=True)
    kernel_tx = pbk.Transaction(raw)
    spent = [
        pbk.TransactionOutput(pbk.ScriptPubkey(bytes(out.scriptPubKey)), out.value)
        for out in prevouts
    ]
    precomputed = pbk.script.PrecomputedTransactionData(kernel_tx, spent)
    return all(
        pbk.ScriptPubkey(bytes(out.scriptPubKey)).verify(
            out.value, kernel_tx, precomputed, index, pbk.ScriptVerificationFlags.ALL
        )
        for index, out in enumerate(prevouts)
    )


@pytest.mark.parametrize(
    "case", VECTORS["scriptPubKey"], ids=lambda c: c["expected"]["bip350Address"][:16]
)
def test_bip341_output_keys_and_addresses(case) -> None:
    internal = bytes.fromhex(case["given"]["internalPubkey"])
    root = bytes.fromhex(case["intermediary"]["merkleRoot"] or "")
    assert tap_tweak(internal, root).hex() == case["intermediary"]["tweak"]
    assert output_key(internal, root).hex() == case["intermediary"]["tweakedPubkey"]
    script = p2tr_script(output_key(internal, root))
    assert script.hex() == case["expected"]["scriptPubKey"]
    assert address(script, Network.MAINNET) == case["expected"]["bip350Address"]


def test_bip341_key_path_spends_reproduced_and_accepted_by_consensus() -> None:
    case = VECTORS["keyPathSpending"][0]
    tx = Tx.parse(bytes.fromhex(case["given"]["rawUnsignedTx"]))
    prevouts = [
        TxOut(u["amountSats"], bytes.fromhex(u["scriptPubKey"]))
        for u in case["given"]["utxosSpent"]
    ]
    for spend in case["inputSpending"]:
        given, inter = spend["given"], spend["intermediary"]
        root = bytes.fromhex(given["merkleRoot"] or "")
        secret = bytes.fromhex(given["internalPrivkey"])
        assert tweaked_secret(secret, root).hex() == inter["tweakedPrivkey"]
        digest = sig_hash.taproot(tx, given["txinIndex"], prevouts, given["hashType"], 0, b"", b"")
        assert digest.hex() == inter["sigHash"]
        signature = sign_key_path(secret, root, digest, aux=bytes(32))
        if given["hashType"]:
            signature += bytes((given["hashType"],))
        assert [signature.hex()] == spend["expected"]["witness"]
    signed = Tx.parse(bytes.fromhex(case["auxiliary"]["fullySignedTx"]))
    assert consensus_ok(signed, prevouts)


@pytest.mark.parametrize("mode", list(AnchorMode))
def test_anchor_chain_passes_both_consensus_checks(mode: AnchorMode) -> None:
    funding = AnchorUtxo("ab" * 32, 1, 50_000, b"")
    first = build_anchor_tx(
        mode=mode, internal_key=INTERNAL, commitment=COMMITMENT, utxo=funding, fee_rate=3.0
    )
    signed = sign_anchor_tx(first, ANCHOR_KEY.secret_bytes(), funding)
    prevouts = [TxOut(funding.amount, funding.script_pub_key(INTERNAL))]
    assert consensus_ok(signed, prevouts)
    check_spend(signed, prevouts)  # btclib's engine as a second opinion
    assert find_commitment(signed, COMMITMENT, internal_key=INTERNAL) == (mode, 0)
    assert signed.vsize * 3 <= first.fee <= signed.vsize * 3 + 3
    # The next anchor spends this one's output by key path: for Taproot that output's key is the
    # internal key tweaked with the commitment, so this is the key-path spend of the tweaked output.
    change = first.change
    second = build_anchor_tx(
        mode=mode,
        internal_key=INTERNAL,
        commitment=hashlib.sha256(b"next").digest(),
        utxo=change,
        fee_rate=3.0,
    )
    second_signed = sign_anchor_tx(second, ANCHOR_KEY.secret_bytes(), change)
    spent = [signed.vout[change.vout]]
    assert consensus_ok(second_signed, spent)
    check_spend(second_signed, spent)


def test_a_tampered_anchor_is_rejected_by_consensus() -> None:
    funding = AnchorUtxo("ab" * 32, 0, 50_000, b"")
    built = build_anchor_tx(
        mode=AnchorMode.TAPROOT,
        internal_key=INTERNAL,
        commitment=COMMITMENT,
        utxo=funding,
        fee_rate=1.0,
    )
    signed = sign_anchor_tx(built, ANCHOR_KEY.secret_bytes(), funding)
    signed.vout[0] = TxOut(signed.vout[0].value + 1, bytes(signed.vout[0].scriptPubKey))
    prevouts = [TxOut(funding.amount, funding.script_pub_key(INTERNAL))]
    assert not consensus_ok(signed, prevouts)
    with pytest.raises(BitcoinError):
        check_spend(signed, prevouts)


def test_psbt_carries_the_bip371_fields() -> None:
    funding = AnchorUtxo("cd" * 32, 0, 50_000, COMMITMENT)
    built = build_anchor_tx(
        mode=AnchorMode.OP_RETURN,
        internal_key=INTERNAL,
        commitment=COMMITMENT,
        utxo=funding,
        fee_rate=1.0,
    )
    raw = built.psbt.serialize()
    # PSBT_IN_TAP_INTERNAL_KEY 0x17, PSBT_IN_TAP_MERKLE_ROOT 0x18, PSBT_OUT_TAP_INTERNAL_KEY 0x05
    assert b"\x01\x17" + b"\x20" + INTERNAL in raw
    assert b"\x01\x18" + b"\x20" + COMMITMENT in raw
    assert b"\x01\x05" + b"\x20" + INTERNAL in raw
    assert bytes(built.tx.vout[0].scriptPubKey) == op_return_script(COMMITMENT)
    assert built.tx.vout[0].value == 0


def test_too_small_funding_is_a_clear_error() -> None:
    with pytest.raises(BitcoinError, match="exhausted"):
        build_anchor_tx(
            mode=AnchorMode.TAPROOT,
            internal_key=INTERNAL,
            commitment=COMMITMENT,
            utxo=AnchorUtxo("ab" * 32, 0, 400, b""),
            fee_rate=2.0,
        )


def test_addresses_on_every_network_are_bech32m() -> None:
    script = p2tr_script(output_key(INTERNAL))
    prefixes = {
        Network.MAINNET: "bc1p",
        Network.TESTNET: "tb1p",
        Network.SIGNET: "tb1p",
        Network.REGTEST: "bcrt1p",
    }
    for network, prefix in prefixes.items():
        assert address(script, network).startswith(prefix)


@pytest.mark.parametrize("count", [1, 2, 5])
async def test_committer_anchors_a_period_and_every_report_verifies(
    committer_factory, count
) -> None:
    committer = committer_factory(anchor={"funding_txid": "ef" * 32, "funding_amount": 100_000})
    rounds = [make_round(BASE_MINUTE + 60 * i) for i in range(count)]
    await committer.ingest(rounds, BASE_MINUTE + 3600)
    assert await committer.anchor_due(BASE_MINUTE + 600) == []  # the period is not over
    anchors = await committer.anchor_due(BASE_MINUTE + 3600)
    assert len(anchors) == 1
    assert anchors[0].minutes == tuple(r.minute for r in rounds)
    tx = Tx.parse(anchors[0].tx)
    assert consensus_ok(tx, [TxOut(100_000, p2tr_script(output_key(INTERNAL)))])
    for round_ in rounds:
        bundle = views.to_json(views.inclusion_proof(committer, round_.minute))
        verdict = verify_bundle(
            bundle,
            anchors[0].tx.hex(),
            oracle_key=committer.keys.oracle.public_key,
            node_keys=ALLOWLIST,
        )
        assert verdict.ok, verdict.lines()
    # The next period's anchor spends this one's output (the chain pays for itself).
    await committer.ingest([make_round(BASE_MINUTE + 3600)], BASE_MINUTE + 7200)
    (second,) = await committer.anchor_due(BASE_MINUTE + 7200)
    assert Tx.parse(second.tx).vin[0].prev_out.tx_id.hex() == anchors[0].txid


async def test_verify_says_no_with_reasons(committer_factory) -> None:
    committer = committer_factory(anchor={"funding_txid": "ef" * 32, "funding_amount": 100_000})
    await committer.ingest(
        [make_round(BASE_MINUTE), make_round(BASE_MINUTE + 60)], BASE_MINUTE + 3600
    )
    (anchor,) = await committer.anchor_due(BASE_MINUTE + 3600)
    bundle = views.to_json(views.inclusion_proof(committer, BASE_MINUTE))
    other_tx = (
        build_anchor_tx(
            mode=AnchorMode.TAPROOT,
            internal_key=INTERNAL,
            commitment=COMMITMENT,
            utxo=AnchorUtxo("ef" * 32, 0, 100_000, b""),
            fee_rate=2.0,
        )
        .tx.serialize(include_witness=False)
        .hex()
    )
    verdict = verify_bundle(bundle, other_tx)
    assert not verdict.ok
    assert any("does not carry the commitment" in line for line in verdict.failed)
    tampered = json.loads(json.dumps(bundle))
    tampered["siblings"] = [("00" * 32)]
    assert not verify_bundle(tampered, anchor.tx.hex()).ok
    forged = json.loads(json.dumps(bundle))
    forged["report"]["signature"] = "00" * 64
    verdict = verify_bundle(forged, anchor.tx.hex())
    assert "oracle signature does not verify" in verdict.failed
