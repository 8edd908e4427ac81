"""The history recorder through the real gRPC server (in process, port 0, injected clock).

Durable before the answer, UNAVAILABLE and nothing changed when the commit fails, the store's own
conflict refused like the book's, refusals counted, the node table, closed rounds persisted and
served (GetRound, GetPriceHistory with its page tokens), recovery after a restart on the same
SQLite file, and bad input that leaves book, history and node table exactly as they were.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from aggregator.book import Outcome, SubmitResult
from aggregator.config import AggregatorConfig, AuthConfig, DatabaseConfig
from aggregator.history import HistoryRecorder, open_history, refusal_reason
from aggregator.server import BoundServer, build_server
from aggregator.store import (
    HistoryStore,
    HistoryUnavailableError,
    InMemoryHistoryStore,
    ObservationRecord,
    SqliteHistoryStore,
)
from aggregator.validation import validate_submission
from common.errors import InvalidObservationError
from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc

from .conftest import T0, FakeClock

EXCHANGES = ("binance", "coinbase", "kraken")


def config(**database: object) -> AggregatorConfig:
    return AggregatorConfig(
        host="127.0.0.1",
        port=0,
        database=DatabaseConfig(**database),
        auth=AuthConfig(allow_unsigned=True),
    )


def submission(
    source: str = "binance", price: float = 100000.0, **extra: object
) -> pb.PriceRequest:
    fields: dict[str, object] = {"timestamp": T0, "node_id": f"{source}-node", **extra}
    return pb.PriceRequest(price=price, source=source, **fields)  # type: ignore[arg-type]


def a_round(minute: int, price: float = 100000.0) -> pb.Round:
    return pb.Round(
        minute=minute,
        status=pb.PRICE_STATUS_OK,
        price=price,
        closed=True,
        closed_at_ms=(minute + 70) * 1000,
        close_reason=pb.ROUND_CLOSE_REASON_ALL_REPORTED,
        inputs=[pb.RoundInput(source=source, price=price, minute=minute) for source in EXCHANGES],
        message=f"round {minute}",
    )


@dataclass
class Running:
    bound: BoundServer
    stub: oracle_pb2_grpc.OracleServiceStub
    store: HistoryStore

    @property
    def history(self) -> HistoryRecorder:
        return self.bound.history

    def state(self) -> tuple[object, ...]:
        """Book, stored observations and node table: what a refusal must leave as it was."""
        store = self.store
        assert isinstance(store, InMemoryHistoryStore | SqliteHistoryStore)
        nodes = self.history.list_nodes(pb.ListNodesRequest(), T0 + 65)
        return (
            self.bound.servicer.book.snapshot(),
            store.observations(0, 2**62),
            nodes.SerializeToString(),
        )


@dataclass
class Harness:
    clock: FakeClock
    opened: list[Running]
    channels: list[grpc.aio.Channel]

    async def start(
        self, store: HistoryStore | None = None, cfg: AggregatorConfig | None = None
    ) -> Running:
        cfg = cfg or config()
        if store is None:
            store = InMemoryHistoryStore(simulate=False, clock=self.clock)
        bound = build_server(cfg, clock=self.clock, store=store)
        await bound.history.persist_recovered()
        await bound.server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
        self.channels.append(channel)
        running = Running(bound, oracle_pb2_grpc.OracleServiceStub(channel), store)
        self.opened.append(running)
        return running

    async def stop(self, running: Running) -> None:
        await running.bound.server.stop(None)
        await running.store.close()
        self.opened.remove(running)


@pytest.fixture
async def harness(clock: FakeClock) -> AsyncIterator[Harness]:
    found = Harness(clock, [], [])
    yield found
    for channel in found.channels:
        await channel.close()
    for running in list(found.opened):
        await found.stop(running)


async def refused_with(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call  # type: ignore[misc]
    assert error.value.code() == code, error.value.details()
    return str(error.value.details())


# -- durable before the answer ------------------------------------------------------------------


class GatedStore(InMemoryHistoryStore):
    """Holds every observation commit until the test opens the gate."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(simulate=False, clock=clock)
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()

    async def add_observation(self, record: ObservationRecord) -> None:
        self.arrived.set()
        await self.gate.wait()
        await super().add_observation(record)


class FailingStore(InMemoryHistoryStore):
    async def add_observation(self, record: ObservationRecord) -> None:
        raise HistoryUnavailableError("the history could not commit (disk full); retry")


