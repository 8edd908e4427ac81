"""`committer verify`: check a report end to end without trusting the committer that served it.

Input: the proof bundle (`GET /v1/proofs/<minute>` or `GetInclusionProof` as JSON: the report,
its anchor and the Merkle proof) and the anchoring transaction (its hex, or its txid fetched from a
backend). Checked, each with a reason: the report's bytes are canonical and its digest right; the
oracle's signature (against a pinned key when given); every node signature and the arithmetic
(`committer.audit`, against a node key list when given); the Merkle proof leads to the anchor's
root and the root, period and count to its commitment; the transaction carries that commitment
(OP_RETURN, or a Taproot output of the internal key tweaked by it) and has the anchor's txid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from btclib.tx import Tx

from committer.anchoring import AnchorMode, find_commitment
from committer.audit import audit_round
from committer.merkle import MerkleError, MerkleProof, commitment, root_from_proof
from committer.report import ReportError, decode_report, report_digest, verify_report_signature


@dataclass(slots=True)
class Verdict:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.passed)

    def check(self, condition: bool, good: str, bad: str) -> bool:
        (self.passed if condition else self.failed).append(good if condition else bad)
        return condition

    def lines(self) -> list[str]:
        out = [f"  ok    {line}" for line in self.passed]
        out += [f"  FAIL  {line}" for line in self.failed]
        out += [f"  note  {line}" for line in self.notes]
        out.append(f"VERIFIED: {'yes' if self.ok else 'no'}")
        return out


def _hex(data: Mapping[str, Any], key: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"bundle: {key!r} missing")  # noqa: TRY004 (bad input, one error type)
    return bytes.fromhex(value)


def parse_bundle(text: str) -> dict[str, Any]:
    try:
        bundle = json.loads(text)
    except ValueError as error:
        raise ValueError(f"bundle is not JSON: {error}") from None
    if not isinstance(bundle, dict) or not isinstance(bundle.get("report"), dict):
        raise ValueError("bundle: expected the JSON of GET /v1/proofs/<minute>")  # noqa: TRY004
    return bundle


def verify_bundle(
    bundle: Mapping[str, Any],
    tx_hex: str | None,
    *,
    oracle_key: bytes | None = None,
    node_keys: Mapping[str, bytes] | None = None,
) -> Verdict:
    verdict = Verdict()
    report = bundle["report"]
    anchor = bundle.get("anchor") or {}
    try:
        encoding = _hex(report, "report")
        signature = _hex(report, "signature")
        facts, key = decode_report(encoding)
    except (ValueError, ReportError) as error:
        verdict.failed.append(f"report does not decode: {error}")
        return verdict
    verdict.passed.append(f"report of minute {facts.minute} decodes canonically")
    digest = report_digest(encoding)
    verdict.check(
        report.get("digest") in (None, digest.hex()),
        "report digest matches its bytes",
        "report digest does not match its bytes",
    )
    if oracle_key is not None:
        verdict.check(
            key == oracle_key,
            "report is by the pinned oracle key",
            f"report names oracle key {key.hex()}, not the pinned one",
        )
    else:
        verdict.notes.append(
            f"oracle key {key.hex()} taken from the report (pin it with --oracle-key)"
        )
    verdict.check(
        verify_report_signature(encoding, signature, key),
        "oracle signature verifies (BIP340, tag btcfi-oracle/round-report/v1)",
        "oracle signature does not verify",
    )
    audit = audit_round(facts, allowlist=node_keys)
    verdict.check(
        audit.ok,
        f"{audit.signatures_checked} node signature(s) and the round's arithmetic check",
        "node check failed: " + "; ".join(audit.problems),
    )
    verdict.notes.extend(audit.notes)
    if facts.simulated:
        verdict.notes.append("SIMULATED round: never a real market price")
    try:
        proof = MerkleProof(
            int(bundle["index"]),
            int(bundle["count"]),
            tuple(bytes.fromhex(s) for s in bundle["siblings"]),
        )
        root = root_from_proof(digest, proof)
    except (KeyError, ValueError, TypeError, MerkleError) as error:
        verdict.failed.append(f"Merkle proof unusable: {error}")
        return verdict
    if not verdict.check(
        root.hex() == anchor.get("root"),
        f"Merkle proof (leaf {proof.index} of {proof.count}) leads to the anchor's root",
        "Merkle proof does not lead to the anchor's root",
    ):
        return verdict
    period_start, period_end = int(anchor["period_start"]), int(anchor["period_end"])
    committed = commitment(period_start, period_end - period_start, proof.count, root)
    verdict.check(
        committed.hex() == anchor.get("commitment"),
        "commitment binds the root to the period and leaf count",
        "commitment does not match root, period and count",
    )
    verdict.check(
        period_end > facts.minute >= 0,
        "report's minute is before the anchored period's end",
        "report's minute is outside the anchored period",
    )
    if tx_hex is None:
        verdict.failed.append("no anchoring transaction given (--tx or --txid)")
        return verdict
    try:
        tx = Tx.parse(bytes.fromhex(tx_hex.strip()))
    except Exception as error:  # noqa: BLE001 (any parse failure is a failed check)
        verdict.failed.append(f"transaction does not parse: {error}")
        return verdict
    if anchor.get("txid"):
        verdict.check(
            tx.id.hex() == anchor["txid"],
            f"transaction is the anchor's ({anchor['txid']})",
            f"transaction {tx.id.hex()} is not the anchor's {anchor['txid']}",
        )
    internal_key = bytes.fromhex(anchor["internal_key"]) if anchor.get("internal_key") else None
    found = find_commitment(tx, committed, internal_key=internal_key)
    if (
        verdict.check(
            found is not None,
            "transaction commits to the commitment on chain",
            "transaction does not carry the commitment (OP_RETURN or Taproot tweak)",
        )
        and found is not None
    ):
        mode, index = found
        how = (
            "OP_RETURN output"
            if mode is AnchorMode.OP_RETURN
            else "Taproot output key = internal key tweaked by the commitment (BIP341)"
        )
        verdict.passed.append(f"commitment found in output {index}: {how}")
    if not tx.vin or not any(len(i.script_witness.stack) for i in tx.vin):
        verdict.notes.append("transaction is unsigned: it proves nothing until it is mined")
    return verdict
