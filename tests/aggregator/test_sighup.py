"""SIGHUP reloads the allowlist of a running aggregator process, validated first: a bad file keeps
the old allowlist and the log says why; keys never appear in the log."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import grpc
import pytest

from common.proto import oracle_pb2_grpc
from common.timeutil import minute_floor
from tests.aggregator.test_shutdown import free_port, wait_until_serving
from tests.signing_helpers import key_for, signed_request, write_allowlist


async def submit(stub: oracle_pb2_grpc.OracleServiceStub, node_id: str, minute: int) -> str:
    request = signed_request(
        key_for(node_id), node_id=node_id, exchange="kraken", minute=minute, price_e8=10**13
    )
    try:
        await stub.SubmitPrice(request, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def test_sighup_reloads_a_valid_allowlist_and_keeps_the_old_one_when_bad(
    tmp_path: Path,
) -> None:
    allowlist = write_allowlist(
        tmp_path / "allowlist.toml", [("oracle-node-1", key_for("oracle-node-1"), ("binance",))]
    )
    log = tmp_path / "aggregator.log"
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "aggregator", "--host", "127.0.0.1", "--port", str(port)),
        *("--allowlist", str(allowlist), "--log-file", str(log), "--config", "/dev/null"),
        *("--metrics-port", "0"),  # never the default 9150 a running system may hold
        cwd=tmp_path,
    )
    minute = minute_floor(time.time()) - 60
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            await wait_until_serving(stub, time.monotonic() + 20)
            assert await submit(stub, "oracle-node-3", minute) == "UNAUTHENTICATED"

            write_allowlist(
                allowlist,
                [
                    ("oracle-node-1", key_for("oracle-node-1"), ("binance",)),
                    ("oracle-node-3", key_for("oracle-node-3"), ("kraken",)),
                ],
            )
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while await submit(stub, "oracle-node-3", minute) != "OK":
                assert time.monotonic() < deadline, "the reloaded allowlist never took effect"
                await asyncio.sleep(0.1)

            allowlist.write_text('[[nodes]]\nid = "oracle-node-3"\npublic_key = "zz"\n')
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "allowlist_reload_refused" not in log.read_text():
                assert time.monotonic() < deadline, "the bad allowlist was not reported"
                await asyncio.sleep(0.1)
            # The old (second) allowlist stays in force.
            assert await submit(stub, "oracle-node-3", minute - 60) == "OK"
            assert process.returncode is None
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    reloaded = [event for event in events if event["event"] == "allowlist_reloaded"]
    assert reloaded[0]["added"] == ["oracle-node-3"]
    (refused,) = [event for event in events if event["event"] == "allowlist_reload_refused"]
    assert "public_key" in refused["reason"]
    assert refused["kept"] is True
    text = log.read_text()
    for node_id in ("oracle-node-1", "oracle-node-3"):
        assert key_for(node_id).secret_bytes().hex() not in text


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
