"""A node's secret key never appears in its log, in an error message or in a traceback.

Everything that handles a key is driven through the project's real logging setup (structlog, JSON
lines to a file): key generation, loading from every kind of bad file, signing, and the errors
along the way, each logged with its traceback as the services do. Then the log file and every
exception text are searched for the secret, as hex (either case) and as raw bytes.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from common.errors import ConfigError
from common.logsetup import configure_logging, get_logger
from common.observation import ObservationPayload, sign_observation, verify_observation
from common.schnorr import SigningKey, load_key_file
from oracle_node.keys import keygen, keygen_report


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def _load_failure(path: Path) -> ConfigError:
    """The error loading `path` raises, from a frame whose only local is the path."""
    try:
        load_key_file(path)
    except ConfigError as error:
        return error
    raise AssertionError(f"{path} loaded")


def _with_locals(error: BaseException) -> str:
    # What a traceback renderer that shows local variables would print (ours does not, but
    # structlog's dict_tracebacks or a debugger would): loading a file must leave no secret in
    # any frame's locals either. (A function handed the secret as an argument has it as a local
    # by definition, so this check is for the paths where the library reads the secret itself.)
    return "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())


def _assert_absent(secret: bytes, texts: list[str]) -> None:
    forms = [secret.hex(), secret.hex().upper(), repr(secret)[2:-1][:40]]
    for text in texts:
        for form in forms:
            assert form not in text


def test_keys_never_reach_logs_errors_or_tracebacks(tmp_path: Path) -> None:
    log_file = tmp_path / "node.log"
    configure_logging("debug", log_file, service="oracle-node")
    log = get_logger(component="test")
    key_path = tmp_path / "keys" / "node.key"

    public_key = keygen(key_path)
    report = keygen_report(key_path, public_key, node_id="oracle-node-1", exchanges=["binance"])
    secret = bytes.fromhex(key_path.read_text().strip())
    key = load_key_file(key_path)
    assert key.public_key == public_key
    log.info("key_ready", key=key, public_key=public_key.hex(), report=report)
    log.info("key_fields", secret_key=secret.hex(), private=secret, seckey=key.secret_bytes())

    payload = ObservationPayload(
        "oracle-node-1",
        "binance",
        "BTC",
        "USDT",
        "BTCUSDT",
        1_764_547_200,
        9_731_245_000_000,
        False,
    )
    signature = sign_observation(key, payload)
    assert verify_observation(public_key, payload, signature)
    log.info("signed", key=key, signature=signature.hex(), payload=payload)

    texts: list[str] = [report, repr(key), str(key)]

    def bad_file(name: str, content: bytes, mode: int = 0o600) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(mode)
        return path

    secret_hex = secret.hex().encode()
    bad_files = [
        bad_file("readable.key", secret_hex + b"\n", 0o644),
        bad_file("group.key", secret_hex + b"\n", 0o640),
        bad_file("trailing.key", secret_hex + b"zz\n"),
        bad_file("twice.key", secret_hex * 2 + b"\n"),
        bad_file("short.key", secret_hex[:-2] + b"\n"),
        bad_file("binary.key", secret + b"\n"),
        bad_file("huge.key", secret_hex * 10),
    ]
    for path in bad_files:
        failure = _load_failure(path)
        texts.extend([*_texts(failure), _with_locals(failure)])
        log.error("key_load_failed", path=str(path), exc_info=failure)

    # Wrong-length and out-of-range secrets handed to the constructor directly.
    for candidate in (secret[:-1], secret + b"\x00", b"\xff" * 32):
        with pytest.raises(ValueError, match="secret key") as refused:
            SigningKey(candidate)
        texts.extend(_texts(refused.value))

    with pytest.raises(ValueError, match="32 bytes") as bad_aux:
        sign_observation(key, payload, aux=secret[:16])
    texts.extend(_texts(bad_aux.value))
    try:
        key.sign(b"not a digest")
    except ValueError as error:
        texts.extend(_texts(error))
        log.exception("sign_failed", key=key)

    with pytest.raises(ConfigError) as exists:
        keygen(key_path)
    texts.extend(_texts(exists.value))

    written = log_file.read_text()
    assert "key_load_failed" in written
    assert "Traceback" in written
    assert public_key.hex() in written
    assert "<redacted>" in written
    texts.append(written)
    _assert_absent(secret, texts)
