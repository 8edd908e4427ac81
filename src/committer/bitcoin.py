"""Bitcoin primitives of the anchor: Taproot keys, output scripts, addresses and key-path signing.

The curve work is libsecp256k1's (coincurve, and its cffi `secp256k1_keypair_xonly_tweak_add`,
which applies BIP341's even-y negation itself); addresses are btclib's bech32m. The commitment sits
either in an OP_RETURN output (`TAG` + 32 bytes, 41 data bytes: relayed under every node policy,
including the old 80-byte limit) or as the BIP341 merkle root that tweaks a Taproot output key:
Q = P + hash_TapTweak(P || commitment)*G. The Taproot form costs no extra bytes on chain, looks like
any other key-path output, and the output stays spendable by the holder of P's key, which is how
the anchor chain pays for the next anchor.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from btclib import b32
from coincurve import PrivateKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from common.schnorr import tagged_hash

TAG: Final = b"BTCFI-OR\x01"
OP_RETURN: Final = 0x6A
# P2TR outputs below this are dust under Bitcoin Core's policy (330 sats for witness v1).
P2TR_DUST: Final = 330


class Network(StrEnum):
    MAINNET = "mainnet"
    TESTNET = "testnet"
    SIGNET = "signet"
    REGTEST = "regtest"


class BitcoinError(ValueError):
    """A key, script or transaction is not what the anchor needs."""


def tap_tweak(internal_key: bytes, merkle_root: bytes) -> bytes:
    """BIP341's t = hash_TapTweak(x(P) || root); an empty root means key path only."""
    if len(internal_key) != 32 or len(merkle_root) not in (0, 32):
        raise BitcoinError("internal key is 32 bytes, merkle root 0 or 32")
    return tagged_hash("TapTweak", internal_key + merkle_root)


def output_key(internal_key: bytes, merkle_root: bytes = b"") -> bytes:
    """x(Q) for Q = P + t*G (BIP341 taproot_tweak_pubkey)."""
    try:
        point = PublicKeyXOnly(internal_key)
    except ValueError as error:
        raise BitcoinError("internal key is not a valid x-only public key") from error
    point.tweak_add(tap_tweak(internal_key, merkle_root))
    return bytes(point.format())


def p2tr_script(x_only: bytes) -> bytes:
    return b"\x51\x20" + x_only


def op_return_script(commitment: bytes) -> bytes:
    if len(commitment) != 32:
        raise BitcoinError("a commitment is 32 bytes")
    payload = TAG + commitment
    return bytes((OP_RETURN, len(payload))) + payload


def address(script_pub_key: bytes, network: Network) -> str:
    """The bech32m address of a P2TR script on `network` (bc1p, tb1p, bcrt1p)."""
    if len(script_pub_key) != 34 or script_pub_key[:2] != b"\x51\x20":
        raise BitcoinError("not a P2TR script")
    return str(b32.p2tr(script_pub_key[2:], network.value))


def tweaked_secret(secret: bytes, merkle_root: bytes) -> bytes:
    """The key-path secret of the output (BIP341), by libsecp256k1's keypair tweak."""
    keypair = ffi.new("secp256k1_keypair *")
    context = GLOBAL_CONTEXT.ctx
    if not lib.secp256k1_keypair_create(context, keypair, secret):
        raise BitcoinError("not a valid secret key")
    internal = bytes(PublicKeyXOnly.from_secret(secret).format())
    if not lib.secp256k1_keypair_xonly_tweak_add(
        context, keypair, tap_tweak(internal, merkle_root)
    ):
        raise BitcoinError("tweak failed")
    out = ffi.new("unsigned char[32]")
    lib.secp256k1_keypair_sec(context, out, keypair)
    return bytes(ffi.buffer(out))


def sign_key_path(secret: bytes, merkle_root: bytes, sighash: bytes, *, aux: bytes = b"") -> bytes:
    """A 64-byte SIGHASH_DEFAULT signature spending P2TR(P, root) by key path.

    `aux` empty means fresh randomness (BIP340's advice); 32 fixed bytes reproduce a vector.
    coincurve verifies the signature before returning it.
    """
    return bytes(PrivateKey(tweaked_secret(secret, merkle_root)).sign_schnorr(sighash, aux))
