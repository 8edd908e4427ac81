"""BIP340 through the project's own code: the official vectors, tags, key files and redaction."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.schnorr import SigningKey, load_key_file, tagged_hash, verify, write_key_file

VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "bitcoin" / "bip340_test_vectors.csv"


def _rows() -> list[dict[str, str]]:
    with VECTORS.open(newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.parametrize("row", _rows(), ids=lambda row: f"vector{row['index']}")
def test_bip340_vectors_verify_as_the_bip_says(row: dict[str, str]) -> None:
    expected = row["verification result"] == "TRUE"
    assert (
        verify(
            bytes.fromhex(row["public key"]),
            bytes.fromhex(row["message"]),
            bytes.fromhex(row["signature"]),
        )
        is expected
    )


@pytest.mark.parametrize(
    "row",
    [row for row in _rows() if row["secret key"] and len(row["message"]) == 64],
    ids=lambda row: f"vector{row['index']}",
)
def test_bip340_signing_vectors_are_reproduced(row: dict[str, str]) -> None:
    key = SigningKey(bytes.fromhex(row["secret key"]))
    assert key.public_key.hex().upper() == row["public key"]
    signature = key.sign(bytes.fromhex(row["message"]), aux=bytes.fromhex(row["aux_rand"]))
    assert signature.hex().upper() == row["signature"]


def test_tagged_hash_binds_the_tag() -> None:
    key = SigningKey.generate()
    message = tagged_hash("oracle/test/v1", b"payload")
    signature = key.sign(message)
    assert verify(key.public_key, message, signature)
    assert not verify(key.public_key, tagged_hash("oracle/other/v1", b"payload"), signature)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [(b"", b""), (b"\x00" * 32, b"\x00" * 64), (b"\xff" * 32, b"\x01" * 64), (b"\x02" * 33, b"")],
)
def test_malformed_keys_and_signatures_fail_without_raising(
    public_key: bytes, signature: bytes
) -> None:
    assert verify(public_key, b"\x00" * 32, signature) is False


def test_key_file_is_written_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    key = SigningKey.generate()
    write_key_file(path, key)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key_file(path).public_key == key.public_key
    with pytest.raises(ConfigError, match="already exists"):
        write_key_file(path, SigningKey.generate())


def test_a_key_directory_it_creates_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    write_key_file(path, SigningKey.generate())
    assert path.parent.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, SigningKey.generate())
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key_file(path)


@pytest.mark.parametrize(
    "content", [b"", b"zz" * 32, b"00" * 32, b"ab" * 31, b"\xff\xfe" * 40, b"ff" * 32]
)
def test_bad_key_file_content_is_a_clear_error_that_hides_the_content(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not a key file") as caught:
        load_key_file(path)
    if content:
        assert content.decode("latin-1")[:16] not in str(caught.value)


def test_secret_never_appears_in_repr() -> None:
    key = SigningKey.generate()
    secret = key.secret_bytes().hex()
    assert secret not in repr(key)
    assert secret not in str(key)
    assert key.public_key.hex() in repr(key)
