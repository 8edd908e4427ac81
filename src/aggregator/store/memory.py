"""The in-memory history: the same rules as the SQLite store, nothing survives the process.

Used when `[database] enabled = false` (loudly logged at start: a restart forgets every
observation, round and node) and by fast tests. Memory is bounded like the disk is: retention
by age as in SQLite, and in addition at most `max_observations` observations and `max_rounds`
rounds (oldest forgotten first), so a long run without a database does not grow without bound.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

from aggregator.store.errors import (
    DuplicateRoundError,
    HistoryClosedError,
    HistoryRecordError,
    ObservationConflictError,
)
from aggregator.store.records import (
    EquivocationRecord,
    NodeRecordRow,
    ObservationRecord,
    RecoveredState,
    RefusalSample,
    RoundRecord,
    check_equivocation,
    check_observation,
    check_round,
    recover_cutoff,
    retention_cutoff,
)
from aggregator.store.refusals import DAY, SAMPLES_PER_REASON, RefusalLedger
from common.timeutil import Clock

_Key = tuple[int, str, str, str, str]  # minute, exchange, node, base, quote


def _key(record: ObservationRecord) -> _Key:
    return (record.minute, *record.series)


class InMemoryHistoryStore:
    """`HistoryStore` in process memory; single event loop, no threads."""

    def __init__(
        self,
        *,
        simulate: bool,
        clock: Clock,
        retention_days: int = 30,
        max_observations: int = 20_000,
        max_rounds: int = 10_080,
        max_equivocations: int = 1_000,
    ) -> None:
        self.simulated = simulate
        self.retention_days = retention_days
        self._clock = clock
        self._max_observations = max_observations
        self._max_rounds = max_rounds
        self._max_equivocations = max_equivocations
        # Insertion order is commit order, as in SQLite.
        self._observations: OrderedDict[_Key, ObservationRecord] = OrderedDict()
        self._rounds: dict[int, RoundRecord] = {}
        self._round_minutes: list[int] = []  # sorted: pages are bisected, not sorted per call
        self._nodes: dict[str, NodeRecordRow] = {}
        self._equivocations: OrderedDict[_Key, EquivocationRecord] = OrderedDict()
        self._refusals = RefusalLedger()
        self._refusal_counts: dict[tuple[int, str], int] = {}
        self._samples: dict[str, list[RefusalSample]] = {}
        self._next_prune = 0.0
        self._newest_minute = -1
        self._closed = False

    async def add_observation(self, record: ObservationRecord) -> None:
        self._check_open()
        check_observation(record, simulated=self.simulated)
        key = _key(record)
        stored = self._observations.get(key)
        if stored is not None:
            if stored.price != record.price:
                raise ObservationConflictError(
                    f"the history already holds {record.exchange} {record.base}/{record.quote} "
                    f"from node {record.node_id} at minute {record.minute} with price "
                    f"{stored.price}; {record.price} is refused, the first observation stands"
                )
            return
        self._observations[key] = record
        self._newest_minute = max(self._newest_minute, record.minute)
        while len(self._observations) > self._max_observations:
            self._observations.popitem(last=False)
        if self._clock() >= self._next_prune:
            self._prune_oldest()

    async def add_round(self, record: RoundRecord) -> None:
        self._check_open()
        check_round(record, simulated=self.simulated)
        if record.minute in self._rounds:
            raise DuplicateRoundError(record.minute)
        self._rounds[record.minute] = record
        bisect.insort(self._round_minutes, record.minute)
        if len(self._round_minutes) > self._max_rounds:
            del self._rounds[self._round_minutes.pop(0)]

    async def touch_node(self, row: NodeRecordRow) -> None:
        self._check_open()
        self._nodes.pop(row.node_id, None)
        self._nodes[row.node_id] = row

    def count_refusal(self, reason: str, sample: bytes | None, now: float) -> None:
        if self._closed:
            return
        self._refusals.add(reason, sample, now)
        batch = self._refusals.take()
        for key, (count, _last_at) in batch.counts.items():
            self._refusal_counts[key] = self._refusal_counts.get(key, 0) + count
        for reason_code, samples in batch.samples.items():
            kept = self._samples.setdefault(reason_code, [])
            kept.extend(samples)
            del kept[:-SAMPLES_PER_REASON]

    async def add_equivocation(self, first: ObservationRecord, second: ObservationRecord) -> None:
        self._check_open()
        check_observation(first, simulated=self.simulated)
        check_observation(second, simulated=self.simulated)
        check_equivocation(first, second)
        key = _key(first)
        if key not in self._equivocations:
            self._equivocations[key] = EquivocationRecord(first, second, self._clock())
            while len(self._equivocations) > self._max_equivocations:
                self._equivocations.popitem(last=False)

    def recover(self, now: float, horizon: float) -> RecoveredState:
        self._check_open()
        cutoff = recover_cutoff(now, horizon)
        return RecoveredState(
            observations=[r for r in self._observations.values() if r.minute >= cutoff],
            rounds=[
                self._rounds[m]
                for m in self._round_minutes[bisect.bisect_left(self._round_minutes, cutoff) :]
            ],
            nodes=sorted(self._nodes.values(), key=lambda row: row.last_seen),
        )

    def get_round(self, minute: int) -> RoundRecord | None:
        self._check_open()
        return self._rounds.get(minute)

    def rounds(
        self,
        from_minute: int | None,
        to_minute: int | None,
        limit: int,
        before_minute: int | None,
    ) -> list[RoundRecord]:
        self._check_open()
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise HistoryRecordError("limit must be a positive integer")
        minutes = self._round_minutes
        low = 0 if from_minute is None else bisect.bisect_left(minutes, from_minute)
        high = len(minutes) if to_minute is None else bisect.bisect_right(minutes, to_minute)
        if before_minute is not None:
            high = min(high, bisect.bisect_left(minutes, before_minute))
        selected = minutes[max(low, high - limit) : high][::-1]
        return [self._rounds[minute] for minute in selected]

    def observations(self, from_minute: int, to_minute: int) -> list[ObservationRecord]:
        return [r for r in self._observations.values() if from_minute <= r.minute <= to_minute]

    def refusal_counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (_day, reason), count in self._refusal_counts.items():
            totals[reason] = totals.get(reason, 0) + count
        return dict(sorted(totals.items()))

    def refusal_samples(self) -> list[RefusalSample]:
        return [s for reason in sorted(self._samples) for s in self._samples[reason]]

    def equivocations(self, limit: int = 100) -> list[EquivocationRecord]:
        return list(reversed(self._equivocations.values()))[:limit]

    async def prune(self) -> int:
        self._check_open()
        return self._prune_by_age()

    async def close(self) -> None:
        self._closed = True

    def _prune_oldest(self) -> None:
        """The automatic pruning on the write path: only from the oldest end, so its cost is
        what expired, not the whole table (a full scan per minute of clock is what an
        accelerated benchmark clock turns into a scan per few writes). Observations are kept in
        commit order, nearly minute order: a late straggler behind a newer one waits for the
        full pass of `prune()` or for the `max_observations` bound."""
        now = self._clock()
        self._next_prune = now + 60
        known = [m for m in (self._newest_minute, *self._round_minutes[-1:]) if m >= 0]
        newest = max(known, default=None)
        cutoff = retention_cutoff(now, newest, self.retention_days)
        while self._observations:
            key, oldest = next(iter(self._observations.items()))
            if oldest.minute >= cutoff:
                break
            del self._observations[key]
        expired = bisect.bisect_left(self._round_minutes, cutoff)
        for minute in self._round_minutes[:expired]:
            del self._rounds[minute]
        del self._round_minutes[:expired]

    def _prune_by_age(self) -> int:
        # A full scan, so at most once per minute of clock (and on demand through prune()).
        now = self._clock()
        self._next_prune = now + 60
        minutes = [r.minute for r in self._observations.values()] + self._round_minutes[-1:]
        cutoff = retention_cutoff(now, max(minutes, default=None), self.retention_days)
        deleted = 0
        for key in [k for k, r in self._observations.items() if r.minute < cutoff]:
            del self._observations[key]
            deleted += 1
        expired = bisect.bisect_left(self._round_minutes, cutoff)
        for minute in self._round_minutes[:expired]:
            del self._rounds[minute]
        del self._round_minutes[:expired]
        deleted += expired
        for key in [k for k, e in self._equivocations.items() if e.first.minute < cutoff]:
            del self._equivocations[key]
            deleted += 1
        for node_id in [n for n, row in self._nodes.items() if row.last_seen < cutoff]:
            del self._nodes[node_id]
            deleted += 1
        for day_reason in [k for k in self._refusal_counts if k[0] < cutoff // DAY]:
            del self._refusal_counts[day_reason]
            deleted += 1
        return deleted

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryClosedError("the in-memory history is closed")
