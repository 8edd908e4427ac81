"""BIP340 signing with a nonce chosen in advance, on libsecp256k1 (coincurve's bundled copy).

A DLC oracle publishes R = k*G before it knows the outcome, so it cannot use BIP340's own nonce
derivation (which hashes the message). libsecp256k1's `secp256k1_schnorrsig_sign_custom` takes a
nonce callback: ours returns the committed k, and the library applies BIP340's even-y rules to k
and to the key itself. No scalar arithmetic is done here. Every signature is verified against the
announced R and the public key before it is returned; a mismatch is a hard error, never a result.
Callers must never sign two different messages with one k (see `committer.dlc.guard`).
"""

from __future__ import annotations

from typing import Final

from coincurve import PublicKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from common.schnorr import tagged_hash, verify

# SECP256K1_SCHNORRSIG_EXTRAPARAMS_MAGIC from secp256k1_schnorrsig.h
_EXTRAPARAMS_MAGIC: Final = bytes((0xDA, 0x6F, 0xB3, 0x8C))
_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class NonceSigningError(RuntimeError):
    """libsecp256k1 refused, or the result did not verify: nothing was returned."""


def nonce_point(nonce_secret: bytes) -> bytes:
    """x(k*G): the 32-byte nonce an announcement commits to (even-y lift implied)."""
    return bytes(PublicKeyXOnly.from_secret(nonce_secret).format())


def signature_point(public_key: bytes, nonce: bytes, message32: bytes) -> bytes:
    """s*G = R + e*P as a 33-byte point, computable before the attestation (the adaptor point).

    Uses libsecp256k1's point operations through coincurve: e is BIP340's challenge.
    """
    challenge = int.from_bytes(tagged_hash("BIP0340/challenge", nonce + public_key + message32))
    challenge %= _ORDER
    r_point = PublicKey(b"\x02" + nonce)
    p_point = PublicKey(b"\x02" + public_key)
    if challenge == 0:
        return bytes(r_point.format())
    combined = PublicKey.combine_keys([r_point, p_point.multiply(challenge.to_bytes(32, "big"))])
    return bytes(combined.format())


def _keypair(secret: bytes) -> object:
    keypair = ffi.new("secp256k1_keypair *")
    if not lib.secp256k1_keypair_create(GLOBAL_CONTEXT.ctx, keypair, secret):
        raise NonceSigningError("not a valid secret key")
    return keypair


def sign_with_nonce(secret: bytes, nonce_secret: bytes, message: bytes) -> bytes:
    """The BIP340 signature of `message` whose R is x(nonce_secret*G); verified before return."""
    if len(secret) != 32 or len(nonce_secret) != 32:
        raise NonceSigningError("secret and nonce secret are 32 bytes each")

    # cffi's callback decorator is untyped (no stubs for coincurve's cffi module).
    @ffi.callback(  # type: ignore[untyped-decorator]
        "int(unsigned char *, unsigned char *, size_t, unsigned char *,"
        " unsigned char *, unsigned char *, size_t, void *)"
    )
    def nonce_function(
        nonce32: object,
        _message: object,
        _length: int,
        _key32: object,
        _xonly32: object,
        _algo: object,
        _algolen: int,
        _data: object,
    ) -> int:
        ffi.memmove(nonce32, nonce_secret, 32)
        return 1

    params = ffi.new("secp256k1_schnorrsig_extraparams *")
    params.magic = _EXTRAPARAMS_MAGIC
    params.noncefp = nonce_function
    params.ndata = ffi.NULL
    signature = ffi.new("unsigned char[64]")
    keypair = _keypair(secret)
    if not lib.secp256k1_schnorrsig_sign_custom(
        GLOBAL_CONTEXT.ctx, signature, message, len(message), keypair, params
    ):
        raise NonceSigningError("libsecp256k1 refused to sign (invalid nonce?)")
    result = bytes(ffi.buffer(signature))
    public_key = bytes(PublicKeyXOnly.from_secret(secret).format())
    if result[:32] != nonce_point(nonce_secret) or not verify(public_key, message, result):
        raise NonceSigningError("signature with the committed nonce did not verify")
    return result
