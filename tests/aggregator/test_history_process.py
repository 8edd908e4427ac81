"""The real `aggregator` process on a temporary database: SIGKILL and restart, bad files, twins.

Each test starts `python -m aggregator` (what the `aggregator` console script runs) on a free
port with its own database, as an operator would, and talks to it over gRPC only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc
from common.timeutil import minute_floor

ROOT = Path(__file__).resolve().parents[2]
EXCHANGES = ("binance", "coinbase", "kraken")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    tmp_path: Path, database: Path, port: int, *extra: str, log: str = "aggregator.log"
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aggregator",
            "--config",
            "/dev/null",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db-path",
            str(database),
            "--log-file",
            str(tmp_path / log),
            "--allow-unsigned",  # the submissions below are unsigned
            "--metrics-port",
            "0",  # several aggregators at once: no fixed metrics port
            *extra,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_serving(
    stub: oracle_pb2_grpc.OracleServiceStub, process: subprocess.Popen[str]
) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await stub.HealthCheck(pb.HealthRequest(node_id="probe"), timeout=1)
        except grpc.aio.AioRpcError:
            if process.poll() is not None:
                _stdout, stderr = process.communicate()
                raise AssertionError(f"aggregator exited {process.returncode}: {stderr}") from None
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            return


def request(source: str, node: str, minute: int, price: float) -> pb.PriceRequest:
    return pb.PriceRequest(price=price, timestamp=minute, source=source, node_id=node)


def stored_observations(database: Path) -> set[tuple[str, str, int, Decimal]]:
    """Read straight from the file (read-only), as an operator's sqlite3 would."""
    connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT s.exchange, s.node_id, o.minute, o.price FROM observations o "
            "JOIN series s ON s.id = o.series_id"
        ).fetchall()
    finally:
        connection.close()
    return {(str(e), str(n), int(m), Decimal(str(p))) for e, n, m, p in rows}


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


