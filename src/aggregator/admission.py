"""Who may submit: signature and allowlist verdicts, rate limits, replay and equivocation guard.

SubmitPrice calls `Admission.admit` right after `validate_submission` and before the book sees
the observation, so every refusal here leaves the aggregate, the history and the node table as
they were. The order is docs/signing.md's ("How the aggregator checks a signed observation"):
the canonical payload is built from the request (and `price` must be the nearest double of
`price_e8`); an unknown node or a key that is not the node's own is UNAUTHENTICATED before any
curve arithmetic; a bad signature is UNAUTHENTICATED; an exchange the node may not report is
PERMISSION_DENIED; only then, the node authenticated, its rate limit is charged
(RESOURCE_EXHAUSTED), so a forger using an honest node's id cannot spend that node's budget.

Replay and equivocation: the signed observations accepted for each (node, exchange, pair,
minute) are remembered for the lateness horizon. The same signed observation again passes (the
book answers it as a duplicate); a different signed price for the same node, pair and minute is
refused ALREADY_EXISTS and kept as evidence: both signed observations, in the history database
when one is attached (`store`), else in a bounded list in memory.

Secure by default: without `[auth] allow_unsigned`, an observation without a signature is
UNAUTHENTICATED. With it (the original nodes' way), unsigned observations are accepted, but with
an allowlist only from allowlisted node ids for their exchanges, so the node table still holds
allowlisted nodes only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from aggregator.allowlist import Allowlist, AllowlistHolder, check_signed_observation
from aggregator.config import AggregatorConfig
from aggregator.history import refusal_reason
from aggregator.ratelimit import RateLimitConfig, SubmissionRateLimiter
from aggregator.store.protocol import HistoryStore
from aggregator.store.records import ObservationRecord
from aggregator.validation import Observation
from common.errors import (
    ConflictingObservationError,
    InvalidObservationError,
    OracleError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from common.logsetup import get_logger
from common.observation import (
    MAX_PRICE_E8,
    ObservationPayload,
    e8_to_double,
    e8_to_price,
)
from common.proto import oracle_pb2
from common.refusal_log import RefusalLog
from common.schnorr import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from common.timeutil import MINUTE

UNSIGNED: Final = "unsigned"
EQUIVOCATION: Final = "equivocation"
# Evidence kept in memory when no history store is attached: the newest ones.
MAX_EVIDENCE_IN_MEMORY: Final = 1000

_log = get_logger(service="aggregator", component="admission")

_SeriesMinute = tuple[str, str, str, str, int]  # node, exchange, base, quote, minute


@dataclass(frozen=True, slots=True)
class SignedObservation:
    """An observation with the signature that was verified for it, as received."""

    payload: ObservationPayload
    signature: bytes
    public_key: bytes
    received_at: float

    @property
    def key(self) -> _SeriesMinute:
        payload = self.payload
        return (payload.node_id, payload.exchange, payload.base, payload.quote, payload.minute)

    def record(self) -> ObservationRecord:
        """As the history stores an observation (equivocation evidence)."""
        payload = self.payload
        return ObservationRecord(
            exchange=payload.exchange,
            node_id=payload.node_id,
            minute=payload.minute,
            base=payload.base,
            quote=payload.quote,
            symbol=payload.symbol or "-",
            price=e8_to_price(payload.price_e8),
            received_at=self.received_at,
            simulated=payload.simulated,
            signature=self.signature,
            public_key=self.public_key,
        )


@dataclass(frozen=True, slots=True)
class Admitted:
    """What `admit` let through: the verified signed observation, or None when unsigned."""

    signed: SignedObservation | None


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Evidence: two different signed prices from one node for one pair and minute."""

    first: SignedObservation
    second: SignedObservation


async def keep_equivocation(store: HistoryStore, evidence: Equivocation) -> None:
    """Store `evidence` (both signed observations) in the history; durable on return."""
    await store.add_equivocation(evidence.first.record(), evidence.second.record())


