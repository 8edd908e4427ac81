"""docs/committer.md's worked example, recomputed from the document itself."""

from __future__ import annotations

import re
from pathlib import Path

from committer.audit import audit_round
from committer.bitcoin import Network, address, op_return_script, output_key, p2tr_script
from committer.merkle import commitment, merkle_root
from committer.report import decode_report, facts_from_round, report_digest, sign_report
from common.observation import ObservationPayload, verify_observation
from common.proto import oracle_pb2
from common.schnorr import SigningKey, verify

DOC = Path(__file__).resolve().parents[2] / "docs" / "committer.md"


def example() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8").split("## Worked example", 1)[1]
    block = re.search(r"```text\n(.*?)```", text, flags=re.DOTALL)
    assert block is not None
    return dict(line.split(": ", 1) for line in block.group(1).strip().splitlines())


def test_the_documented_report_is_reproduced_from_its_inputs() -> None:
    values = example()
    node = SigningKey(bytes.fromhex("11" * 32))
    oracle = SigningKey(bytes.fromhex("42" * 32))
    assert node.public_key.hex() == values["node_public_key"]
    assert oracle.public_key.hex() == values["oracle_public_key"]
    minute, price = int(values["minute"]), int(values["price_e8"])
    payload = ObservationPayload(
        values["node_id"],
        values["exchange"],
        "BTC",
        values["quote"],
        values["symbol"],
        minute,
        price,
        False,
    )
    assert verify_observation(node.public_key, payload, bytes.fromhex(values["node_signature"]))
    observation = oracle_pb2.NodeObservation(
        node_id=values["node_id"],
        price_e8=price,
        quote=values["quote"],
        symbol=values["symbol"],
        received_at_ms=int(values["received_at_ms"]),
        signature=bytes.fromhex(values["node_signature"]),
        public_key=node.public_key,
    )
    round_ = oracle_pb2.Round(
        minute=minute,
        status=int(values["status"]),
        method=int(values["method"]),
        close_reason=int(values["close_reason"]),
        price_e8=price,
        closed=True,
        closed_at_ms=int(values["closed_at_ms"]),
        inputs=[
            oracle_pb2.RoundInput(
                source=values["exchange"],
                price_e8=price,
                quote=values["quote"],
                usd_price_e8=price,
                minute=minute,
                observations=[observation],
            )
        ],
    )
    report = sign_report(oracle, facts_from_round(round_), aux=bytes(32))
    assert report.encoding.hex() == values["report"]
    assert report.digest.hex() == values["digest"]
    assert report.signature.hex() == values["oracle_signature"]


def test_the_documented_bytes_verify_and_commit() -> None:
    values = example()
    encoding = bytes.fromhex(values["report"])
    facts, key = decode_report(encoding)
    assert key.hex() == values["oracle_public_key"]
    assert report_digest(encoding).hex() == values["digest"]
    assert verify(key, report_digest(encoding), bytes.fromhex(values["oracle_signature"]))
    assert audit_round(facts).ok
    root = merkle_root([report_digest(encoding)])
    assert root.hex() == values["merkle_root"]
    committed = commitment(int(values["period_start"]), 3600, 1, root)
    assert committed.hex() == values["commitment"]
    assert op_return_script(committed).hex() == values["op_return_script"]
    internal = bytes.fromhex(values["anchor_internal_key"])
    assert internal == SigningKey(bytes.fromhex("77" * 32)).public_key
    script = p2tr_script(output_key(internal, committed))
    assert script.hex() == values["taproot_script"]
    assert address(script, Network.REGTEST) == values["taproot_address_regtest"]
