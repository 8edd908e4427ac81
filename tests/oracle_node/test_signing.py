"""The node's key and signatures: keygen, the key file refused when others can read it, and
every submission signed over the canonical encoding (docs/signing.md) with the exact price."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.allowlist import load_allowlist
from common.observation import ObservationPayload, e8_to_double, verify_observation
from common.schnorr import load_key_file
from oracle_node import cli
from oracle_node.candle import Candle
from oracle_node.config import Overrides, load_config
from oracle_node.submitter import Observation, Submitter
from tests.oracle_node.aggregators import FakeAggregator
from tests.signing_helpers import key_for

T0 = 1_800_000_000 - 1_800_000_000 % 60


def test_keygen_writes_a_0600_key_and_prints_a_pasteable_entry(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "node.key"
    result = CliRunner().invoke(
        cli.main,
        ["keygen", "--out", str(out), "--node-id", "oracle-node-1", "--exchange", "binance"],
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = load_key_file(out)
    assert key.secret_bytes().hex() not in result.output  # the secret is never printed
    assert f"public key: {key.public_key.hex()}" in result.output
    # The printed entry is a valid allowlist as it stands.
    entry = result.output[result.output.index("[[nodes]]") :]
    allowlist_file = tmp_path / "allowlist.toml"
    allowlist_file.write_text(entry)
    allowlist = load_allowlist(allowlist_file)
    permit = allowlist.get("oracle-node-1")
    assert permit is not None
    assert permit.public_key == key.public_key
    assert permit.exchanges == {"binance"}


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    out = tmp_path / "node.key"
    assert CliRunner().invoke(cli.main, ["keygen", "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    result = CliRunner().invoke(cli.main, ["keygen", "--out", str(out)])
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output
    assert out.read_bytes() == before


def test_pubkey_prints_the_entry_of_an_existing_key(tmp_path: Path) -> None:
    out = tmp_path / "node.key"
    CliRunner().invoke(cli.main, ["keygen", "--out", str(out)])
    result = CliRunner().invoke(
        cli.main, ["pubkey", "--key-file", str(out), "--node-id", "n-1", "--exchange", "kraken"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith('[[nodes]]\nid = "n-1"\n')
    assert load_key_file(out).secret_bytes().hex() not in result.output


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_readable_by_others_is_refused_at_start(tmp_path: Path, mode: int) -> None:
    out = tmp_path / "node.key"
    CliRunner().invoke(cli.main, ["keygen", "--out", str(out)])
    secret = load_key_file(out).secret_bytes().hex()
    os.chmod(out, mode)
    for args in (["--check-config"], []):
        result = CliRunner().invoke(
            cli.main, ["--config", os.devnull, "--key-file", str(out), *args]
        )
        assert result.exit_code == 2
        assert f"{out}: key file mode is {mode:04o}" in result.output
        assert secret not in result.output


def test_the_config_names_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'[oracle]\nkey_file = "{tmp_path / "k.key"}"\n')
    assert load_config(path).key_file == tmp_path / "k.key"
    assert load_config(None, Overrides(key_file=str(tmp_path / "o.key"))).key_file == (
        tmp_path / "o.key"
    )


@pytest.fixture
async def aggregator() -> AsyncIterator[FakeAggregator]:
    fake = FakeAggregator()
    await fake.start()
    yield fake
    await fake.stop()


async def test_each_submission_is_signed_over_the_canonical_observation(
    aggregator: FakeAggregator,
) -> None:
    key = key_for("oracle-node-2")
    submitter = Submitter(
        f"127.0.0.1:{aggregator.port}", "oracle-node-2", call_timeout=1, signing_key=key
    )
    # More decimals than 8: rounded half to even, once, and that value is sent and signed.
    close = Decimal("100000.123456785")
    candle = Candle("coinbase", "BTC-USD", "USD", T0, close, close, close, close)
    try:
        submitter.enqueue(Observation(candle=candle, collected_at=T0 + 60.2))
        assert await submitter.flush() == 1
    finally:
        await submitter.close()
    (request,) = aggregator.servicer.received
    assert request.price_e8 == 10_000_012_345_678
    assert request.price == e8_to_double(request.price_e8)
    assert request.base == "BTC"
    assert request.public_key == key.public_key
    payload = ObservationPayload(
        "oracle-node-2", "coinbase", "BTC", "USD", "BTC-USD", T0, 10_000_012_345_678, False
    )
    assert verify_observation(key.public_key, payload, request.observation_signature)
    # The original text field carries the same signature, for an original aggregator's records.
    assert request.signature == request.observation_signature.hex()


async def test_without_a_key_the_exact_price_is_still_sent_unsigned(
    aggregator: FakeAggregator,
) -> None:
    submitter = Submitter(f"127.0.0.1:{aggregator.port}", "oracle-node-2", call_timeout=1)
    close = Decimal("97312.45")
    candle = Candle("kraken", "USDTUSD", "USD", T0, close, close, close, close, base="USDT")
    try:
        submitter.enqueue(Observation(candle=candle, collected_at=T0 + 60.2))
        assert await submitter.flush() == 1
    finally:
        await submitter.close()
    (request,) = aggregator.servicer.received
    assert (request.price_e8, request.base) == (9_731_245_000_000, "USDT")
    assert not request.observation_signature
    assert not request.public_key
    assert not request.HasField("signature")
