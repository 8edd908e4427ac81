"""Following the (fake) aggregator: catch-up after downtime, conflation, restarts: exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc

from committer.app import Committer
from committer.follower import Follower
from tests.committer.rounds import BASE_MINUTE, make_round

NOW = BASE_MINUTE + 200 * 60


def rounds(first: int, count: int):
    return [make_round(BASE_MINUTE + 60 * i) for i in range(first, first + count)]


async def wait_for(condition: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def following(committer: Committer, port: int, clock: Callable[[], float]):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    follower = Follower(committer, channel, clock=clock)
    stopping = asyncio.Event()
    task = asyncio.create_task(follower.run(stopping))
    try:
        yield follower
    finally:
        stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.close(None)


def reported(committer: Committer) -> list[int]:
    return [row.minute for row in committer.store.reports_from(0, 100_000)]


async def test_catch_up_after_downtime_reports_every_round_exactly_once(
    aggregator, committer_factory
) -> None:
    port, fake = aggregator
    fake.add_rounds(rounds(0, 90))
    now = [float(NOW)]
    first = committer_factory()
    async with following(first, port, lambda: now[0]) as follower:
        await wait_for(follower.connected.is_set)
        assert reported(first) == [BASE_MINUTE + 60 * i for i in range(90)]
        fake.close_round(make_round(BASE_MINUTE + 60 * 90))
        await wait_for(lambda: len(reported(first)) == 91)
    first.store.close()

    # Downtime: 30 rounds close while the committer is stopped; one of them closes out of order.
    fake.add_rounds(rounds(92, 29))
    fake.add_rounds(rounds(91, 1))
    now[0] += 40 * 60
    second = committer_factory()  # same database, a new process
    async with following(second, port, lambda: now[0]) as follower:
        await wait_for(follower.connected.is_set)
        fake.close_round(make_round(BASE_MINUTE + 60 * 121))
        await wait_for(lambda: len(reported(second)) == 122)
    assert reported(second) == [BASE_MINUTE + 60 * i for i in range(122)]
    assert second.counters.reports == 31  # the first 91 were never signed twice


async def test_a_conflated_round_is_recovered_from_history(aggregator, committer_factory) -> None:
    port, fake = aggregator
    fake.add_rounds(rounds(0, 3))
    committer = committer_factory()
    async with following(committer, port, lambda: float(NOW)) as follower:
        await wait_for(follower.connected.is_set)
        fake.drop_next_round()
        fake.close_round(make_round(BASE_MINUTE + 180))  # never delivered on the stream
        fake.close_round(make_round(BASE_MINUTE + 240))  # sequence gap: the follower re-reads
        await wait_for(lambda: len(reported(committer)) == 5)
    assert reported(committer) == [BASE_MINUTE + 60 * i for i in range(5)]


async def test_an_aggregator_restart_loses_nothing(aggregator, committer_factory) -> None:
    port, fake = aggregator
    committer = committer_factory()
    async with following(committer, port, lambda: float(NOW)) as follower:
        await wait_for(follower.connected.is_set)
        fake.close_round(make_round(BASE_MINUTE))
        await wait_for(lambda: len(reported(committer)) == 1)
        calls = fake.history_calls
        fake.restart()
        fake.add_rounds(rounds(1, 2))  # closed while the stream was down
        await wait_for(lambda: fake.history_calls > calls and len(reported(committer)) == 3)
    assert reported(committer) == [BASE_MINUTE + 60 * i for i in range(3)]


async def test_a_round_the_nodes_did_not_sign_is_never_reported(
    aggregator, committer_factory
) -> None:
    port, fake = aggregator
    forged = make_round(BASE_MINUTE)
    forged.inputs[0].observations[0].price_e8 += 100
    fake.add_rounds([forged, make_round(BASE_MINUTE + 60)])
    committer = committer_factory()
    async with following(committer, port, lambda: float(NOW)) as follower:
        await wait_for(follower.connected.is_set)
    assert reported(committer) == [BASE_MINUTE + 60]
    assert committer.counters.refused == 1


async def test_a_simulated_round_is_refused_by_a_real_committer(committer_factory) -> None:
    committer = committer_factory()
    assert await committer.ingest([make_round(BASE_MINUTE, simulated=True)], NOW) == []


async def test_a_round_from_the_future_is_refused(committer_factory) -> None:
    committer = committer_factory()
    assert await committer.ingest([make_round(BASE_MINUTE + 3600)], BASE_MINUTE) == []
    assert committer.counters.refused == 1
