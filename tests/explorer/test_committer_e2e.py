"""The explorer with the real committer: a round's signed report, its Merkle proof and the
copyable command, run as a user would run it, ending in `committer verify`: VERIFIED: yes.

The fake aggregator serves simulated rounds (with real BIP340 node signatures) exactly as the
contract documents; the real `committer` process follows them over gRPC, signs each and anchors
each period (10 minutes here, settle 0, OP_RETURN, regtest PSBTs); the explorer asks the
committer over its gRPC contract. Nothing here knows the committer's internals.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from explorer.server import RunningExplorer, start_explorer
from tests.explorer.conftest import explorer_config, populated_fake, wait_for
from tests.explorer.fake_aggregator import FakeAggregator, start_fake

BIN = Path(sys.executable).parent
PERIOD = 600  # the committer's anchoring period in this test, seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _committer_config(directory: Path, aggregator_port: int, port: int) -> Path:
    path = directory / "committer.toml"
    path.write_text(
        f"""[committer]
aggregator = "127.0.0.1:{aggregator_port}"
port = {port}
http_port = {_free_port()}
database = "{directory}/committer.sqlite3"
key_file = "{directory}/keys/committer.key"
nonce_seed_file = "{directory}/keys/dlc-seed.key"
simulate = true
[dlc]
enabled = false
[anchor]
period_seconds = {PERIOD}
settle_seconds = 0
mode = "op_return"
anchor_key_file = "{directory}/keys/anchor.key"
psbt_dir = "{directory}/psbt"
[logging]
file = "{directory}/committer.log"
"""
    )
    return path


class Committed:
    def __init__(self, fake: FakeAggregator, explorer: RunningExplorer, key: str) -> None:
        self.fake = fake
        self.explorer = explorer
        self.oracle_key = key


@pytest.fixture
async def committed(tmp_path: Path) -> AsyncIterator[Committed]:
    now = time.time()
    fake = populated_fake(now)
    server, aggregator_port = await start_fake(fake)
    port = _free_port()
    config = _committer_config(tmp_path, aggregator_port, port)
    keygen = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "committer"), "keygen", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = keygen.stdout.split("oracle public key:")[1].split()[0]
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before the explorer
        [str(BIN / "committer"), "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    explorer = await start_explorer(
        explorer_config(aggregator_port, committer_target=f"127.0.0.1:{port}")
    )
    try:
        yield Committed(fake, explorer, key)
    finally:
        await explorer.stop()
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            process.kill()
        await server.stop(None)


async def _round(system: Committed, minute: int) -> dict[str, Any]:
    url = f"{system.explorer.url}/api/rounds/{minute}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


@pytest.mark.e2e
async def test_a_committed_round_verifies_with_the_command_the_page_gives(
    committed: Committed, tmp_path: Path
) -> None:
    minutes = sorted(committed.fake.rounds)
    old, newest = minutes[5], minutes[-1]
    state: dict[str, Any] = {}

    async def anchored() -> bool:
        state.update(await _round(committed, old))
        return state["anchor"]["state"] in ("committed", "anchored")

    await wait_for(anchored, within=90)
    anchor = state["anchor"]
    assert anchor["report"]["hex"]
    assert len(bytes.fromhex(anchor["report"]["signature"])) == 64
    assert anchor["oracle_public_key"] == committed.oracle_key
    assert anchor["txid"]
    assert anchor["network"] == "regtest"
    assert "SIMULATED" in anchor["detail"]
    assert "PSBT" in anchor["detail"]  # committed, not broadcast: said so
    # A round whose anchoring period (10 minutes here) has not ended: signed at most, never
    # "anchored" (checked unless the run straddles a period's end).
    period_end = (newest // PERIOD + 1) * PERIOD
    if period_end > time.time() + 1:
        assert (await _round(committed, newest))["anchor"]["state"] == "not_anchored"

    # The page's command, run as a user pastes it (curl, then committer verify).
    command = anchor["verify_command"]
    assert command.startswith("curl -sf http://127.0.0.1:")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the copyable command cannot be run as written")
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED: yes" in result.stdout
    assert "oracle signature verifies" in result.stdout
    assert "3 node signature(s) and the round's arithmetic check" in result.stdout
    assert "SIMULATED round" in result.stdout

    # The page shows the same, with the copy button.
    url = f"{committed.explorer.url}/rounds/{old}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        page = await response.text()
    assert 'id="verify-command"' in page
    assert anchor["txid"] in page
