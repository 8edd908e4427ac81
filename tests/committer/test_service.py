"""CommitterService over a real loopback gRPC server, and the HTTP endpoint, on port 0."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from committer.http import start_http
from committer.server import build
from committer.verify import verify_bundle
from common.proto import committer_pb2, committer_pb2_grpc
from tests.committer.conftest import keys, make_config
from tests.committer.rounds import ALLOWLIST, BASE_MINUTE, make_round

MATURITY = BASE_MINUTE + 3600


@pytest.fixture
async def served(tmp_path: Path):
    config = make_config(
        tmp_path,
        anchor={"funding_txid": "ef" * 32, "funding_amount": 100_000},
        committer={"simulate": False},
    )
    built = build(config, keys=keys())
    await built.server.start()
    http = await start_http(built.committer, "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    stub = committer_pb2_grpc.CommitterServiceStub(channel)
    yield built.committer, stub, http.sockets[0].getsockname()[1]
    await channel.close(None)
    http.close()
    await built.server.stop(None)
    built.committer.store.close()


async def http_get(port: int, target: str, method: str = "GET") -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, (json.loads(body) if body else {})


async def test_reports_announcements_attestations_and_proofs_over_grpc(served) -> None:
    committer, stub, _port = served
    committer.announce_due(MATURITY - 3600)
    rounds = [make_round(BASE_MINUTE + 60 * i) for i in range(60)]
    await committer.ingest(rounds, MATURITY + 2)
    report = await stub.GetRoundReport(committer_pb2.GetRoundReportRequest(minute=BASE_MINUTE))
    assert report.minute == BASE_MINUTE
    assert report.label == ""
    assert report.round.minute == BASE_MINUTE
    info = await stub.GetOracleInfo(committer_pb2.GetOracleInfoRequest())
    assert info.oracle_public_key == committer.keys.oracle.public_key
    assert info.signing_mode == committer_pb2.SIGNING_MODE_TAGGED
    assert info.anchor_funding_address.startswith("bc1p")
    listed = await stub.ListAnnouncements(committer_pb2.ListAnnouncementsRequest(limit=5))
    assert len(listed.announcements) == 5  # of the 24 announced a day ahead, oldest first
    event_id = listed.announcements[0].event_id
    assert listed.announcements[0].maturity_epoch == MATURITY
    attestation = await stub.GetAttestation(committer_pb2.GetEventRequest(event_id=event_id))
    assert attestation.round_minute == MATURITY - 60
    assert len(attestation.signatures) == 20
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetInclusionProof(committer_pb2.GetRoundReportRequest(minute=BASE_MINUTE))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await committer.anchor_due(MATURITY)
    proof = await stub.GetInclusionProof(
        committer_pb2.GetRoundReportRequest(minute=BASE_MINUTE + 600)
    )
    assert proof.count == 60
    anchors = await stub.ListAnchors(committer_pb2.ListAnchorsRequest())
    assert anchors.anchors[0].state == committer_pb2.ANCHOR_STATE_SIGNED


@pytest.mark.parametrize(
    ("call", "request_", "code"),
    [
        (
            "GetRoundReport",
            committer_pb2.GetRoundReportRequest(minute=7),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "GetRoundReport",
            committer_pb2.GetRoundReportRequest(minute=60),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "GetAnnouncement",
            committer_pb2.GetEventRequest(event_id=""),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "GetAttestation",
            committer_pb2.GetEventRequest(event_id="nope"),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "ListAnchors",
            committer_pb2.ListAnchorsRequest(limit=5000),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "ListAnnouncements",
            committer_pb2.ListAnnouncementsRequest(from_maturity=10, to_maturity=5),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_bad_requests_get_the_right_status_and_change_nothing(
    served, call, request_, code
) -> None:
    committer, stub, _port = served
    await committer.ingest([make_round(BASE_MINUTE)], MATURITY)
    before = committer.store.reports_from(0, 100)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, call)(request_)
    assert caught.value.code() == code
    assert committer.store.reports_from(0, 100) == before


async def test_stream_replays_then_follows_without_duplicates(served) -> None:
    committer, stub, _port = served
    await committer.ingest([make_round(BASE_MINUTE + 60 * i) for i in range(3)], MATURITY)
    stream = stub.StreamRoundReports(
        committer_pb2.StreamRoundReportsRequest(from_minute=BASE_MINUTE + 60)
    )
    seen = [(await stream.read()).minute, (await stream.read()).minute]
    await committer.ingest([make_round(BASE_MINUTE + 180)], MATURITY)
    seen.append((await stream.read()).minute)
    stream.cancel()
    assert seen == [BASE_MINUTE + 60, BASE_MINUTE + 120, BASE_MINUTE + 180]


async def test_http_serves_json_with_hex_tlvs_and_proof_bundles(served) -> None:
    committer, _stub, port = served
    committer.announce_due(MATURITY - 3600)
    await committer.ingest([make_round(MATURITY - 60)], MATURITY + 1)
    await committer.anchor_due(MATURITY + 3600)
    status, info = await http_get(port, "/v1/oracle")
    assert status == 200
    assert info["oracle_public_key"] == committer.keys.oracle.public_key.hex()
    status, listed = await http_get(port, "/v1/announcements?limit=10")
    event_id = listed["announcements"][0]["event_id"]
    assert listed["announcements"][0]["tlv"].startswith("fdd824")
    status, attestation = await http_get(port, f"/v1/attestations/{event_id}")
    assert status == 200
    assert attestation["tlv"].startswith("fdd868")
    assert attestation["outcome_value"] == 100_001
    status, bundle = await http_get(port, f"/v1/proofs/{MATURITY - 60}")
    assert status == 200
    assert verify_bundle(bundle, bundle["anchor"]["tx"], node_keys=ALLOWLIST).ok
    assert (await http_get(port, "/v1/reports/61"))[0] == 400
    assert (await http_get(port, "/v1/reports/60"))[0] == 404
    assert (await http_get(port, "/v1/nothing"))[0] == 404
    assert (await http_get(port, "/v1/oracle", method="POST"))[0] == 405
    status, body = await http_get(port, "/v1/oracle", method="HEAD")
    assert status == 200
    assert body == {}


async def test_simulate_mode_labels_every_report(tmp_path: Path) -> None:
    config = make_config(tmp_path, committer={"simulate": True})
    built = build(config, keys=keys())
    committer = built.committer
    try:
        assert await committer.ingest([make_round(BASE_MINUTE)], MATURITY) == []  # real: refused
        await committer.ingest([make_round(BASE_MINUTE, simulated=True)], MATURITY)
        message = committer.report_message(committer.store.report(BASE_MINUTE))
        assert message.simulated
        assert message.label == "SIMULATED"
        assert committer.announce_due(MATURITY - 3600)[0].startswith("SIMULATED-btcusd-")
        (anchor,) = await committer.anchor_due(MATURITY + 3600)
        assert anchor.state == committer_pb2.ANCHOR_STATE_SIGNED  # from the simulated funding
        assert committer.funding_address().startswith("bcrt1p")
        written = sorted((tmp_path / "psbt").iterdir())
        assert written[0].name.startswith("SIMULATED-anchor-000001-")
        assert written[0].read_text().startswith("cHNidP8")
    finally:
        committer.store.close()


async def test_stream_sends_a_late_report_that_fills_an_older_gap(served) -> None:
    committer, stub, _port = served
    await committer.ingest([make_round(BASE_MINUTE), make_round(BASE_MINUTE + 120)], MATURITY)
    stream = stub.StreamRoundReports(
        committer_pb2.StreamRoundReportsRequest(from_minute=BASE_MINUTE)
    )
    seen = [(await stream.read()).minute, (await stream.read()).minute]
    await committer.ingest([make_round(BASE_MINUTE + 60)], MATURITY)  # closed late, caught up
    seen.append((await stream.read()).minute)
    stream.cancel()
    assert seen == [BASE_MINUTE, BASE_MINUTE + 120, BASE_MINUTE + 60]