def build_payload(request: oracle_pb2.PriceRequest, observation: Observation) -> ObservationPayload:
    """The canonical payload a signed `request` must have been signed over (docs/signing.md).

    Defaults are resolved as the node resolved them: an empty base is "BTC", an empty quote the
    exchange's default pair's (already in `observation.quote`). `price` must be the nearest double
    of `price_e8`, so an original client reading only `price` sees the signed value.
    """
    price_e8 = request.price_e8
    if not 0 < price_e8 <= MAX_PRICE_E8:
        raise InvalidObservationError(
            "price_e8", f"required with a signature: the exact price x 10^8, 1 to {MAX_PRICE_E8}"
        )
    if request.price != e8_to_double(price_e8):
        raise InvalidObservationError(
            "price", f"must be the nearest double of price_e8 = {price_e8} (price_e8 / 10^8)"
        )
    try:
        return ObservationPayload(
            node_id=observation.node_id,
            exchange=observation.exchange,
            base=request.base or "BTC",
            quote=observation.quote,
            symbol=request.symbol,
            minute=observation.minute,
            price_e8=price_e8,
            simulated=observation.simulated,
        )
    except InvalidObservationError:
        raise
    except (TypeError, ValueError) as error:  # pragma: no cover - the payload raises its own
        raise InvalidObservationError("observation", str(error)) from None


