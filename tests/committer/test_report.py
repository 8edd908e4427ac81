"""Round reports: canonical bytes, signature, decoding, and the re-check from node keys."""

from __future__ import annotations

import pytest

from committer.audit import audit_round
from committer.report import (
    ReportError,
    decode_report,
    encode_report,
    facts_from_round,
    load_signed_report,
    report_digest,
    sign_report,
    verify_report_signature,
)
from common.proto import oracle_pb2
from common.schnorr import SigningKey, verify
from tests.committer.rounds import ALLOWLIST, BASE_MINUTE, make_round

ORACLE = SigningKey(bytes.fromhex("42" * 32))


def test_report_round_trips_and_verifies() -> None:
    facts = facts_from_round(make_round(BASE_MINUTE))
    report = sign_report(ORACLE, facts)
    assert report.digest == report_digest(report.encoding)
    assert verify(ORACLE.public_key, report.digest, report.signature)
    assert verify_report_signature(report.encoding, report.signature, ORACLE.public_key)
    decoded, key = decode_report(report.encoding)
    assert decoded == facts
    assert key == ORACLE.public_key
    assert load_signed_report(report.encoding, report.signature) == report


def test_same_round_same_bytes_whatever_changes_after_close() -> None:
    first = make_round(BASE_MINUTE)
    later = oracle_pb2.Round()
    later.CopyFrom(first)
    later.late_reports = 3
    later.message = "another summary"
    assert encode_report(facts_from_round(first), ORACLE.public_key) == encode_report(
        facts_from_round(later), ORACLE.public_key
    )


def test_every_signed_field_changes_the_bytes() -> None:
    base = encode_report(facts_from_round(make_round(BASE_MINUTE)), ORACLE.public_key)
    for mutate in (
        lambda r: setattr(r, "price_e8", r.price_e8 + 1),
        lambda r: setattr(r, "confidence_e8", r.confidence_e8 + 1),
        lambda r: setattr(r, "status", oracle_pb2.PRICE_STATUS_DEGRADED),
        lambda r: setattr(r, "simulated", True),
        lambda r: setattr(r.inputs[0].observations[0], "price_e8", 1),
        lambda r: setattr(r.inputs[1], "source", "bitstamp"),
    ):
        changed = make_round(BASE_MINUTE)
        mutate(changed)
        assert encode_report(facts_from_round(changed), ORACLE.public_key) != base


def test_signature_by_another_key_or_over_other_bytes_fails() -> None:
    report = sign_report(ORACLE, facts_from_round(make_round(BASE_MINUTE)))
    other = SigningKey.generate()
    assert not verify_report_signature(report.encoding, report.signature, other.public_key)
    tampered = bytearray(report.encoding)
    tampered[-1] ^= 1
    assert not verify_report_signature(bytes(tampered), report.signature, ORACLE.public_key)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],
        lambda b: b + b"\x00",
        lambda b: b"x" + b[1:],
        lambda b: b[:25] + b"\x02" + b[26:],
    ],
    ids=["truncated", "trailing", "domain", "version"],
)
def test_non_canonical_bytes_are_refused(damage) -> None:
    encoding = encode_report(facts_from_round(make_round(BASE_MINUTE)), ORACLE.public_key)
    with pytest.raises(ReportError):
        decode_report(damage(encoding))


def test_open_or_malformed_rounds_are_not_reported() -> None:
    open_round = make_round(BASE_MINUTE)
    open_round.closed = False
    with pytest.raises(ReportError, match="not closed"):
        facts_from_round(open_round)
    odd = make_round(BASE_MINUTE)
    odd.minute += 7
    with pytest.raises(ReportError, match="multiple of 60"):
        facts_from_round(odd)
    half_signed = make_round(BASE_MINUTE)
    half_signed.inputs[0].observations[0].public_key = b""
    with pytest.raises(ReportError, match="signature needs"):
        facts_from_round(half_signed)


def test_audit_passes_an_honest_round_with_the_node_keys() -> None:
    audit = audit_round(facts_from_round(make_round(BASE_MINUTE)), allowlist=ALLOWLIST)
    assert audit.ok, audit.problems
    assert audit.signatures_checked == 3


def test_audit_names_a_price_the_node_did_not_sign() -> None:
    round_ = make_round(BASE_MINUTE)
    round_.inputs[2].observations[0].price_e8 += 1
    audit = audit_round(facts_from_round(round_), allowlist=ALLOWLIST)
    assert not audit.ok
    assert any("kraken/oracle-node-3: node signature does not verify" in p for p in audit.problems)


def test_audit_names_a_key_not_on_the_list_and_a_wrong_mean() -> None:
    round_ = make_round(BASE_MINUTE)
    round_.price_e8 += 10
    allowlist = dict(ALLOWLIST)
    allowlist["oracle-node-1"] = SigningKey.generate().public_key
    audit = audit_round(facts_from_round(round_), allowlist=allowlist)
    assert any("not the listed key" in p for p in audit.problems)
    assert any("not the mean" in p for p in audit.problems)


def test_audit_of_an_unknown_round_and_of_a_simulated_one() -> None:
    unknown = facts_from_round(make_round(BASE_MINUTE, status=oracle_pb2.PRICE_STATUS_UNKNOWN))
    assert audit_round(unknown).ok
    simulated = make_round(BASE_MINUTE, simulated=True)
    assert audit_round(facts_from_round(simulated), allowlist=ALLOWLIST).ok
    # The simulated flag is signed by the nodes: a simulated round passed off as real fails.
    simulated.simulated = False
    assert not audit_round(facts_from_round(simulated), allowlist=ALLOWLIST).ok
