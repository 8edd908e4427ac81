"""The committer seam without a committer process: no committer, one that is down, the bundle."""

from __future__ import annotations

import time

from common.proto import committer_pb2, oracle_pb2
from explorer.anchors import CommitterClient, message_json, verify_command
from tests.explorer.conftest import close_system, make_system, populated_fake


async def test_without_a_committer_rounds_are_not_anchored_and_have_no_proof() -> None:
    now = time.time()
    system = await make_system(populated_fake(now), now)
    try:
        minute = sorted(system.fake.rounds)[0]
        async with system.http.get(f"{system.url}/api/rounds/{minute}/proof") as response:
            assert response.status == 404
            document = await response.json()
        assert "no committer is configured" in document["error"]["message"]
    finally:
        await close_system(system)


async def test_a_committer_that_is_down_leaves_the_round_page_working() -> None:
    now = time.time()
    down = CommitterClient("127.0.0.1:1", timeout=1.0)  # nothing listens there
    system = await make_system(populated_fake(now), now, anchors=down)
    try:
        minute = sorted(system.fake.rounds)[0]
        async with system.http.get(f"{system.url}/api/rounds/{minute}") as response:
            assert response.status == 200
            document = await response.json()
        assert document["anchor"]["state"] == "unavailable"
        assert "cannot reach the committer at 127.0.0.1:1" in document["anchor"]["detail"]
        assert document["inputs"]  # the round itself is all there
        async with system.http.get(f"{system.url}/rounds/{minute}") as response:
            assert response.status == 200
            assert "cannot reach the committer" in await response.text()
        async with system.http.get(f"{system.url}/api/rounds/{minute}/proof") as response:
            assert response.status == 503
    finally:
        await close_system(system)


def test_the_bundle_is_written_as_the_committer_writes_it() -> None:
    from committer.views import to_json  # the committer's own writer, as the reference

    proof = committer_pb2.InclusionProof(
        report=committer_pb2.RoundReport(
            minute=120,
            report=b"\x01\x02",
            signature=b"\xff" * 64,
            status=oracle_pb2.PRICE_STATUS_OK,
            round=oracle_pb2.Round(minute=120, expected_sources=["kraken"]),
        ),
        anchor=committer_pb2.Anchor(
            anchor_id=1,
            minutes=[60, 120],
            root=b"\x11" * 32,
            mode=committer_pb2.ANCHOR_MODE_TAPROOT,
        ),
        index=1,
        count=2,
        siblings=[b"\x22" * 32],
    )
    assert message_json(proof) == to_json(proof)
    assert message_json(proof)["anchor"]["mode"] == "ANCHOR_MODE_TAPROOT"
    assert message_json(proof)["siblings"] == ["22" * 32]


def test_the_verify_command_quotes_what_it_is_given() -> None:
    command = verify_command("http://127.0.0.1:8090", 120, "ab" * 32)
    assert command == (
        "curl -sf http://127.0.0.1:8090/api/rounds/120/proof -o proof-120.json && "
        f"committer verify proof-120.json --oracle-key {'ab' * 32}"
    )
    assert "'" in verify_command("http://host:1/$(x)", 60, "")
