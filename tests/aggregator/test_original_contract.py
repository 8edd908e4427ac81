"""A client generated from the original contract works unchanged against this aggregator."""

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

# An original, unsigned client works only with --allow-unsigned (issue 11).
from aggregator.config import AggregatorConfig, AuthConfig
from aggregator.server import create_server
from common.timeutil import minute_floor

HERE = Path(__file__).parent / "original_contract"
ORIGINAL_PROTO = Path(__file__).parents[1] / "fixtures" / "original_contract" / "oracle.proto"


@pytest.fixture(scope="module")
def original_bindings(tmp_path_factory) -> Path:
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("original")
    shutil.copy(ORIGINAL_PROTO, out / "oracle.proto")
    shutil.copy(HERE / "original_client.py", out / "original_client.py")
    status = protoc.main(
        ["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}", "oracle.proto"]
    )
    assert status == 0
    return out


async def test_original_client_submits_and_reads_the_mean(original_bindings):
    server, port = create_server(
        AggregatorConfig(host="127.0.0.1", port=0, auth=AuthConfig(allow_unsigned=True))
    )
    await server.start()
    try:
        minute = minute_floor(time.time()) - 60
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(original_bindings / "original_client.py"),
            f"127.0.0.1:{port}",
            str(minute),
            cwd=original_bindings,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await server.stop(None)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout)
    assert result["version"] == "0.1.0"
    assert [row[:2] for row in result["submitted"]] == [[True, "Price data received"]] * 3
    assert result["success"]
    assert result["aggregated_price"] == pytest.approx(106160.42)
    assert result["data_points"] == 3
    assert sorted(row[:2] for row in result["recent"]) == [
        ["binance", "oracle-node-1"],
        ["coinbase", "oracle-node-2"],
        ["kraken", "oracle-node-3"],
    ]
    assert all(row[3] == minute for row in result["recent"])
    assert result["active_nodes"] == 3
