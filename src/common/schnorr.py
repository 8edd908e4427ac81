"""BIP340 Schnorr keys, tagged hashes, signing and verification, shared by every signing service.

Nodes sign observations, the committer signs round reports and DLC attestations: all of them use
BIP340 signatures over BIP340 tagged hashes, so every message is bound to its purpose (a signature
made for one tag never verifies as another). The curve arithmetic is libsecp256k1's (coincurve);
nothing here does field or scalar maths of its own. Secret keys never appear in a repr, a log line
or an error message, and key files are written 0600 and refused when group or others can read them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from functools import cache
from pathlib import Path
from typing import Final

from coincurve import PrivateKey, PublicKeyXOnly

from common.errors import ConfigError

SECRET_KEY_BYTES: Final = 32
PUBLIC_KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64


@cache
def _tag_prefix(tag: str) -> bytes:
    digest = hashlib.sha256(tag.encode()).digest()
    return digest + digest


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340's hash_tag(x) = SHA256(SHA256(tag) || SHA256(tag) || x)."""
    return hashlib.sha256(_tag_prefix(tag) + data).digest()


class SigningKey:
    """A secp256k1 secret key; its repr and str never show the secret."""

    __slots__ = ("_key", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_KEY_BYTES:
            raise ValueError(f"a secret key is {SECRET_KEY_BYTES} bytes")
        try:
            self._key = PrivateKey(secret)
        except ValueError as error:  # zero or not below the curve order
            raise ValueError("not a valid secp256k1 secret key") from error
        # The x-only public key (BIP340): 32 bytes, even y implied.
        self.public_key: bytes = PublicKeyXOnly.from_secret(secret).format()

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(PrivateKey().secret)

    def sign(self, message32: bytes, *, aux: bytes | None = None) -> bytes:
        """A BIP340 signature of a 32-byte message (a tagged hash).

        `aux` is BIP340's auxiliary randomness: fresh random bytes by default (the standard
        "synthetic nonce" advice); pass 32 fixed bytes only to reproduce a documented example.
        """
        if len(message32) != 32:
            raise ValueError("sign a 32-byte tagged hash, not raw data")
        randomness = os.urandom(32) if aux is None else aux
        return self._key.sign_schnorr(message32, randomness)

    def secret_bytes(self) -> bytes:
        """The raw secret, for writing a key file or a derivation; never log it."""
        return self._key.secret

    def __repr__(self) -> str:
        # getattr: a traceback that shows locals may repr a key whose __init__ failed half-way.
        public_key: bytes | None = getattr(self, "public_key", None)
        return f"SigningKey(public_key={public_key.hex() if public_key else 'unset'})"

    __str__ = __repr__


def is_valid_public_key(public_key: bytes) -> bool:
    """True when `public_key` is a BIP340 x-only key: 32 bytes, the x of a point on the curve.

    For validating configuration (an allowlist) up front, rather than at the first signature.
    """
    if len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        PublicKeyXOnly(public_key)
    except ValueError:
        return False
    return True


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid BIP340 signature of `message` by `public_key`.

    Malformed keys or signatures are a failed check, never an exception: a hostile caller
    controls all three.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        return bool(PublicKeyXOnly(public_key).verify(signature, message))
    except (ValueError, TypeError):
        return False


def write_key_file(path: Path, key: SigningKey) -> None:
    """Write `key` as hex to a new file created with mode 0600; an existing file is an error.

    A directory created for it is 0700: a listing of the key directory already tells which
    nodes and services hold keys, and nobody else needs it.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise ConfigError(f"{path}: a key file already exists; refusing to overwrite it") from error
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        stream.write(key.secret_bytes().hex() + "\n")


def load_key_file(path: Path) -> SigningKey:
    """Read a key file written by `write_key_file`.

    Refused when group or others may read or write it (as ssh refuses such a key), when it is
    not a regular file, or when it does not hold one valid secret key; the error names the file
    and never shows its content.
    """
    try:
        info = path.stat()
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: key file not found (create one with `keygen`)") from error
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: a key file must be a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"{path}: key file mode is {stat.S_IMODE(info.st_mode):04o}; group and others must "
            f"have no access (chmod 600 {path})"
        )
    if info.st_size > 256:
        raise ConfigError(f"{path}: not a key file (too large)")
    key = _parse_key_text(path.read_bytes())
    if key is None:
        # Raised here, after the parser's frame is gone: a traceback renderer that shows local
        # variables finds only the path, never the file's content.
        raise ConfigError(f"{path}: not a key file: expected {2 * SECRET_KEY_BYTES} hex digits")
    return key


def _parse_key_text(content: bytes) -> SigningKey | None:
    try:
        return SigningKey(bytes.fromhex(content.strip().decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return None
