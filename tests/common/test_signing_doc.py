"""docs/signing.md is right: every number in it is recomputed from the document itself.

The worked examples are parsed out of the markdown and checked twice: by a verifier written here
from the specification alone (hashlib for the tagged hash, struct for the layout, coincurve for
BIP340), and by the project's own `common.observation`. The document's reproduction snippet is
executed as printed. So neither the code nor the document can change without the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import struct
from pathlib import Path

import pytest
from coincurve import PrivateKey, PublicKeyXOnly

from common.observation import (
    ObservationPayload,
    encode_observation,
    observation_digest,
    sign_observation,
    verify_observation,
)
from common.schnorr import SigningKey

DOC = (Path(__file__).resolve().parents[2] / "docs" / "signing.md").read_text()
FIELDS = ("node_id", "exchange", "base", "quote", "symbol", "minute", "price_e8", "simulated")


def _section(title_prefix: str) -> str:
    match = re.search(rf"^### {re.escape(title_prefix)}.*?(?=^##)", DOC, flags=re.M | re.S)
    assert match, f"docs/signing.md has no section {title_prefix!r}"
    return match.group(0)


def _value(text: str) -> object:
    if text.startswith('"'):
        return json.loads(text)
    if text in ("true", "false"):
        return text == "true"
    if text.isdigit() and len(text) < 32:
        return int(text)
    return bytes.fromhex(text)


def _example(number: int) -> dict[str, object]:
    block = re.search(r"```text\n(.*?)```", _section(f"Example {number}:"), flags=re.S)
    assert block
    values: dict[str, object] = {}
    for line in block.group(1).splitlines():
        name, text = line.split(maxsplit=1)
        values[name] = _value(text.strip())
    return values


EXAMPLES = [_example(1), _example(2)]


def _doc_tag() -> str:
    match = re.search(r"with the tag\s+`([^`]+)`", DOC)
    assert match
    return match.group(1)


def _doc_key_phrase() -> bytes:
    match = re.search(r"SHA256 of the ASCII string\s+`([^`]+)`", DOC)
    assert match
    return match.group(1).encode("ascii")


# --- an independent implementation, written from the document's "Encoding" section only ---


def _independent_encoding(example: dict[str, object]) -> bytes:
    def text(name: str) -> bytes:
        data = str(example[name]).encode("ascii")
        return bytes([len(data)]) + data

    assert isinstance(example["minute"], int)
    assert isinstance(example["price_e8"], int)
    return (
        b"btcfi-oracle/observation"
        + b"\x01"
        + b"".join(text(name) for name in ("node_id", "exchange", "base", "quote", "symbol"))
        + struct.pack(
            ">QQB", example["minute"], example["price_e8"], int(bool(example["simulated"]))
        )
    )


def _independent_tagged_hash(tag: str, data: bytes) -> bytes:
    tag_hash = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_hash + tag_hash + data).digest()


@pytest.mark.parametrize("example", EXAMPLES, ids=["example1", "example2"])
def test_the_documented_numbers_follow_from_the_documented_rules(
    example: dict[str, object],
) -> None:
    secret, public_key = example["secret_key"], example["public_key"]
    assert isinstance(secret, bytes)
    assert isinstance(public_key, bytes)
    assert secret == hashlib.sha256(_doc_key_phrase()).digest()
    assert PublicKeyXOnly.from_secret(secret).format() == public_key

    tag = _doc_tag()
    assert example["tag_sha256"] == hashlib.sha256(tag.encode()).digest()
    encoding = _independent_encoding(example)
    assert encoding == example["encoding"]
    digest = _independent_tagged_hash(tag, encoding)
    assert digest == example["digest"]

    signature, aux = example["signature"], example["aux"]
    assert isinstance(signature, bytes)
    assert isinstance(aux, bytes)
    assert aux == bytes(32)
    assert PublicKeyXOnly(public_key).verify(signature, digest)
    assert PrivateKey(secret).sign_schnorr(digest, aux) == signature


@pytest.mark.parametrize("example", EXAMPLES, ids=["example1", "example2"])
def test_the_project_code_gives_the_documented_bytes_hash_and_signature(
    example: dict[str, object],
) -> None:
    payload = ObservationPayload(**{name: example[name] for name in FIELDS})  # type: ignore[arg-type]
    secret = example["secret_key"]
    assert isinstance(secret, bytes)
    assert encode_observation(payload) == example["encoding"]
    assert observation_digest(payload) == example["digest"]
    key = SigningKey(secret)
    assert key.public_key == example["public_key"]
    signature = sign_observation(key, payload, aux=bytes(32))
    assert signature == example["signature"]
    assert verify_observation(key.public_key, payload, signature)


def test_the_byte_table_is_the_encoding_field_by_field() -> None:
    example = EXAMPLES[0]
    rows = re.findall(
        r"^\| (\d+) \| (\d+) \| ([a-z0-9_ ]+) \| (.+?) \| `([0-9a-f]+)` \|$",
        _section("Example 1:"),
        flags=re.M,
    )
    assert len(rows) == 15
    offset, joined = 0, b""
    for start, size, field, shown, hex_bytes in rows:
        data = bytes.fromhex(hex_bytes)
        assert int(start) == offset, field
        assert int(size) == len(data), field
        if field in FIELDS:
            value = example[field]
            if isinstance(value, str):
                assert shown == f'`"{value}"`'
            elif isinstance(value, bool):
                assert shown == str(value).lower()
            else:
                assert shown.split()[0] == str(value)
        if field.endswith(" length"):
            assert int(shown) == data[0]
        offset += len(data)
        joined += data
    assert joined == example["encoding"]
    assert f"The {len(joined)} bytes of `encoding`" in DOC


def test_the_reproduction_snippet_runs_and_prints_ok() -> None:
    snippets = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
    assert len(snippets) == 1
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippets[0], "docs/signing.md", "exec"), {})  # noqa: S102 (our own doc)
    assert printed.getvalue() == "OK\n"