async def test_sigkill_mid_minute_then_restart_loses_nothing(tmp_path: Path) -> None:
    database = tmp_path / "data" / "aggregator.sqlite3"
    port = free_port()
    minute = minute_floor(time.time()) - 60  # the last closed candle: it counts at once
    process = start(tmp_path, database, port)
    acknowledged: list[pb.PriceRequest] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            await wait_serving(stub, process)
            # The live minute: each exchange from two nodes.
            for index, source in enumerate(EXCHANGES):
                for copy in range(2):
                    sent = request(source, f"{source}-{copy}", minute, 100000.0 + index + copy)
                    assert (await stub.SubmitPrice(sent)).success
                    acknowledged.append(sent)
            aggregate = await stub.GetAggregatedPrice(pb.GetPriceRequest())
            assert aggregate.success
            assert aggregate.data_points == 3
            nodes = await stub.ListNodes(pb.ListNodesRequest())
            history = await stub.GetPriceHistory(pb.GetPriceHistoryRequest())
            # As GetRound serves them (with their late report counts), before the kill.
            rounds = {
                r.minute: await stub.GetRound(pb.GetRoundRequest(minute=r.minute))
                for r in history.rounds
            }
            assert minute in rounds  # all three reported: closed at once

            # Redelivered older minutes from many nodes, in flight when the process is killed:
            # they never change the live minute, and each one answered success must survive.
            async def redeliver(index: int) -> None:
                sent = request(EXCHANGES[index % 3], f"late-{index}", minute - 120, 99000.0 + index)
                try:
                    answer = await stub.SubmitPrice(sent, timeout=10)
                except grpc.aio.AioRpcError:
                    return  # not acknowledged: the node keeps it and redelivers
                if answer.success:
                    acknowledged.append(sent)

            calls = [asyncio.create_task(redeliver(i)) for i in range(120)]
            while len(acknowledged) < 6 + 20:  # noqa: ASYNC110 - waiting on the server's pace
                await asyncio.sleep(0.001)
            process.send_signal(signal.SIGKILL)
            await asyncio.gather(*calls)
        process.wait(10)
        assert process.returncode == -signal.SIGKILL
        in_flight = 6 + 120 - len(acknowledged)

        # Every acknowledged observation is in the file, exactly as sent.
        stored = stored_observations(database)
        for sent in acknowledged:
            assert (sent.source, sent.node_id, sent.timestamp, Decimal(repr(sent.price))) in stored

        process = start(tmp_path, database, port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            await wait_serving(stub, process)
            again = await stub.GetAggregatedPrice(pb.GetPriceRequest())
            # The exact fields (integer fixed-point) are the contract's "same aggregate"; the
            # double of a restored round is its price_e8 / 1e8 (see README, Durable history).
            for name in (
                "success",
                "aggregated_price_e8",
                "confidence_e8",
                "aggregate_minute",
                "data_points",
                "status",
                "final",
            ):
                assert getattr(again, name) == getattr(aggregate, name), name
            assert again.aggregated_price == pytest.approx(aggregate.aggregated_price, abs=1e-8)
            assert [(p.source, p.price_e8, p.node_id) for p in again.recent_prices] == [
                (p.source, p.price_e8, p.node_id) for p in aggregate.recent_prices
            ]
            # Idempotency and conflicts as before the kill, for every acknowledged observation.
            for sent in acknowledged:
                answer = await stub.SubmitPrice(sent)
                assert answer.success
                assert answer.duplicate, sent
            conflicting = request("kraken", "kraken-0", minute, 123456.0)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitPrice(conflicting)
            assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
            # The node table came back (node rows are flushed within a second of a commit).
            restored = await stub.ListNodes(pb.ListNodesRequest(limit=1000))
            restored_ids = {n.node_id for n in restored.nodes}
            assert {n.node_id for n in nodes.nodes} <= restored_ids
            # Closed rounds are exactly as they were.
            for round_minute, closed in rounds.items():
                served = await stub.GetRound(pb.GetRoundRequest(minute=round_minute))
                assert served == closed
            print(f"acknowledged {len(acknowledged)}, in flight at the kill {in_flight}")
    finally:
        kill(process)


async def test_a_corrupt_database_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    database = tmp_path / "aggregator.sqlite3"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE filler (x BLOB)")
    connection.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(500),)] * 200)
    connection.commit()
    connection.close()
    data = bytearray(database.read_bytes())
    data[100:4096] = os.urandom(3996)  # the schema page
    database.write_bytes(bytes(data))
    database.chmod(0o600)
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    process = start(tmp_path, database, free_port())
    _stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 2, stderr
    # The --allow-unsigned warning aside, one line says what is wrong.
    lines = [line for line in stderr.strip().splitlines() if ": warning: " not in line]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("aggregator: configuration error: ")
    assert str(database) in lines[0]
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


async def test_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    database = tmp_path / "aggregator.sqlite3"
    database.write_text("these are my notes, not a database\n" * 10)
    database.chmod(0o600)
    process = start(tmp_path, database, free_port())
    _stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "not an SQLite database" in stderr
    assert database.read_text().startswith("these are my notes")


async def test_a_second_aggregator_on_the_same_file_refuses_to_start(tmp_path: Path) -> None:
    database = tmp_path / "data" / "aggregator.sqlite3"
    first_port = free_port()
    first = start(tmp_path, database, first_port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first_port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            await wait_serving(stub, first)
            second = start(tmp_path, database, free_port(), log="second.log")
            _stdout, stderr = second.communicate(timeout=30)
            assert second.returncode == 2
            assert f"another aggregator (pid {first.pid})" in stderr
            assert str(database) in stderr
            # The first one serves on, unaffected.
            assert (await stub.HealthCheck(pb.HealthRequest())).version
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(15)
    assert first.returncode == 0


async def test_history_off_serves_without_a_file(tmp_path: Path) -> None:
    database = tmp_path / "data" / "aggregator.sqlite3"
    port = free_port()
    process = start(tmp_path, database, port, "--no-history")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            await wait_serving(stub, process)
            minute = minute_floor(time.time()) - 60
            assert (await stub.SubmitPrice(request("kraken", "k", minute, 100000.0))).success
            nodes = await stub.ListNodes(pb.ListNodesRequest())
            assert [n.node_id for n in nodes.nodes] == ["k"]
    finally:
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "history is kept in memory only" in stderr
    assert not database.exists()
