"""SIGTERM under load: in-flight calls get real answers and the process exits 0 in the grace."""

import asyncio
import signal
import socket
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc
from common.timeutil import minute_floor

GRACE = 3.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until_serving(stub, deadline: float) -> None:
    while True:
        try:
            await stub.HealthCheck(pb.HealthRequest(node_id="probe"), timeout=1)
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return


def _unlimited(tmp_path):
    path = tmp_path / "aggregator.toml"
    path.write_text("[limits]\nglobal_burst = 100000\nmax_concurrent_rpcs = 100000\n")
    return path


async def test_sigterm_during_load_drains_and_exits_zero(tmp_path):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grace",
        str(GRACE),
        "--allow-unsigned",
        # 600 calls at once from 600 ids: above the default abuse limits, which are not tested here.
        "--config",
        str(_unlimited(tmp_path)),
        "--log-file",
        str(tmp_path / "aggregator.log"),
        "--metrics-port",
        "0",
        "--allow-unsigned",  # the submissions below are unsigned
        cwd=tmp_path,
    )
    minute = minute_floor(time.time()) - 60
    outcomes: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        await wait_until_serving(stub, time.monotonic() + 20)

        async def one_call(index: int) -> None:
            request = pb.PriceRequest(
                price=100000.0 + index,
                timestamp=minute,
                source=("binance", "coinbase", "kraken")[index % 3],
                node_id=f"load-{index}",
            )
            try:
                response = await stub.SubmitPrice(request, timeout=10)
                outcomes.append("ok" if response.success and response.message else "empty")
            except grpc.aio.AioRpcError as error:
                outcomes.append(error.code().name)

        calls = [asyncio.create_task(one_call(i)) for i in range(600)]
        await asyncio.sleep(0.02)  # let part of the burst reach the server
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.gather(*calls)
        returncode = await asyncio.wait_for(process.wait(), timeout=GRACE + 5)
        elapsed = time.monotonic() - signalled

    assert returncode == 0
    assert elapsed < GRACE + 2
    # Every call either got a real answer or was refused before the server took it: none was
    # cut off half-way (CANCELLED/INTERNAL/UNKNOWN) or answered with an empty response.
    assert set(outcomes) <= {"ok", "UNAVAILABLE"}, set(outcomes)
    assert outcomes.count("ok") > 0
    log = (tmp_path / "aggregator.log").read_text()
    assert "shutdown_requested" in log
    assert "aggregator_stopped" in log


async def test_sigterm_ends_every_stream_cleanly_and_health_turns_not_serving(tmp_path):
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grace",
        str(GRACE),
        "--log-file",
        str(tmp_path / "aggregator.log"),
        "--metrics-port",
        "0",
        "--allow-unsigned",  # the submissions below are unsigned
        cwd=tmp_path,
    )
    minute = minute_floor(time.time()) - 60
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        await wait_until_serving(stub, time.monotonic() + 20)
        health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        stream = stub.StreamPrices()
        await stream.write(
            pb.PriceRequest(price=100000.0, timestamp=minute, source="kraken", node_id="k")
        )
        assert (await stream.read()).code == 0
        # Two exchanges: status OK (one alone is DEGRADED, not serving).
        await stream.write(
            pb.PriceRequest(price=100000.0, timestamp=minute, source="binance", node_id="b")
        )
        assert (await stream.read()).code == 0
        async with asyncio.timeout(10):
            assert (await health.read()).status == health_pb2.HealthCheckResponse.SERVING
        subscription = stub.SubscribePrices(pb.SubscribeRequest())
        assert (await subscription.read()).price.aggregated_price == 100000.0

        process.send_signal(signal.SIGTERM)
        assert (await health.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        endings = {}
        for name, call in (("subscription", subscription), ("stream", stream)):
            try:
                while (await call.read()) is not grpc.aio.EOF:
                    pass
            except grpc.aio.AioRpcError as error:
                endings[name] = (error.code(), error.details())
        returncode = await asyncio.wait_for(process.wait(), timeout=GRACE + 5)

    assert returncode == 0
    assert endings["subscription"][0] is grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in endings["subscription"][1]
    assert endings["stream"][0] is grpc.StatusCode.UNAVAILABLE
    assert "SubmitPrice" in endings["stream"][1]
