"""The history recorder: what the aggregator writes to its `HistoryStore`, reads back, and reloads.

The store (`aggregator.store`) knows rows; this module knows the aggregator. It turns an accepted
observation into an `ObservationRecord` and makes it durable *before* the node hears success (the
durability contract: an acknowledged observation survives `kill -9`), persists each closed round
from a round listener, counts refused submissions by reason, keeps the node table that
`ListNodes` serves, and at start replays the stored window into a fresh `Book`, so a restart
answers the same aggregate and keeps idempotency and conflicts exactly as before. It also builds
the answers of the read RPCs that come from the history (`GetPriceHistory`, `ListNodes`, the
stored half of `GetRound`), with their validation, so the servicer only delegates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import grpc

from aggregator.book import Book, Outcome, SubmitResult
from aggregator.config import AggregatorConfig
from aggregator.store import (
    DuplicateRoundError,
    HistoryError,
    HistoryStore,
    HistoryUnavailableError,
    InMemoryHistoryStore,
    NodeRecordRow,
    ObservationConflictError,
    ObservationRecord,
    RoundRecord,
    open_store,
)
from aggregator.validation import Observation
from common.errors import (
    ConfigError,
    ConflictingObservationError,
    InvalidObservationError,
    OracleError,
)
from common.logsetup import get_logger
from common.proto import oracle_pb2
from common.timeutil import MINUTE, Clock, format_minute

_log = get_logger(service="aggregator")

# Pages and node lists: the contract's bounds (proto/oracle.proto).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
BASE_BTC = "BTC"
# Page tokens are short; anything longer is refused before it is decoded.
_MAX_TOKEN_LENGTH = 128
_TOKEN_VERSION = 1
_TOKEN_PAYLOAD = struct.Struct(">BQQQ")  # version, before_minute, from_minute, to_minute
_TOKEN_MAC_BYTES = 12
# Pages kept (about 100 kB each at limit 100): readers poll the same newest page every few
# seconds, and until the next round closes it cannot change.
_CACHED_PAGES = 16
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
# The store needs a symbol; a node that sent none is stored with this, which validation never
# lets a node send (no parentheses), so a replay gives the book back exactly "" again.
NO_SYMBOL = "(none)"

_Key = tuple[int, str, str, str, str]  # minute, exchange, node, base, quote (the store's key)


class HistoryOpenError(ConfigError):
    """The history database cannot be used at start (corrupt, foreign, locked, unwritable).

    A subclass of ConfigError so the CLI exits 2 with one line naming the path, like any other
    setting a restart cannot fix, and not 1 like a port that happens to be taken.
    """


class RoundNotFoundError(OracleError):
    """No open or closed round is known for that minute."""

    status = grpc.StatusCode.NOT_FOUND


def open_history(config: AggregatorConfig, clock: Clock) -> HistoryStore:
    """The configured store, or HistoryOpenError (naming the path) when it cannot be used."""
    try:
        return open_store(config.database, simulate=config.simulate, clock=clock)
    except ConfigError as error:
        raise HistoryOpenError(str(error)) from error


def refusal_reason(error: OracleError) -> str:
    """A stable, bounded code per kind of refusal: what the counters and `count_refusal` group
    by. The error's own short `reason` when it has one (bad_signature, equivocation,
    rate_limited_node), `invalid_<field>` for a field that failed validation, else its kind."""
    if isinstance(error, InvalidObservationError):
        return f"invalid_{error.field}"[:64]
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return reason[:64]
    name = type(error).__name__.removesuffix("Error")
    return _CAMEL.sub("_", name).lower() or "refused"


@dataclass(slots=True)
class NodeEntry:
    """One row of the node table as `ListNodes` serves it."""

    exchange: str
    last_seen: float
    submissions: int
    last_minute: int = 0
    signature_status: int = oracle_pb2.SIGNATURE_STATUS_UNSPECIFIED
    public_key: bytes = b""


@dataclass(slots=True)
class Recovery:
    """What a start reloaded, for the startup log line and for tests."""

    observations: int = 0
    replayed: int = 0
    skipped: int = 0
    rounds: int = 0
    nodes: int = 0
    # Rounds the replay closed that the store did not hold (the process died between a close and
    # its commit): `persist_recovered` writes them.
    closed_again: list[oracle_pb2.Round] = field(default_factory=list)


def _round_record(round_: oracle_pb2.Round) -> RoundRecord:
    return RoundRecord(
        minute=int(round_.minute),
        status=int(round_.status),
        closed_at=round_.closed_at_ms / 1000,
        simulated=bool(round_.simulated),
        round_proto=round_.SerializeToString(),
    )


def _observation(record: ObservationRecord) -> Observation:
    """The stored record as the book takes it: what was validated, exactly as it was sent."""
    return Observation(
        record.exchange,
        record.node_id,
        record.minute,
        record.price,
        record.quote,
        record.simulated,
        base=record.base,
        symbol="" if record.symbol == NO_SYMBOL else record.symbol,
        signature=record.signature,
        public_key=record.public_key,
    )


def _signature_status(signature: bytes, *, verified: bool = False) -> int:
    # UNSIGNED is a fact; a signature is VERIFIED only when the admission check (issue 11) says
    # so, and until then its status is honestly unknown.
    if not signature:
        return oracle_pb2.SIGNATURE_STATUS_UNSIGNED
    if verified:
        return oracle_pb2.SIGNATURE_STATUS_VERIFIED
    return oracle_pb2.SIGNATURE_STATUS_UNSPECIFIED


_ROUNDS_TAG = b"\x0a"  # field 1 (rounds), wire type 2 (length-delimited)


def _varint(value: int) -> bytes:
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def _limit(value: int, *, field: str) -> int:
    if value > MAX_LIMIT:
        raise InvalidObservationError(field, f"{value} is above {MAX_LIMIT}; use 1 to {MAX_LIMIT}")
    return value or DEFAULT_LIMIT


class HistoryRecorder:
    """Everything the servicer asks of the history; one asyncio loop, like the book."""

    def __init__(self, store: HistoryStore, config: AggregatorConfig) -> None:
        self.store = store
        self._config = config
        # Keys (and prices) committed inside the lateness horizon: a resubmission the history
        # already holds needs no second commit, however much redelivery a node does.
        self._committed: dict[_Key, Decimal] = {}
        self._committed_minutes: dict[int, list[_Key]] = {}
        self._next_prune = 0.0
        # node_id -> entry, least recently seen first; bounded like the book's table.
        self._nodes: OrderedDict[str, NodeEntry] = OrderedDict()
        # Closed rounds whose commit failed: retried before the next one is written.
        self._unsaved: list[oracle_pb2.Round] = []
        self.recovery = Recovery()
        # Page tokens are MACed with a per-process key: a token cannot be forged or edited, and
        # one from a previous run is refused (start again from the first page) rather than
        # trusted. The committer restarts its catch-up by itself on INVALID_ARGUMENT.
        self._token_key = secrets.token_bytes(32)
        # (from, to, limit, before) -> page; closed rounds never change, so a page changes only
        # when a round is stored, which clears it.
        self._pages: OrderedDict[
            tuple[int, int, int, int | None], oracle_pb2.GetPriceHistoryResponse
        ] = OrderedDict()

    @classmethod
    def in_memory(cls, config: AggregatorConfig, clock: Clock) -> HistoryRecorder:
        """History kept in process memory (tests, and servers built without a store)."""
        store = InMemoryHistoryStore(
            simulate=config.simulate, clock=clock, retention_days=config.database.retention_days
        )
        return cls(store, config)

    # -- SubmitPrice: durable before the answer ------------------------------------------

    def record(self, observation: Observation, now: float) -> ObservationRecord:
        """The observation as the history stores it (see NO_SYMBOL)."""
        base = observation.base or BASE_BTC
        return ObservationRecord(
            exchange=observation.exchange,
            node_id=observation.node_id,
            minute=observation.minute,
            base=base,
            quote=observation.quote,
            symbol=observation.symbol or NO_SYMBOL,
            price=observation.price,
            received_at=now,
            simulated=observation.simulated,
            signature=observation.signature,
            public_key=observation.public_key,
        )

    async def commit(self, observation: Observation, now: float) -> None:
        """Commit the observation; returns only once it is durable (or already was).

        Call after `Book.check` and before `Book.submit`: a failed commit raises
        HistoryUnavailableError (UNAVAILABLE) and the book never sees the observation, so the
        node keeps it and redelivers. The store's own conflict (a different price it already
        holds) is the same ALREADY_EXISTS refusal the book gives.
        """
        record = self.record(observation, now)
        key = (record.minute, *record.series)
        if self._committed.get(key) == record.price:
            return
        try:
            await self.store.add_observation(record)
        except ObservationConflictError as error:
            raise ConflictingObservationError(
                f"node {observation.node_id} already reported {observation.exchange} at minute "
                f"{observation.minute} with another price; a different price "
                f"({observation.price}) for the same candle is refused, the first report stands "
                f"({error})"
            ) from error
        self._remember(key, record.price, now)

    async def accepted(
        self, observation: Observation, result: SubmitResult, now: float, *, verified: bool = False
    ) -> None:
        """The book took it: the node's row changes (a resubmission changes nothing).

        `verified`: the admission check verified the observation's signature (ListNodes then
        says VERIFIED); a signature nobody checked is never called verified.
        """
        if result.outcome is Outcome.DUPLICATE:
            return
        entry = self._touch(observation.node_id, observation.exchange, now)
        entry.submissions += 1
        entry.last_minute = observation.minute
        entry.signature_status = _signature_status(observation.signature, verified=verified)
        entry.public_key = observation.public_key if observation.signature else b""
        await self.store.touch_node(
            NodeRecordRow(observation.node_id, entry.exchange, now, entry.submissions)
        )

    def refused(self, error: OracleError, request: oracle_pb2.PriceRequest, now: float) -> None:
        """Count a refused submission by reason (a bounded sample of requests is kept).

        A history that could not commit is not a refusal of the request: it is not counted.
        """
        if isinstance(error, HistoryUnavailableError):
            return
        self.store.count_refusal(refusal_reason(error), request.SerializeToString(), now)

    def _remember(self, key: _Key, price: Decimal, now: float) -> None:
        if now >= self._next_prune:
            # The same horizon as the book's idempotency records: older minutes are refused as
            # too late by validation before they could reach this cache.
            self._next_prune = now + MINUTE
            horizon = now - self._config.lateness - MINUTE
            for minute in [m for m in self._committed_minutes if m < horizon]:
                for old in self._committed_minutes.pop(minute):
                    self._committed.pop(old, None)
        if key not in self._committed:
            self._committed_minutes.setdefault(key[0], []).append(key)
        self._committed[key] = price

    def _touch(self, node_id: str, exchange: str, now: float) -> NodeEntry:
        entry = self._nodes.get(node_id)
        if entry is None:
            entry = NodeEntry(exchange, now, 0)
            self._nodes[node_id] = entry
            while len(self._nodes) > self._config.max_nodes:
                self._nodes.popitem(last=False)
        else:
            entry.exchange = exchange
            entry.last_seen = max(entry.last_seen, now)
            self._nodes.move_to_end(node_id)
        return entry

    # -- rounds ---------------------------------------------------------------------------

    async def on_round_closed(self, round_: oracle_pb2.Round) -> None:
        """Round listener: the closed round is committed before the listener returns."""
        pending, self._unsaved = self._unsaved, []
        for unsaved in [*pending, round_]:
            await self._save_round(unsaved)

    async def _save_round(self, round_: oracle_pb2.Round) -> None:
        try:
            await self.store.add_round(_round_record(round_))
            self._pages.clear()
        except DuplicateRoundError:
            # A closed round never changes: the stored one stands (and is what GetRound serves).
            _log.warning("round_already_stored", minute=format_minute(int(round_.minute)))
        except HistoryUnavailableError as error:
            # The round stays served from memory; it is written with the next close.
            _log.error(
                "round_not_stored", minute=format_minute(int(round_.minute)), error=str(error)
            )
            self._unsaved.append(round_)

    def stored_round(self, minute: int) -> oracle_pb2.Round | None:
        record = self.store.get_round(minute)
        return None if record is None else oracle_pb2.Round.FromString(record.round_proto)

    # -- recovery at start ------------------------------------------------------------------

    def recover(self, book: Book, now: float) -> Recovery:
        """Reload the window, idempotency horizon, node table and open rounds into `book`.

        Every observation inside the lateness horizon is replayed in the order it was accepted,
        at the time it was received, and each stored closed round is restored at its close time
        in between: the observations it was built from are replayed before it (they were its
        inputs, not late reports), those received after its close count as late again, and the
        stored round, not a recomputation, is what stands. That rebuilds exactly the state those
        submissions built the first time; no closed round is closed again or changed.
        """
        state = self.store.recover(now, self._config.lateness)
        found = Recovery(observations=len(state.observations), rounds=len(state.rounds))
        restores = sorted(state.rounds, key=lambda stored: stored.closed_at)
        by_minute = {stored.minute: stored for stored in restores}
        restored: set[int] = set()
        next_restore = 0

        def restore(stored: RoundRecord) -> None:
            if stored.minute not in restored:
                restored.add(stored.minute)
                book.restore_closed_round(oracle_pb2.Round.FromString(stored.round_proto))

        for row in state.nodes[-self._config.max_nodes :]:
            self._nodes[row.node_id] = NodeEntry(row.exchange, row.last_seen, row.submissions)
        found.nodes = len(self._nodes)
        for record in state.observations:
            # Rounds that closed (by their deadline) before this observation arrived; closed_at
            # is whole milliseconds, so within one the observation may be what closed it.
            while (
                next_restore < len(restores)
                and restores[next_restore].closed_at + 0.001 < record.received_at
            ):
                restore(restores[next_restore])
                next_restore += 1
            self._remember((record.minute, *record.series), record.price, now)
            entry = self._nodes.get(record.node_id)
            if entry is None:
                # Node rows ride along with commits and can lag by a second: a node whose row
                # was not flushed yet is counted from its observations.
                entry = self._touch(record.node_id, record.exchange, record.received_at)
                entry.submissions += 1
            elif record.received_at >= entry.last_seen:
                entry.exchange = record.exchange
                entry.last_seen = record.received_at
            if record.minute >= entry.last_minute:
                entry.last_minute = record.minute
                entry.signature_status = _signature_status(record.signature)
                entry.public_key = record.public_key if record.signature else b""
            try:
                result = book.submit(_observation(record), record.received_at)
            except OracleError as error:
                found.skipped += 1
                _log.warning(
                    "history_replay_skipped",
                    exchange=record.exchange,
                    node_id=record.node_id,
                    minute=format_minute(record.minute),
                    reason=str(error),
                )
                continue
            found.replayed += 1
            for closed in result.closed_rounds:
                stored = by_minute.get(int(closed.minute))
                if stored is None:
                    found.closed_again.append(closed)  # closed, never committed: store it
                else:
                    # This observation closed it the first time too: the stored round, not
                    # the recomputation, stands from here on, and what follows is late.
                    restore(stored)
        for stored in restores[next_restore:]:
            restore(stored)
        self._nodes = OrderedDict(sorted(self._nodes.items(), key=lambda item: item[1].last_seen))
        self.recovery = found
        _log.info(
            "history_recovered",
            observations=found.observations,
            replayed=found.replayed,
            skipped=found.skipped,
            rounds=found.rounds,
            nodes=found.nodes,
            closed_again=len(found.closed_again),
        )
        return found

    async def persist_recovered(self) -> None:
        """Commit the rounds the replay closed anew (before the server answers anything)."""
        rounds, self.recovery.closed_again = self.recovery.closed_again, []
        for round_ in rounds:
            await self._save_round(round_)

    # -- GetPriceHistory --------------------------------------------------------------------

    def history_page(
        self, request: oracle_pb2.GetPriceHistoryRequest
    ) -> oracle_pb2.GetPriceHistoryResponse:
        """Closed rounds, newest first, one page; bad input is INVALID_ARGUMENT, nothing else."""
        limit = _limit(request.limit, field="limit")
        low, high = request.from_minute, request.to_minute
        if low and high and low > high:
            raise InvalidObservationError(
                "from_minute", f"{low} is after to_minute {high}; the range is inclusive"
            )
        before = self._read_token(request.page_token, low, high) if request.page_token else None
        key = (low, high, limit, before)
        cached = self._pages.get(key)
        if cached is not None:
            self._pages.move_to_end(key)
            return cached
        records = self.store.rounds(low or None, high or None, limit + 1, before)
        # The stored bytes are the served rounds: the page is built as the wire form of
        # `repeated Round rounds = 1` and parsed once in C, not round by round in Python.
        response = oracle_pb2.GetPriceHistoryResponse.FromString(
            b"".join(
                _ROUNDS_TAG + _varint(len(r.round_proto)) + r.round_proto for r in records[:limit]
            )
        )
        if len(records) > limit:
            response.next_page_token = self._token(records[limit - 1].minute, low, high)
        self._pages[key] = response
        while len(self._pages) > _CACHED_PAGES:
            self._pages.popitem(last=False)
        return response

    def _token(self, before: int, low: int, high: int) -> str:
        payload = _TOKEN_PAYLOAD.pack(_TOKEN_VERSION, before, low, high)
        raw = payload + self._mac(payload)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def _mac(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._token_key, digest_size=_TOKEN_MAC_BYTES).digest()

    def _read_token(self, token: str, low: int, high: int) -> int:
        refusal = InvalidObservationError(
            "page_token",
            "not a next_page_token of this query from this aggregator (tokens do not survive a "
            "restart); ask again without page_token for the first page",
        )
        if len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
            raise refusal
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise refusal from None
        payload, mac = raw[: _TOKEN_PAYLOAD.size], raw[_TOKEN_PAYLOAD.size :]
        if len(payload) != _TOKEN_PAYLOAD.size or not hmac.compare_digest(mac, self._mac(payload)):
            raise refusal
        version, before, token_low, token_high = _TOKEN_PAYLOAD.unpack(payload)
        if version != _TOKEN_VERSION or (token_low, token_high) != (low, high):
            raise refusal
        return int(before)

    # -- ListNodes --------------------------------------------------------------------------

    def list_nodes(
        self, request: oracle_pb2.ListNodesRequest, now: float
    ) -> oracle_pb2.ListNodesResponse:
        """The node table, most recently seen first; a call is never counted as a node."""
        limit = _limit(request.limit, field="limit")
        cutoff = now - self._config.node_timeout
        response = oracle_pb2.ListNodesResponse(
            total=len(self._nodes),
            node_timeout_seconds=int(self._config.node_timeout),
            simulated=self._config.simulate,
        )
        for count, node_id in enumerate(reversed(self._nodes)):
            if count >= limit:
                break
            entry = self._nodes[node_id]
            response.nodes.add(
                node_id=node_id,
                exchange=entry.exchange,
                active=entry.last_seen >= cutoff,
                last_seen_ms=int(entry.last_seen * 1000),
                submissions=entry.submissions,
                last_minute=entry.last_minute,
                signature_status=entry.signature_status,
                public_key=entry.public_key,
            )
        return response

    def node_ids(self) -> Sequence[str]:
        """Node ids, least recently seen first (tests compare tables across a restart)."""
        return list(self._nodes)

    async def close(self) -> None:
        await self.store.close()


__all__ = [
    "HistoryError",
    "HistoryOpenError",
    "HistoryRecorder",
    "NodeEntry",
    "Recovery",
    "RoundNotFoundError",
    "open_history",
    "refusal_reason",
]