async def test_the_answer_waits_for_the_commit_and_the_book_for_both(
    harness: Harness, clock: FakeClock
) -> None:
    store = GatedStore(clock)
    running = await harness.start(store)
    before = running.bound.servicer.book.snapshot()
    call = asyncio.ensure_future(running.stub.SubmitPrice(submission()))
    await store.arrived.wait()
    await asyncio.sleep(0.05)
    assert not call.done()
    assert running.bound.servicer.book.snapshot() == before  # not applied before the commit
    store.gate.set()
    answer = await call
    assert answer.success
    assert [r.price for r in store.observations(T0, T0)] == [Decimal("100000.0")]
    assert running.bound.servicer.book.snapshot() != before


async def test_a_failed_commit_is_unavailable_and_changes_nothing(
    harness: Harness, clock: FakeClock
) -> None:
    running = await harness.start(FailingStore(simulate=False, clock=clock))
    before = running.state()
    details = await refused_with(
        running.stub.SubmitPrice(submission()), grpc.StatusCode.UNAVAILABLE
    )
    assert "could not commit" in details
    assert running.state() == before
    assert isinstance(running.store, InMemoryHistoryStore)
    assert running.store.refusal_counts() == {}  # not the request's fault: not a refusal


async def test_the_stores_own_conflict_is_refused_like_the_books(
    harness: Harness, clock: FakeClock
) -> None:
    store = InMemoryHistoryStore(simulate=False, clock=clock)
    running = await harness.start(store)
    # The history holds a price the book does not know (e.g. written by the previous run).
    earlier = submission(price=99000.0)
    held = running.history.record(validate_submission(earlier, config(), clock.now), clock.now)
    await store.add_observation(held)
    before = running.state()
    details = await refused_with(
        running.stub.SubmitPrice(submission(price=100000.0)), grpc.StatusCode.ALREADY_EXISTS
    )
    assert "the first report stands" in details
    assert running.state() == before
    assert store.refusal_counts() == {"conflicting_observation": 1}


async def test_a_resubmission_is_idempotent_and_not_committed_twice(
    harness: Harness, clock: FakeClock
) -> None:
    running = await harness.start()
    first = await running.stub.SubmitPrice(submission())
    again = await running.stub.SubmitPrice(submission())
    assert first.success
    assert not first.duplicate
    assert again.success
    assert again.duplicate
    nodes = await running.stub.ListNodes(pb.ListNodesRequest())
    assert [(n.node_id, n.submissions) for n in nodes.nodes] == [("binance-node", 1)]


# -- refusals ------------------------------------------------------------------------------------


async def test_refusals_are_counted_by_reason_and_change_nothing_else(
    harness: Harness, clock: FakeClock
) -> None:
    running = await harness.start()
    await running.stub.SubmitPrice(submission())
    before = running.state()
    bad = [
        submission(price=-1.0),
        submission(price=float("nan")),
        submission(source="bitstamp"),
        submission(timestamp=T0 + 1),
        submission(node_id=""),
        submission(simulated=True),
    ]
    for request in bad:
        with pytest.raises(grpc.aio.AioRpcError):
            await running.stub.SubmitPrice(request)
    assert running.state() == before
    assert isinstance(running.store, InMemoryHistoryStore)
    assert running.store.refusal_counts() == {
        "invalid_node_id": 1,
        "invalid_price": 2,
        "invalid_source": 1,
        "invalid_timestamp": 1,
        "precondition": 1,
    }
    samples = running.store.refusal_samples()
    assert pb.PriceRequest.FromString(samples[0].sample).node_id == ""


def test_refusal_reasons_are_stable_codes() -> None:
    assert refusal_reason(InvalidObservationError("price", "x")) == "invalid_price"
    assert refusal_reason(HistoryUnavailableError("x")) == "history_unavailable"


# -- the node table -------------------------------------------------------------------------------