class Admission:
    """The aggregator's gate for SubmitPrice; one per servicer, single event loop."""

    def __init__(
        self,
        config: AggregatorConfig,
        *,
        allowlist: AllowlistHolder | None = None,
        store: HistoryStore | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self._config = config
        self.allow_unsigned = config.auth.allow_unsigned
        self.allowlist = allowlist
        if allowlist is None and config.auth.allowlist is not None:
            self.allowlist = AllowlistHolder.load(config.auth.allowlist)
        limits = config.limits
        self.limiter = SubmissionRateLimiter(
            RateLimitConfig(
                rate=limits.rate,
                burst=limits.burst,
                global_rate=limits.global_rate,
                global_burst=limits.global_burst,
                max_tracked_nodes=limits.max_tracked_nodes,
            )
        )
        # The history database: equivocation evidence goes there (else only to `evidence`).
        self.store = store
        self.refusals = refusals if refusals is not None else RefusalLog()
        self.evidence: deque[Equivocation] = deque(maxlen=MAX_EVIDENCE_IN_MEMORY)
        # The signed observations accepted, for replay and equivocation checks, by minute so
        # they are forgotten with the lateness horizon (a later one is refused as too late).
        self._accepted: dict[_SeriesMinute, SignedObservation] = {}
        self._by_minute: dict[int, list[_SeriesMinute]] = {}
        self._next_prune = 0.0

    @property
    def mode(self) -> str:
        """One phrase for logs and HealthCheck: what this aggregator accepts."""
        if not self.allow_unsigned:
            return "signed observations of allowlisted nodes only"
        if self.allowlist is None:
            return "UNSIGNED observations accepted (--allow-unsigned, no allowlist)"
        return "UNSIGNED observations of allowlisted nodes accepted (--allow-unsigned)"

    def refused(self, error: OracleError, now: float, **fields: object) -> None:
        """Count and (rate-limited) log one refusal of any kind, by its reason.

        The history's durable count (with a bounded sample of the request) is the recorder's
        (`HistoryRecorder.refused`), for submissions only; this is the log and the live count.
        """
        reason = refusal_reason(error)
        self.refusals.refused(reason, now, status=error.status.name, detail=str(error), **fields)

    async def admit(
        self, request: oracle_pb2.PriceRequest, observation: Observation, now: float
    ) -> Admitted:
        """Let a validated observation through or raise the refusal; changes nothing it guards.

        Only the rate limiter's tokens are spent, by an authenticated caller.
        """
        signed = bool(request.observation_signature) or bool(request.public_key)
        if not signed:
            self._admit_unsigned(observation)
            self.limiter.check(observation.node_id, now)
            return Admitted(None)
        allowlist = self.allowlist.current if self.allowlist is not None else None
        if allowlist is None:
            if not self.allow_unsigned:
                raise UnauthenticatedError(
                    "this aggregator has no allowlist, so it can attribute no signature to a "
                    "node: every submission is refused (start it with --allowlist PATH)",
                    reason="no_allowlist",
                )
            # --allow-unsigned without an allowlist: there is no key to check a signature
            # against, so a signed observation is taken as an unsigned one.
            self.limiter.check(observation.node_id, now)
            return Admitted(None)
        payload = build_payload(request, observation)
        public_key, signature = _key_and_signature(request)
        check_signed_observation(allowlist, payload, public_key, signature)
        self.limiter.check(observation.node_id, now)
        incoming = SignedObservation(payload, signature, public_key, now)
        await self._check_replay(incoming)
        return Admitted(incoming)

    def accepted(self, admitted: Admitted, now: float) -> None:
        """Remember a signed observation the book accepted (replay and equivocation checks)."""
        signed = admitted.signed
        if signed is None or signed.key in self._accepted:
            return
        self._prune(now)
        self._accepted[signed.key] = signed
        self._by_minute.setdefault(signed.payload.minute, []).append(signed.key)

    def _admit_unsigned(self, observation: Observation) -> None:
        if not self.allow_unsigned:
            raise UnauthenticatedError(
                "observation_signature: required; this aggregator accepts only signed "
                "observations of allowlisted nodes (give the node a key_file: `oracle-node "
                "keygen`; docs/signing.md)",
                reason=UNSIGNED,
            )
        allowlist = self.allowlist.current if self.allowlist is not None else None
        if allowlist is not None:
            _check_unsigned_node(allowlist, observation)

    async def _check_replay(self, incoming: SignedObservation) -> None:
        earlier = self._accepted.get(incoming.key)
        if earlier is None or earlier.payload.price_e8 == incoming.payload.price_e8:
            return  # new, or the same price again: the book answers it as a duplicate
        evidence = Equivocation(earlier, incoming)
        await self._keep(evidence)
        payload = incoming.payload
        raise EquivocationError(
            f"node {payload.node_id} already signed {payload.exchange} {payload.base}/"
            f"{payload.quote} for minute {payload.minute} at price_e8 {earlier.payload.price_e8}; "
            f"a different signed price ({payload.price_e8}) is equivocation: refused and kept "
            "as evidence, the first report stands"
        )

    async def _keep(self, evidence: Equivocation) -> None:
        self.evidence.append(evidence)
        first, second = evidence.first.payload, evidence.second.payload
        _log.warning(
            "equivocation",
            node_id=first.node_id,
            exchange=first.exchange,
            base=first.base,
            quote=first.quote,
            minute=first.minute,
            first_price_e8=first.price_e8,
            second_price_e8=second.price_e8,
            stored=self.store is not None,
        )
        if self.store is not None:
            await keep_equivocation(self.store, evidence)

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + MINUTE
        horizon = now - self._config.lateness - MINUTE
        for minute in [m for m in self._by_minute if m < horizon]:
            for key in self._by_minute.pop(minute):
                self._accepted.pop(key, None)


class EquivocationError(ConflictingObservationError):
    """A second, different signed price from one node for one pair and minute (ALREADY_EXISTS)."""

    reason = EQUIVOCATION


def _key_and_signature(request: oracle_pb2.PriceRequest) -> tuple[bytes, bytes]:
    public_key, signature = bytes(request.public_key), bytes(request.observation_signature)
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise InvalidObservationError(
            "public_key", f"must be the node's {PUBLIC_KEY_BYTES}-byte x-only public key"
        )
    if len(signature) != SIGNATURE_BYTES:
        raise InvalidObservationError(
            "observation_signature", f"must be a {SIGNATURE_BYTES}-byte BIP340 signature"
        )
    return public_key, signature


def _check_unsigned_node(allowlist: Allowlist, observation: Observation) -> None:
    permit = allowlist.get(observation.node_id)
    if permit is None:
        raise UnauthenticatedError(
            f"node_id {observation.node_id!r} is not on this aggregator's allowlist",
            reason="unknown_node",
        )
    if observation.exchange not in permit.exchanges:
        raise PermissionDeniedError(
            f"node {observation.node_id!r} is not allowed to report {observation.exchange!r}",
            reason="exchange_not_allowed",
        )
