"""grpc.health.v1 from the price status (Check and Watch), and server reflection, over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from aggregator.health import ORACLE_SERVICE, OracleHealth, serving_status
from aggregator.streaming_settings import StreamingSettings
from common.proto import oracle_pb2
from tests.aggregator.streaming_fakes import Harness, start_harness

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
OK = oracle_pb2.PRICE_STATUS_OK
DEGRADED = oracle_pb2.PRICE_STATUS_DEGRADED
UNKNOWN = oracle_pb2.PRICE_STATUS_UNKNOWN


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    started = await start_harness(StreamingSettings(max_health_watchers=3))
    yield started
    started.health.close()
    started.hub.close()
    await started.server.stop(None)


@pytest.mark.parametrize(
    ("status", "draining", "expected"),
    [
        (OK, False, SERVING),
        (OK, True, NOT_SERVING),
        (DEGRADED, False, NOT_SERVING),
        (UNKNOWN, False, NOT_SERVING),
        (oracle_pb2.PRICE_STATUS_UNSPECIFIED, False, NOT_SERVING),
    ],
)
def test_serving_only_while_the_price_is_ok_and_not_draining(
    status: oracle_pb2.PriceStatus, draining: bool, expected: int
) -> None:
    assert serving_status(status, draining=draining) == expected


async def check(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service)
    )
    return response.status


async def test_check_follows_the_status_for_the_server_and_the_oracle_service(
    harness: Harness,
) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        # Nothing is known before the first update: not serving.
        assert await check(channel, "") == NOT_SERVING
        for status, draining, expected in [
            (OK, False, SERVING),
            (DEGRADED, False, NOT_SERVING),
            (OK, False, SERVING),
            (UNKNOWN, False, NOT_SERVING),
            (OK, False, SERVING),
            (OK, True, NOT_SERVING),
        ]:
            harness.health.update(status, draining)
            assert await check(channel, "") == expected
            assert await check(channel, ORACLE_SERVICE) == expected
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await check(channel, "oracle.NoSuchService")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_reports_each_change_and_unknown_services(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=ORACLE_SERVICE))
        seen = [(await watch.read()).status]
        for status, draining in [(OK, False), (DEGRADED, False), (OK, False), (OK, True)]:
            assert harness.health.update(status, draining)
            seen.append((await watch.read()).status)
        assert seen == [NOT_SERVING, SERVING, NOT_SERVING, SERVING, NOT_SERVING]
        # An update that changes nothing sends nothing.
        assert not harness.health.update(UNKNOWN, True)

        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="oracle.NoSuchService"))
        first = await unknown.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        watch.cancel()
        unknown.cancel()


async def test_a_watcher_that_falls_behind_gets_the_newest_status_not_a_backlog(
    harness: Harness,
) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == NOT_SERVING
        for _ in range(1000):  # flapping while the watcher does not read
            harness.health.update(OK, False)
            harness.health.update(DEGRADED, False)
        harness.health.update(OK, False)
        statuses = []
        async with asyncio.timeout(5):
            while not statuses or statuses[-1] != SERVING:
                statuses.append((await watch.read()).status)
        assert len(statuses) <= 3
        watch.cancel()


async def test_watchers_are_bounded_and_end_cleanly_on_close(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest()) for _ in range(3)]
        for watch in watches:
            await watch.read()
        extra = stub.Watch(health_pb2.HealthCheckRequest())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await extra.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        harness.health.close()
        for watch in watches:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await watch.read()
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_reflection_lists_and_describes_the_oracle_service(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=ORACLE_SERVICE),
                ]
            )
        )
        listed, described = [response async for response in call]
    names = {service.name for service in listed.list_services_response.service}
    assert {"oracle.OracleService", "grpc.health.v1.Health"} <= names
    assert "grpc.reflection.v1alpha.ServerReflection" in names

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    oracle_file = next(file for file in files if file.package == "oracle")
    methods = {method.name for method in oracle_file.service[0].method}
    assert {"SubmitPrice", "StreamPrices", "SubscribePrices", "GetPriceHistory"} <= methods


async def test_the_reflection_client_database_describes_methods_like_grpcurl(
    harness: Harness,
) -> None:
    def describe() -> tuple[list[str], dict[str, tuple[str, str, bool]]]:
        # The library's client is synchronous: run it off the loop that serves the server.
        with grpc.insecure_channel(harness.target) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            pool = descriptor_pool.DescriptorPool(database)
            service = pool.FindServiceByName(ORACLE_SERVICE)
            methods = {
                method.name: (
                    method.input_type.full_name,
                    method.output_type.full_name,
                    method.server_streaming,
                )
                for method in service.methods
            }
            return list(database.get_services()), methods

    services, methods = await asyncio.to_thread(describe)
    assert ORACLE_SERVICE in services
    assert methods["SubscribePrices"] == ("oracle.SubscribeRequest", "oracle.PriceUpdate", True)
    assert methods["StreamPrices"] == (
        "oracle.PriceRequest",
        "oracle.AggregatedPriceUpdate",
        True,
    )


def test_an_unregistered_health_servicer_starts_not_serving() -> None:
    health = OracleHealth(StreamingSettings())
    assert health.status_of("") == NOT_SERVING
    assert health.status_of(ORACLE_SERVICE) == NOT_SERVING
    assert health.status_of("other") is None