async def test_list_nodes_most_recent_first_with_counts_and_activity(
    harness: Harness, clock: FakeClock
) -> None:
    running = await harness.start()
    await running.stub.SubmitPrice(submission("kraken", node_id="old-node"))
    clock.now += 200  # beyond the 120 s node timeout
    for source in EXCHANGES:
        await running.stub.SubmitPrice(submission(source, timestamp=T0 + 180))
    answer = await running.stub.ListNodes(pb.ListNodesRequest())
    assert answer.total == 4
    assert answer.node_timeout_seconds == 120
    assert not answer.simulated
    assert [n.node_id for n in answer.nodes] == [
        "kraken-node",
        "coinbase-node",
        "binance-node",
        "old-node",
    ]
    by_id = {n.node_id: n for n in answer.nodes}
    assert not by_id["old-node"].active
    assert by_id["kraken-node"].active
    assert by_id["kraken-node"].last_minute == T0 + 180
    assert by_id["kraken-node"].last_seen_ms == int(clock.now * 1000)
    assert by_id["kraken-node"].signature_status == pb.SIGNATURE_STATUS_UNSIGNED
    # Verified signatures: tests/aggregator/test_auth.py.
    two = await running.stub.ListNodes(pb.ListNodesRequest(limit=2))
    assert [n.node_id for n in two.nodes] == ["kraken-node", "coinbase-node"]
    assert two.total == 4
    before = running.state()
    await refused_with(
        running.stub.ListNodes(pb.ListNodesRequest(limit=1001)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert running.state() == before


# -- rounds: persisted, served, paged ---------------------------------------------------------


async def close_rounds(running: Running, minutes: list[int]) -> None:
    for minute in minutes:
        for listener in running.bound.servicer.round_listeners:
            await listener(a_round(minute, 100000.0 + minute % 1000))


async def test_a_closed_round_is_stored_and_served_by_get_round(harness: Harness) -> None:
    running = await harness.start()
    await close_rounds(running, [T0])
    stored = running.store.get_round(T0)
    assert stored is not None
    assert pb.Round.FromString(stored.round_proto) == a_round(T0, 100000.0 + T0 % 1000)
    served = await running.stub.GetRound(pb.GetRoundRequest(minute=T0))
    assert served == a_round(T0, 100000.0 + T0 % 1000)
    # A second close of the same minute never replaces the first.
    await running.bound.servicer.round_listeners[0](a_round(T0, 1.0))
    again = await running.stub.GetRound(pb.GetRoundRequest(minute=T0))
    assert again.price == 100000.0 + T0 % 1000


async def test_get_round_bad_and_unknown_minutes(harness: Harness) -> None:
    running = await harness.start()
    await running.stub.SubmitPrice(submission())
    before = running.state()
    for minute in (0, 61, T0 + 30):
        details = await refused_with(
            running.stub.GetRound(pb.GetRoundRequest(minute=minute)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "minute" in details
    await refused_with(
        running.stub.GetRound(pb.GetRoundRequest(minute=T0 - 600)), grpc.StatusCode.NOT_FOUND
    )
    await refused_with(
        running.stub.GetRound(pb.GetRoundRequest(minute=(2**64 - 1) // 60 * 60)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert running.state() == before


async def test_price_history_newest_first_paged_with_tokens(harness: Harness) -> None:
    running = await harness.start()
    minutes = [T0 - 60 * i for i in range(250)]
    await close_rounds(running, minutes)
    first = await running.stub.GetPriceHistory(pb.GetPriceHistoryRequest())
    assert [r.minute for r in first.rounds] == minutes[:100]  # limit 0 = 100
    assert first.next_page_token
    seen = [r.minute for r in first.rounds]
    token = first.next_page_token
    while token:
        page = await running.stub.GetPriceHistory(
            pb.GetPriceHistoryRequest(limit=70, page_token=token)
        )
        seen += [r.minute for r in page.rounds]
        token = page.next_page_token
    assert seen == minutes
    window = await running.stub.GetPriceHistory(
        pb.GetPriceHistoryRequest(from_minute=minutes[9], to_minute=minutes[5], limit=2)
    )
    assert [r.minute for r in window.rounds] == minutes[5:7]
    rest = await running.stub.GetPriceHistory(
        pb.GetPriceHistoryRequest(
            from_minute=minutes[9],
            to_minute=minutes[5],
            limit=1000,
            page_token=window.next_page_token,
        )
    )
    assert [r.minute for r in rest.rounds] == minutes[7:10]
    assert rest.next_page_token == ""
    # The explorer passes tokens through its own cursor check: they must fit it.
    assert all(ch.isalnum() or ch in "_-" for ch in window.next_page_token)


async def test_price_history_refuses_bad_input_and_forged_tokens(harness: Harness) -> None:
    running = await harness.start()
    await close_rounds(running, [T0 - 60 * i for i in range(5)])
    page = await running.stub.GetPriceHistory(pb.GetPriceHistoryRequest(limit=2))
    token = page.next_page_token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[8] ^= 1  # another before_minute, the MAC left as it was
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    # Page tokens, not passwords (ruff S106 reads "token" as a secret).
    garbage = ("garbage!", "before:123", "A" * 500, "é")
    before = running.state()
    for request in (
        pb.GetPriceHistoryRequest(limit=1001),
        pb.GetPriceHistoryRequest(from_minute=T0, to_minute=T0 - 60),
        *(pb.GetPriceHistoryRequest(page_token=text) for text in garbage),
        pb.GetPriceHistoryRequest(page_token=forged),
        # A token is bound to its query: another range cannot reuse it.
        pb.GetPriceHistoryRequest(from_minute=T0 - 120, page_token=token),
    ):
        await refused_with(running.stub.GetPriceHistory(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert running.state() == before
    # A token from another aggregator process (or before a restart) is refused, not trusted.
    other = HistoryRecorder(running.store, config())
    with pytest.raises(InvalidObservationError):
        other.history_page(pb.GetPriceHistoryRequest(limit=2, page_token=token))


async def test_history_of_an_empty_aggregator(harness: Harness) -> None:
    running = await harness.start()
    empty = await running.stub.GetPriceHistory(
        pb.GetPriceHistoryRequest(from_minute=2**64 - 60, to_minute=2**64 - 1)
    )
    assert list(empty.rounds) == []
    assert empty.next_page_token == ""
    nodes = await running.stub.ListNodes(pb.ListNodesRequest())
    assert nodes.total == 0
    assert list(nodes.nodes) == []


# -- restart on the same file --------------------------------------------------------------------


async def test_restart_on_the_same_file_reloads_everything(
    harness: Harness, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "aggregator.sqlite3"
    cfg = config(path=path)
    first = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock), cfg)
    for index, source in enumerate(EXCHANGES):
        await first.stub.SubmitPrice(submission(source, price=100000.0 + index))
    await first.stub.SubmitPrice(submission("kraken", node_id="second-kraken", price=100003.0))
    await close_rounds(first, [T0 - 60])
    aggregate = await first.stub.GetAggregatedPrice(pb.GetPriceRequest())
    nodes = await first.stub.ListNodes(pb.ListNodesRequest())
    round_before = await first.stub.GetRound(pb.GetRoundRequest(minute=T0 - 60))
    clock.now += 3
    await harness.stop(first)

    second = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock), cfg)
    assert second.history.recovery.replayed == 4
    restarted = await second.stub.GetAggregatedPrice(pb.GetPriceRequest())
    restarted.age_seconds = aggregate.age_seconds  # 3 s later
    assert restarted == aggregate
    again = await second.stub.ListNodes(pb.ListNodesRequest())
    assert again == nodes
    assert await second.stub.GetRound(pb.GetRoundRequest(minute=T0 - 60)) == round_before
    assert second.bound.servicer.book.closed_round(T0 - 60) == round_before
    duplicate = await second.stub.SubmitPrice(submission("coinbase", price=100001.0))
    assert duplicate.success
    assert duplicate.duplicate
    await refused_with(
        second.stub.SubmitPrice(submission("coinbase", price=100999.0)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    # The node's lifetime count carries on from the stored table.
    clock.now += 60
    await second.stub.SubmitPrice(submission("coinbase", timestamp=T0 + 60, price=100002.0))
    counted = await second.stub.ListNodes(pb.ListNodesRequest(limit=1))
    assert (counted.nodes[0].node_id, counted.nodes[0].submissions) == ("coinbase-node", 2)


async def test_recovery_ignores_what_is_beyond_the_lateness_horizon(
    harness: Harness, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "h.sqlite3"
    first = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock))
    await first.stub.SubmitPrice(submission())
    await harness.stop(first)
    clock.now += 3600
    second = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock))
    assert second.history.recovery.observations == 0
    nodes = await second.stub.ListNodes(pb.ListNodesRequest())
    assert [(n.node_id, n.active) for n in nodes.nodes] == [("binance-node", False)]


async def test_history_off_keeps_nothing_across_a_restart(
    harness: Harness, clock: FakeClock, tmp_path: Path
) -> None:
    cfg = config(enabled=False, path=tmp_path / "never.sqlite3")
    store = open_history(cfg, clock)
    assert isinstance(store, InMemoryHistoryStore)
    first = await harness.start(store, cfg)
    assert (await first.stub.SubmitPrice(submission())).success
    await harness.stop(first)
    second = await harness.start(open_history(cfg, clock), cfg)
    assert second.history.recovery.observations == 0
    assert not (tmp_path / "never.sqlite3").exists()


# -- real rounds (the book's closes) through the listener, across a restart ---------------------


async def test_rounds_closed_by_the_book_are_stored_and_survive_a_restart(
    harness: Harness, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "rounds.sqlite3"
    first = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock))
    for index, source in enumerate(EXCHANGES):
        assert (await first.stub.SubmitPrice(submission(source, price=100000.0 + index))).success
    # All three reported: closed at once, and committed before the third answer left.
    stored = first.store.get_round(T0)
    assert stored is not None
    closed = pb.Round.FromString(stored.round_proto)
    assert closed.closed
    assert closed.close_reason == pb.ROUND_CLOSE_REASON_ALL_REPORTED
    late = await first.stub.SubmitPrice(submission("kraken", node_id="late-kraken", price=1e5))
    assert "late" in late.message
    # The next minute: two of three, still open.
    clock.now += 60
    for source in EXCHANGES[:2]:
        await first.stub.SubmitPrice(submission(source, timestamp=T0 + 60, price=100010.0))
    closed_before = await first.stub.GetRound(pb.GetRoundRequest(minute=T0))
    assert closed_before.late_reports == 1
    open_before = await first.stub.GetRound(pb.GetRoundRequest(minute=T0 + 60))
    assert not open_before.closed
    aggregate_before = await first.stub.GetAggregatedPrice(pb.GetPriceRequest())
    history_before = await first.stub.GetPriceHistory(pb.GetPriceHistoryRequest())
    await harness.stop(first)

    second = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock))
    assert second.history.recovery.closed_again == []
    assert await second.stub.GetRound(pb.GetRoundRequest(minute=T0)) == closed_before
    reopened = await second.stub.GetRound(pb.GetRoundRequest(minute=T0 + 60))
    assert reopened == open_before
    assert await second.stub.GetAggregatedPrice(pb.GetPriceRequest()) == aggregate_before
    assert await second.stub.GetPriceHistory(pb.GetPriceHistoryRequest()) == history_before
    # A late report after the restart is late too, and the closed round still does not change.
    again = await second.stub.SubmitPrice(submission("kraken", node_id="later", price=1e5))
    assert "late" in again.message
    assert second.store.get_round(T0) == stored
    # The open round closes at its deadline and is stored then.
    clock.now = T0 + 60 + 60 + 46
    await second.bound.servicer.close_due()
    deadline = second.store.get_round(T0 + 60)
    assert deadline is not None
    assert pb.Round.FromString(deadline.round_proto).close_reason == (
        pb.ROUND_CLOSE_REASON_DEADLINE
    )
    await harness.stop(second)

    third = await harness.start(SqliteHistoryStore(path, simulate=False, clock=clock))
    assert third.history.recovery.closed_again == []
    served = await third.stub.GetRound(pb.GetRoundRequest(minute=T0 + 60))
    assert served == pb.Round.FromString(deadline.round_proto)


async def test_a_repeated_page_is_fresh_after_the_next_close(harness: Harness) -> None:
    running = await harness.start()
    await close_rounds(running, [T0 - 120, T0 - 60])
    first = await running.stub.GetPriceHistory(pb.GetPriceHistoryRequest(limit=1))
    again = await running.stub.GetPriceHistory(pb.GetPriceHistoryRequest(limit=1))
    assert [r.minute for r in again.rounds] == [r.minute for r in first.rounds] == [T0 - 60]
    await close_rounds(running, [T0])
    newest = await running.stub.GetPriceHistory(pb.GetPriceHistoryRequest(limit=1))
    assert [r.minute for r in newest.rounds] == [T0]


async def test_a_verified_signature_is_listed_as_verified(clock: FakeClock) -> None:
    recorder = HistoryRecorder.in_memory(config(), clock)
    signed = validate_submission(
        submission(observation_signature=b"s" * 64, public_key=b"k" * 32), config(), clock.now
    )
    await recorder.accepted(signed, SubmitResult(Outcome.COUNTED), clock.now, verified=True)
    (node,) = recorder.list_nodes(pb.ListNodesRequest(), clock.now).nodes
    assert node.signature_status == pb.SIGNATURE_STATUS_VERIFIED
    assert node.public_key == b"k" * 32
    await recorder.close()
