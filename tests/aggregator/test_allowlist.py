"""The allowlist: strict file validation, lookups in the right order, reloads that keep nodes in."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grpc
import pytest
import structlog
from structlog.testing import capture_logs

from aggregator.allowlist import (
    BAD_SIGNATURE,
    Allowlist,
    AllowlistHolder,
    NodePermit,
    Verdict,
    check_signed_observation,
    load_allowlist,
    parse_allowlist,
)
from common.errors import ConfigError, PermissionDeniedError, UnauthenticatedError
from common.observation import ObservationPayload, sign_observation
from common.schnorr import SigningKey
from oracle_node.keys import allowlist_entry, keygen, keygen_report

KEYS = [SigningKey(bytes([index]) * 32) for index in range(1, 5)]
# BIP340 vector 5: 32 bytes that are not the x of any curve point.
NOT_ON_CURVE = "eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34"


def entry(node_id: str, key: SigningKey, *exchanges: str) -> str:
    return allowlist_entry(key.public_key, node_id=node_id, exchanges=exchanges)


def three_nodes() -> str:
    return "\n".join(
        [
            "# the shipped three-node layout",
            entry("oracle-node-1", KEYS[0], "binance"),
            entry("oracle-node-2", KEYS[1], "coinbase"),
            entry("oracle-node-3", KEYS[2], "kraken"),
        ]
    )


def write(tmp_path: Path, text: str, name: str = "allowlist.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_the_three_node_file_loads(tmp_path: Path) -> None:
    allowlist = load_allowlist(write(tmp_path, three_nodes()))
    assert allowlist.node_ids == ("oracle-node-1", "oracle-node-2", "oracle-node-3")
    assert allowlist.get("oracle-node-2") == NodePermit(
        "oracle-node-2", KEYS[1].public_key, frozenset({"coinbase"})
    )


def test_uppercase_hex_is_accepted_and_a_node_may_report_several_exchanges() -> None:
    document = tomllib.loads(
        entry("multi", KEYS[0], "binance", "kraken").replace(
            KEYS[0].public_key.hex(), KEYS[0].public_key.hex().upper()
        )
    )
    allowlist = parse_allowlist(document, source="test")
    assert allowlist.authorize("multi", KEYS[0].public_key, "kraken") is Verdict.ALLOWED
    assert allowlist.authorize("multi", KEYS[0].public_key, "binance") is Verdict.ALLOWED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "nodes: required"),
        ("nodes = []", "empty allowlist"),
        ("[[nodes]]\nid = 'a'\nexchanges = ['binance']", "nodes[0].public_key: required"),
        (
            f"[[nodes]]\nid = 'a'\npublic_key = '{'ab' * 31}'\nexchanges = ['binance']",
            "nodes[0].public_key: expected 64 hex digits",
        ),
        (
            f"[[nodes]]\nid = 'a'\npublic_key = '{'zz' * 32}'\nexchanges = ['binance']",
            "nodes[0].public_key: expected 64 hex digits",
        ),
        (
            f"[[nodes]]\nid = 'a'\npublic_key = '{NOT_ON_CURVE}'\nexchanges = ['binance']",
            "is not a valid BIP340 x-only public key",
        ),
        (
            f"[[nodes]]\nid = 'a'\npublic_key = '{'00' * 32}'\nexchanges = ['binance']",
            "not a valid BIP340",
        ),
        (
            f"[[nodes]]\nid = 'has space'\npublic_key = '{KEYS[0].public_key.hex()}'\n"
            "exchanges = ['binance']",
            "nodes[0].id: 'has space': use letters",
        ),
        (
            f"[[nodes]]\nid = '{'n' * 65}'\npublic_key = '{KEYS[0].public_key.hex()}'\n"
            "exchanges = ['binance']",
            "nodes[0].id: must be 1 to 64 characters",
        ),
        (entry("<node id from the node's config>", KEYS[0], "binance"), "nodes[0].id"),
        (entry("a", KEYS[0], "bitstamp"), "nodes[0].exchanges: unknown exchange 'bitstamp'"),
        (entry("a", KEYS[0], "<exchange this node reports>"), "unknown exchange"),
        (entry("a", KEYS[0], "kraken", "kraken"), "listed twice"),
        (entry("a", KEYS[0]).replace('["<exchange this node reports>"]', "[]"), "at least one"),
        (
            f"[[nodes]]\nid = 'a'\npublic_key = '{KEYS[0].public_key.hex()}'\n"
            "exchanges = 'binance'",
            "nodes[0].exchanges: Input should be a valid tuple",
        ),
        (
            f"[[nodes]]\nid = 7\npublic_key = '{KEYS[0].public_key.hex()}'\n"
            "exchanges = ['binance']",
            "nodes[0].id: Input should be a valid string",
        ),
        (
            entry("a", KEYS[0], "binance") + "exchnages = ['kraken']\n",
            "nodes[0].exchnages: unknown",
        ),
        ("version = 2\n" + entry("a", KEYS[0], "binance"), "version: unknown key"),
        (entry("a", KEYS[0], "binance") + entry("a", KEYS[1], "kraken"), "'a' is listed twice"),
        (
            entry("a", KEYS[0], "binance") + entry("b", KEYS[0], "kraken"),
            "'a' and 'b' share one public key",
        ),
    ],
)
def test_a_bad_file_is_refused_with_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_allowlist(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_several_problems_are_counted_on_the_one_line(tmp_path: Path) -> None:
    text = "[[nodes]]\nid = ''\npublic_key = 'x'\nexchanges = []\n"
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.id: .*\(and 2 more problems\)"):
        load_allowlist(write(tmp_path, text))


def test_file_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allowlist file not found"):
        load_allowlist(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_allowlist(write(tmp_path, "[[nodes]\n"))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_allowlist(latin1)
    with pytest.raises(ConfigError, match="regular file"):
        load_allowlist(tmp_path)


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_an_allowlist_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, three_nodes())
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 644"):
        load_allowlist(path)


def test_authorize_tells_the_three_refusals_apart(tmp_path: Path) -> None:
    allowlist = load_allowlist(write(tmp_path, three_nodes()))
    key = KEYS[0].public_key
    assert allowlist.authorize("oracle-node-1", key, "binance") is Verdict.ALLOWED
    assert allowlist.authorize("stranger", key, "binance") is Verdict.UNKNOWN_NODE
    assert allowlist.authorize("oracle-node-1", KEYS[1].public_key, "binance") is Verdict.WRONG_KEY
    assert allowlist.authorize("oracle-node-1", b"", "binance") is Verdict.WRONG_KEY
    assert allowlist.authorize("oracle-node-1", key, "coinbase") is Verdict.EXCHANGE_NOT_ALLOWED


def test_verdict_errors_carry_the_grpc_status_and_reason() -> None:
    unknown = Verdict.UNKNOWN_NODE.error("x", "binance")
    wrong = Verdict.WRONG_KEY.error("x", "binance")
    denied = Verdict.EXCHANGE_NOT_ALLOWED.error("x", "kraken")
    assert isinstance(unknown, UnauthenticatedError)
    assert unknown.status is grpc.StatusCode.UNAUTHENTICATED
    assert unknown.reason == "unknown_node"
    assert isinstance(wrong, UnauthenticatedError)
    assert wrong.reason == "wrong_key"
    assert isinstance(denied, PermissionDeniedError)
    assert denied.status is grpc.StatusCode.PERMISSION_DENIED
    assert "'kraken'" in str(denied)
    with pytest.raises(ValueError, match="no error"):
        Verdict.ALLOWED.error("x", "binance")


def _payload(node_id: str, exchange: str, price_e8: int = 9_731_245_000_000) -> ObservationPayload:
    return ObservationPayload(
        node_id, exchange, "BTC", "USD", "", 1_764_547_200, price_e8, simulated=False
    )


def test_check_signed_observation_authenticates_before_it_authorizes(tmp_path: Path) -> None:
    allowlist = load_allowlist(write(tmp_path, three_nodes()))
    honest = _payload("oracle-node-1", "binance")
    permit = check_signed_observation(
        allowlist, honest, KEYS[0].public_key, sign_observation(KEYS[0], honest)
    )
    assert permit.node_id == "oracle-node-1"

    # An honest node's id with a forged signature for another exchange: the forger learns
    # nothing about permissions; it is simply not authenticated.
    other_exchange = _payload("oracle-node-1", "coinbase")
    with pytest.raises(UnauthenticatedError) as caught:
        check_signed_observation(allowlist, other_exchange, KEYS[0].public_key, bytes(64))
    assert caught.value.reason == BAD_SIGNATURE

    # The same request, genuinely signed by node 1: authenticated, then denied.
    with pytest.raises(PermissionDeniedError) as denied:
        check_signed_observation(
            allowlist,
            other_exchange,
            KEYS[0].public_key,
            sign_observation(KEYS[0], other_exchange),
        )
    assert denied.value.reason == "exchange_not_allowed"

    # A valid signature by a key that is not on the allowlist.
    with pytest.raises(UnauthenticatedError) as wrong:
        check_signed_observation(
            allowlist, honest, KEYS[3].public_key, sign_observation(KEYS[3], honest)
        )
    assert wrong.value.reason == "wrong_key"

    # A signature over a different price than the one presented.
    with pytest.raises(UnauthenticatedError) as moved:
        check_signed_observation(
            allowlist,
            _payload("oracle-node-1", "binance", price_e8=1_000_000_000_000_000),
            KEYS[0].public_key,
            sign_observation(KEYS[0], honest),
        )
    assert moved.value.reason == BAD_SIGNATURE


def test_allowlist_refuses_duplicates_built_in_code() -> None:
    permit = NodePermit("a", KEYS[0].public_key, frozenset({"binance"}))
    with pytest.raises(ValueError, match="twice"):
        Allowlist([permit, permit])
    with pytest.raises(ValueError, match="shares"):
        Allowlist([permit, NodePermit("b", KEYS[0].public_key, frozenset({"kraken"}))])


def test_reload_swaps_in_a_good_file_and_reports_the_changes(tmp_path: Path) -> None:
    path = write(tmp_path, three_nodes())
    holder = AllowlistHolder.load(path)
    before = holder.current
    path.write_text(
        "\n".join(
            [
                entry("oracle-node-1", KEYS[0], "binance", "kraken"),
                entry("oracle-node-2", KEYS[1], "coinbase"),
                entry("oracle-node-4", KEYS[3], "kraken"),
            ]
        )
    )
    with capture_logs() as logs:
        result = holder.reload()
    assert result.applied
    assert result.added == ("oracle-node-4",)
    assert result.removed == ("oracle-node-3",)
    assert result.changed == ("oracle-node-1",)
    assert holder.current is not before
    assert holder.current.authorize("oracle-node-4", KEYS[3].public_key, "kraken").allowed
    assert "oracle-node-3" not in holder.current
    assert "oracle-node-3" in before  # a request holding the old list keeps a consistent view
    assert logs[0]["event"] == "allowlist_reloaded"


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_text("[[nodes]\n"),
        lambda path: path.write_text(entry("a", KEYS[0], "bitstamp")),
        lambda path: path.write_text(""),
        lambda path: path.unlink(),
        lambda path: path.chmod(0o666),
    ],
    ids=["bad-toml", "unknown-exchange", "empty", "deleted", "world-writable"],
)
def test_a_bad_reload_keeps_the_old_allowlist_and_says_why(tmp_path: Path, damage: object) -> None:
    path = write(tmp_path, three_nodes())
    holder = AllowlistHolder.load(path)
    before = holder.current
    damage(path)  # type: ignore[operator]
    with capture_logs() as logs:
        result = holder.reload()
    assert not result.applied
    assert "the old one stays" in result.message
    assert str(path) in result.message
    assert holder.current is before
    assert holder.current.authorize("oracle-node-1", KEYS[0].public_key, "binance").allowed
    assert logs[0]["event"] == "allowlist_reload_refused"
    assert logs[0]["log_level"] == "error"


def test_a_bad_file_at_startup_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        AllowlistHolder.load(write(tmp_path, "nodes = []"))


def test_keygen_prints_an_entry_the_allowlist_accepts_once_filled_in(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "node-1.key"
    public_key = keygen(key_path)
    assert (key_path.stat().st_mode & 0o777) == 0o600

    filled = keygen_report(key_path, public_key, node_id="oracle-node-1", exchanges=["binance"])
    assert f"public key: {public_key.hex()}" in filled
    assert "placeholders" not in filled
    pasted = filled.rsplit("\n\n", 1)[1]
    allowlist = load_allowlist(write(tmp_path, pasted))
    assert allowlist.authorize("oracle-node-1", public_key, "binance").allowed

    # Without an id and exchange the entry has placeholders, which the allowlist refuses.
    bare = keygen_report(key_path, public_key)
    assert "replace the <...> placeholders" in bare
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.id"):
        load_allowlist(write(tmp_path, bare.rsplit("\n\n", 1)[1], name="bare.toml"))


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    key_path = tmp_path / "node.key"
    keygen(key_path)
    before = key_path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        keygen(key_path)
    assert key_path.read_bytes() == before


@pytest.fixture(autouse=True)
def _fresh_structlog() -> None:
    structlog.reset_defaults()
