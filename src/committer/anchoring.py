"""Anchoring transactions: build, hand to a wallet as a PSBT, sign by key path, and check.

The anchors form a chain. Each anchoring transaction spends the previous anchor's change (a P2TR
output of the anchor key P) and creates the next one, so the committer needs funding only once:
an operator sends coins to the funding address (P2TR of P, key path only) and every later anchor
pays its fee out of the chain. Two modes carry the commitment:

* `taproot`: one output, P2TR(P tweaked with the commitment as BIP341 merkle root): the
  commitment and the change are the same output, and no extra byte goes on chain;
* `op_return`: an OP_RETURN output (`bitcoin.TAG` + commitment, 0 sats) and a key-path-only
  change output to P.

The PSBT (BIP174 v0) carries BIP371 fields so any Taproot wallet holding P's key can sign:
PSBT_IN_TAP_INTERNAL_KEY and PSBT_IN_TAP_MERKLE_ROOT for the spent anchor output,
PSBT_OUT_TAP_INTERNAL_KEY for the new ones (no PSBT_OUT_TAP_TREE: a bare 32-byte root has no
leaves). The txid is known before signing (segwit), which is what lets the chain continue while
an external wallet signs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from btclib.exceptions import BTClibValueError
from btclib.script.engine import verify_transaction
from btclib.script.witness import Witness
from btclib.tx import OutPoint, Tx, TxIn, TxOut
from btclib_wallet import psbt as psbt_api
from btclib_wallet.psbt import Psbt

from committer.bitcoin import (
    P2TR_DUST,
    BitcoinError,
    op_return_script,
    output_key,
    p2tr_script,
    sign_key_path,
)

# Opt-in RBF (BIP125) so a stuck anchor can be fee-bumped by the wallet.
SEQUENCE: Final = 0xFFFFFFFD
TX_VERSION: Final = 2


class AnchorMode(StrEnum):
    OP_RETURN = "op_return"
    TAPROOT = "taproot"


@dataclass(frozen=True, slots=True)
class AnchorUtxo:
    """An output of the anchor key: the funding output or a previous anchor's change."""

    txid: str  # hex, explorer byte order
    vout: int
    amount: int  # sats
    merkle_root: bytes  # the tweak's root: b"" (key path only) or a previous commitment

    def script_pub_key(self, internal_key: bytes) -> bytes:
        return p2tr_script(output_key(internal_key, self.merkle_root))


@dataclass(frozen=True, slots=True)
class AnchorTx:
    """An unsigned anchoring transaction with its PSBT and the chain's next UTXO."""

    tx: Tx
    psbt: Psbt
    commitment_index: int
    change: AnchorUtxo
    fee: int

    @property
    def txid(self) -> str:
        return self.tx.id.hex()


def _outputs(mode: AnchorMode, internal_key: bytes, commitment: bytes, value: int) -> list[TxOut]:
    if mode is AnchorMode.TAPROOT:
        return [TxOut(value, p2tr_script(output_key(internal_key, commitment)))]
    return [
        TxOut(0, op_return_script(commitment)),
        TxOut(value, p2tr_script(output_key(internal_key))),
    ]


def _vsize_with_key_path_witness(tx: Tx) -> int:
    signed = Tx(
        tx.version,
        tx.lock_time,
        [TxIn(i.prev_out, b"", i.sequence, Witness([bytes(64)])) for i in tx.vin],
        tx.vout,
    )
    return int(signed.vsize)


def build_anchor_tx(
    *,
    mode: AnchorMode,
    internal_key: bytes,
    commitment: bytes,
    utxo: AnchorUtxo,
    fee_rate: float,
) -> AnchorTx:
    """The unsigned transaction spending `utxo` that commits `commitment`, fee at `fee_rate`."""
    if not math.isfinite(fee_rate) or fee_rate <= 0:
        raise BitcoinError("fee rate must be a positive number of sat/vB")
    prevout = OutPoint(bytes.fromhex(utxo.txid), utxo.vout)
    draft = Tx(
        TX_VERSION,
        0,
        [TxIn(prevout, b"", SEQUENCE)],
        _outputs(mode, internal_key, commitment, utxo.amount),
    )
    fee = math.ceil(_vsize_with_key_path_witness(draft) * fee_rate)
    value = utxo.amount - fee
    if value < P2TR_DUST:
        raise BitcoinError(
            f"anchor funds exhausted: {utxo.amount} sats cannot pay a {fee}-sat fee and keep "
            f"{P2TR_DUST} sats; send more to the funding address"
        )
    outputs = _outputs(mode, internal_key, commitment, value)
    tx = Tx(TX_VERSION, 0, [TxIn(prevout, b"", SEQUENCE)], outputs)
    psbt = Psbt.from_tx(tx)
    spent = psbt.inputs[0]
    spent.witness_utxo = TxOut(utxo.amount, utxo.script_pub_key(internal_key))
    spent.taproot_internal_key = internal_key
    if utxo.merkle_root:
        spent.taproot_merkle_root = utxo.merkle_root
    change_index = 0 if mode is AnchorMode.TAPROOT else 1
    psbt.outputs[change_index].taproot_internal_key = internal_key
    psbt.assert_valid()
    change_root = commitment if mode is AnchorMode.TAPROOT else b""
    change = AnchorUtxo(tx.id.hex(), change_index, value, change_root)
    return AnchorTx(tx, psbt, 0, change, fee)


def sign_anchor_tx(anchor: AnchorTx, secret: bytes, utxo: AnchorUtxo, *, aux: bytes = b"") -> Tx:
    """Sign the anchor's single input by key path and finalise it (the committer's own key)."""
    psbt = Psbt.b64decode(anchor.psbt.b64encode())
    sighash = psbt_api.taproot_sig_hash(psbt, 0)
    psbt.inputs[0].taproot_key_spend_signature = sign_key_path(
        secret, utxo.merkle_root, sighash, aux=aux
    )
    signed: Tx = psbt_api.extract_tx(psbt_api.finalize(psbt))
    if signed.id != anchor.tx.id:
        raise BitcoinError("signing changed the transaction id")
    return signed


def check_spend(tx: Tx, prevouts: list[TxOut]) -> None:
    """btclib's script engine over every input (BitcoinError with its reason)."""
    try:
        verify_transaction(prevouts, tx)
    except (BTClibValueError, ValueError) as error:
        raise BitcoinError(f"transaction does not verify: {error}") from error


def find_commitment(
    tx: Tx, commitment: bytes, *, internal_key: bytes | None
) -> tuple[AnchorMode, int] | None:
    """Where `tx` commits `commitment`: an OP_RETURN output, or a Taproot output tweaked by it."""
    wanted_op_return = op_return_script(commitment)
    wanted_taproot = (
        p2tr_script(output_key(internal_key, commitment)) if internal_key is not None else None
    )
    for index, out in enumerate(tx.vout):
        script = bytes(out.scriptPubKey)
        if script == wanted_op_return:
            return AnchorMode.OP_RETURN, index
        if script == wanted_taproot:
            return AnchorMode.TAPROOT, index
    return None
