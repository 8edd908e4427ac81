"""The committer's state and its three duties, each a method with time passed in.

* `ingest(rounds, now)`: sign a report for every closed round not reported yet (exactly once:
  the database's primary key is the minute), publish it to report subscribers, and attest the DLC
  event whose round it is;
* `announce_due(now)`: announce the scheduled events inside the lead time;
* `anchor_due(now)`: commit every finished period's reports on Bitcoin.

The gRPC follower, the servicer, the HTTP endpoint and the scheduler only call these. Nothing
here reads a clock or touches the network except through the injected backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from committer.anchoring import AnchorUtxo, build_anchor_tx, sign_anchor_tx
from committer.audit import audit_round
from committer.backends import Backend, BackendError
from committer.bitcoin import BitcoinError, address, output_key, p2tr_script
from committer.config import CommitterConfig
from committer.dlc.digits import decompose
from committer.dlc.guard import AttestationGuard, EquivocationRefusedError, JournalEntry
from committer.dlc.oracle import (
    EventPlan,
    SigningMode,
    build_announcement,
    due_maturities,
    event_id_for,
    outcome_value,
    round_minute_for,
    sign_outcome,
)
from committer.dlc.tlv import parse_announcement
from committer.merkle import commitment, merkle_root
from committer.report import ReportError, encode_report, facts_from_round, sign_report
from committer.store import AnchorRow, AnnouncementRow, AttestationRow, CommitterStore, ReportRow
from common.logsetup import get_logger
from common.proto import committer_pb2, oracle_pb2
from common.schnorr import SigningKey
from common.timeutil import MINUTE, format_minute

_log = get_logger(service="committer")

# Fictitious funding outpoint of the simulate-mode anchor chain (never broadcast: regtest,
# SIMULATED). Its txid is sha256("SIMULATED anchor funding"), so it cannot be a real one by chance.
SIMULATED_FUNDING_TXID = "a3f9c0f4d7a4c5d5f6a91f73a4c4a3f3a2d1c6b5e4f3a2b1c0d9e8f7a6b5c4d3"
SIMULATED_FUNDING_SATS = 1_000_000
# A closed round's candle opened at least a minute ago; beyond this it is a bad clock or a lie.
FUTURE_SLACK = 120


@dataclass(frozen=True, slots=True)
class Keys:
    oracle: SigningKey
    nonce_seed: bytes
    anchor: SigningKey | None  # the local signer's key; None with an external wallet
    anchor_internal_key: bytes


@dataclass(slots=True, eq=False)  # identity: each stream is its own subscriber
class Subscriber:
    queue: asyncio.Queue[committer_pb2.RoundReport | None]
    overflowed: bool = False


@dataclass(slots=True)
class Counters:
    reports: int = 0
    duplicates: int = 0
    refused: int = 0
    attestations: int = 0
    anchors: int = 0
    last_round_minute: int = 0
    timings_ms: list[float] = field(default_factory=list)


class Committer:
    """Owns the store, the keys and the guard; every duty goes through here."""

    def __init__(
        self,
        config: CommitterConfig,
        store: CommitterStore,
        keys: Keys,
        *,
        backend: Backend | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.keys = keys
        self.backend = backend
        self.guard = AttestationGuard(config.guard_dir)
        # A database restored from an older copy may lack attestations the journal has, and a
        # journal lost or restored may lack the database's: both are merged before any signing.
        self.guard.merge(
            JournalEntry(row.event_id, row.maturity, row.outcomes) for row in store.attestations()
        )
        self.subscribers: set[Subscriber] = set()
        self.counters = Counters()
        self._lock = asyncio.Lock()
        self._discovered: AnchorUtxo | None = None

    @property
    def simulated(self) -> bool:
        return self.config.simulate

    @property
    def signing_mode(self) -> SigningMode:
        return self.config.dlc.signing_mode

    # --- reports ------------------------------------------------------------------------------

    async def ingest(self, rounds: Iterable[oracle_pb2.Round], now: float) -> list[ReportRow]:
        """Report every new closed round of `rounds` (in minute order); returns the new rows."""
        async with self._lock:
            return self._ingest(rounds, now)

    def _ingest(self, rounds: Iterable[oracle_pb2.Round], now: float) -> list[ReportRow]:
        candidates = sorted((r for r in rounds if r.closed), key=lambda r: r.minute)
        known = self.store.known_minutes([r.minute for r in candidates])
        fresh: list[ReportRow] = []
        seen: set[int] = set()
        for round_ in candidates:
            if round_.minute in known or round_.minute in seen:
                self.counters.duplicates += 1
                self._check_unchanged(round_)
                continue
            row = self._sign(round_, now)
            if row is not None:
                fresh.append(row)
                seen.add(row.minute)
        if not fresh:
            return []
        self.store.add_reports(fresh)
        self.counters.reports += len(fresh)
        self.counters.last_round_minute = max(self.counters.last_round_minute, fresh[-1].minute)
        for row in fresh:
            self._publish(row)
        for row in fresh:
            try:
                self._attest_for(row, now)
            except Exception:  # noqa: BLE001 (one failed attestation must not stop the reports)
                _log.exception("attestation_failed", minute=row.minute)
        return fresh

    def _sign(self, round_: oracle_pb2.Round, now: float) -> ReportRow | None:
        try:
            facts = facts_from_round(round_)
        except ReportError as error:
            self.counters.refused += 1
            _log.error("round_refused", minute=round_.minute, reason=str(error))
            return None
        if facts.minute > now + FUTURE_SLACK:
            self.counters.refused += 1
            _log.error("round_refused", minute=round_.minute, reason="round is in the future")
            return None
        if facts.simulated != self.simulated:
            self.counters.refused += 1
            _log.error(
                "round_refused",
                minute=round_.minute,
                reason="simulated round on a real committer, or the reverse",
            )
            return None
        audit = audit_round(facts)
        if not audit.ok:
            # Never vouch for a round whose inputs are not what their nodes signed.
            self.counters.refused += 1
            _log.error("round_refused", minute=round_.minute, problems=list(audit.problems))
            return None
        report = sign_report(self.keys.oracle, facts)
        return ReportRow(
            minute=facts.minute,
            encoding=report.encoding,
            digest=report.digest,
            signature=report.signature,
            status=facts.status,
            price_e8=facts.price_e8,
            confidence_e8=facts.confidence_e8,
            simulated=facts.simulated,
            signed_at_ms=int(now * 1000),
            round_proto=round_.SerializeToString(deterministic=True),
        )

    def _check_unchanged(self, round_: oracle_pb2.Round) -> None:
        stored = self.store.report(round_.minute)
        if stored is None:
            return
        try:
            encoding = encode_report(facts_from_round(round_), self.keys.oracle.public_key)
        except ReportError:
            encoding = b""
        if encoding != stored.encoding:
            _log.error(
                "round_changed_after_close",
                minute=round_.minute,
                detail="the aggregator served a different closed round; the first report stands",
            )

    def report_message(self, row: ReportRow) -> committer_pb2.RoundReport:
        round_ = oracle_pb2.Round.FromString(row.round_proto)
        return committer_pb2.RoundReport(
            minute=row.minute,
            report=row.encoding,
            digest=row.digest,
            signature=row.signature,
            oracle_public_key=self.keys.oracle.public_key,
            status=row.status,  # type: ignore[arg-type]
            price_e8=row.price_e8,
            confidence_e8=row.confidence_e8,
            simulated=row.simulated,
            label="SIMULATED" if row.simulated else "",
            signed_at_ms=row.signed_at_ms,
            round=round_,
            anchor_id=row.anchor_id or 0,
        )

    def _publish(self, row: ReportRow) -> None:
        if not self.subscribers:
            return
        message = self.report_message(row)
        for subscriber in list(self.subscribers):
            if subscriber.overflowed:
                continue
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.overflowed = True  # the stream ends with RESOURCE_EXHAUSTED
                subscriber.queue.get_nowait()
                subscriber.queue.put_nowait(None)

    # --- DLC ---------------------------------------------------------------------------------

    def announce_due(self, now: float) -> list[str]:
        """Announce every scheduled event inside the lead time not announced yet."""
        if not self.config.dlc.enabled:
            return []
        dlc = self.config.dlc
        announced = []
        for maturity in due_maturities(
            now, interval=dlc.event_interval_seconds, lead=dlc.lead_seconds
        ):
            event_id = event_id_for(maturity, simulated=self.simulated)
            if self.store.announcement(event_id) is not None:
                continue
            plan = EventPlan(event_id, maturity, dlc.nb_digits, dlc.unit)
            announcement = build_announcement(
                self.keys.oracle, self.keys.nonce_seed, plan, self.signing_mode
            )
            row = AnnouncementRow(
                event_id,
                maturity,
                announcement.serialize(),
                self.signing_mode.value,
                committer_pb2.EVENT_STATE_ANNOUNCED,
                self.simulated,
                int(now),
            )
            # Nonces and announcement are stored in one transaction before anything serves them.
            self.store.add_announcement(row, announcement.event.nonces)
            announced.append(event_id)
        if announced:
            _log.info("events_announced", count=len(announced), first=announced[0])
        return announced

    def _attest_for(self, row: ReportRow, now: float) -> None:
        if not self.config.dlc.enabled:
            return
        maturity = row.minute + MINUTE
        announcement_row = self.store.announcement_for_maturity(maturity)
        if (
            announcement_row is None
            or announcement_row.state != committer_pb2.EVENT_STATE_ANNOUNCED
        ):
            return
        assert round_minute_for(maturity) == row.minute  # noqa: S101 (one rule, two names)
        if row.status == oracle_pb2.PRICE_STATUS_UNKNOWN:
            self.store.set_announcement_state(
                announcement_row.event_id, committer_pb2.EVENT_STATE_UNATTESTABLE
            )
            _log.warning(
                "event_not_attested",
                event_id=announcement_row.event_id,
                reason="its round closed UNKNOWN (no price): never attested",
            )
            return
        self.attest(announcement_row, row, now)

    def attest(self, announcement_row: AnnouncementRow, row: ReportRow, now: float) -> None:
        announcement = parse_announcement(announcement_row.tlv)
        mode = SigningMode(announcement_row.mode)
        value = outcome_value(row.price_e8)
        descriptor = announcement.event.descriptor
        digits = decompose(value, base=descriptor.base, nb_digits=descriptor.nb_digits)
        try:
            self.guard.claim(announcement_row.event_id, announcement_row.maturity, digits)
        except EquivocationRefusedError as error:
            _log.critical(
                "attestation_refused", event_id=announcement_row.event_id, reason=str(error)
            )
            return
        signed = sign_outcome(self.keys.oracle, self.keys.nonce_seed, announcement, value, mode)
        self.store.add_attestation(
            AttestationRow(
                event_id=announcement_row.event_id,
                maturity=announcement_row.maturity,
                round_minute=row.minute,
                outcome_value=signed.value,
                clamped=signed.clamped,
                outcomes=signed.attestation.outcomes,
                tlv=signed.attestation.serialize(),
                round_status=row.status,
                round_price_e8=row.price_e8,
                attested_at_ms=int(now * 1000),
            ),
            committer_pb2.EVENT_STATE_ATTESTED,
        )
        self.counters.attestations += 1
        _log.info(
            "event_attested",
            event_id=announcement_row.event_id,
            value=signed.value,
            clamped=signed.clamped,
            round=format_minute(row.minute),
        )

    # --- anchoring ---------------------------------------------------------------------------

    def funding_address(self) -> str:
        return address(p2tr_script(output_key(self.keys.anchor_internal_key)), self.config.network)

    def _funding_utxo(self) -> AnchorUtxo | None:
        last = self.store.last_anchor()
        if last is not None and last.change_txid:
            return AnchorUtxo(
                last.change_txid, last.change_vout, last.change_amount, last.change_root
            )
        anchor = self.config.anchor
        if anchor.funding_txid:
            return AnchorUtxo(anchor.funding_txid, anchor.funding_vout, anchor.funding_amount, b"")
        if self._discovered is not None:
            return self._discovered
        if self.simulated:
            return AnchorUtxo(SIMULATED_FUNDING_TXID, 0, SIMULATED_FUNDING_SATS, b"")
        return None

    async def discover_funding(self) -> None:
        """Ask the backend for the funding address's outputs when no chain exists yet."""
        if self.backend is None or self._funding_utxo() is not None:
            return
        try:
            unspent = await self.backend.unspent(self.funding_address())
        except BackendError as error:
            _log.warning("funding_lookup_failed", reason=str(error))
            return
        if unspent:
            best = max(unspent, key=lambda u: u.amount)
            self._discovered = AnchorUtxo(best.txid, best.vout, best.amount, b"")

    async def anchor_due(self, now: float) -> list[AnchorRow]:
        """Anchor every finished period's unanchored reports (late reports join the next one)."""
        if not self.config.anchor.enabled:
            return []
        async with self._lock:
            made = []
            period = self.config.anchor.period_seconds
            boundary = int(now - self.config.anchor.settle_seconds) // period * period
            reports = self.store.unanchored(boundary)
            while reports:
                start = reports[0].minute // period * period
                batch = [r for r in reports if r.minute < start + period]
                reports = reports[len(batch) :]
                made.append(await self._anchor(batch, start, start + period, now))
            return made

    async def _anchor(
        self, batch: Sequence[ReportRow], start: int, end: int, now: float
    ) -> AnchorRow:
        anchor_config = self.config.anchor
        root = merkle_root([r.digest for r in batch])
        committed = commitment(start, end - start, len(batch), root)
        last = self.store.last_anchor()
        anchor_id = 1 if last is None else last.anchor_id + 1
        mode = anchor_config.mode
        internal_key = self.keys.anchor_internal_key
        utxo = self._funding_utxo()
        state = committer_pb2.ANCHOR_STATE_COMMITTED
        txid, tx_bytes, psbt_text, detail = "", b"", "", ""
        change = AnchorUtxo("", 0, 0, b"")
        if utxo is None:
            detail = f"no funds: send coins to {self.funding_address()} (or set funding_txid)"
            _log.warning("anchor_unfunded", anchor_id=anchor_id, detail=detail)
        else:
            try:
                built = build_anchor_tx(
                    mode=mode,
                    internal_key=internal_key,
                    commitment=committed,
                    utxo=utxo,
                    fee_rate=anchor_config.fee_rate,
                )
            except BitcoinError as error:
                detail = str(error)
                _log.error("anchor_unbuildable", anchor_id=anchor_id, reason=detail)
            else:
                txid, psbt_text, change = built.txid, built.psbt.b64encode(), built.change
                tx_bytes = built.tx.serialize(include_witness=False)
                self._write_psbt(anchor_id, start, psbt_text)
                state = committer_pb2.ANCHOR_STATE_PSBT_WRITTEN
                if self.keys.anchor is not None and anchor_config.signer == "local":
                    signed = sign_anchor_tx(built, self.keys.anchor.secret_bytes(), utxo)
                    tx_bytes = signed.serialize(include_witness=True)
                    state = committer_pb2.ANCHOR_STATE_SIGNED
        row = AnchorRow(
            anchor_id=anchor_id,
            period_start=start,
            period_end=end,
            minutes=tuple(r.minute for r in batch),
            root=root,
            commitment=committed,
            mode=mode.value,
            state=state,
            txid=txid,
            tx=tx_bytes,
            psbt=psbt_text,
            output_index=0,
            internal_key=internal_key,
            detail=detail,
            change_txid=change.txid,
            change_vout=change.vout,
            change_amount=change.amount,
            change_root=change.merkle_root,
            created_at=int(now),
        )
        self.store.add_anchor(row)  # durable before any broadcast
        self.counters.anchors += 1
        _log.info(
            "anchor_built",
            anchor_id=anchor_id,
            period=format_minute(start),
            reports=len(batch),
            txid=txid,
            state=committer_pb2.AnchorState.Name(state),
            simulated=self.simulated,
        )
        if state == committer_pb2.ANCHOR_STATE_SIGNED and anchor_config.broadcast and self.backend:
            row = await self._broadcast(row)
        return row

    async def _broadcast(self, row: AnchorRow) -> AnchorRow:
        assert self.backend is not None  # noqa: S101 (checked by the caller)
        try:
            txid = await self.backend.broadcast(row.tx.hex())
        except BackendError as error:
            _log.error("anchor_broadcast_failed", anchor_id=row.anchor_id, reason=str(error))
            self.store.update_anchor(row.anchor_id, state=row.state, tx=row.tx, detail=str(error))
            return row
        if txid != row.txid:
            _log.error("anchor_broadcast_txid_mismatch", expected=row.txid, got=txid)
        self.store.update_anchor(
            row.anchor_id, state=committer_pb2.ANCHOR_STATE_BROADCAST, tx=row.tx, detail=""
        )
        _log.info("anchor_broadcast", anchor_id=row.anchor_id, txid=row.txid)
        return self.store.anchor(row.anchor_id) or row

    def _write_psbt(self, anchor_id: int, start: int, psbt_text: str) -> None:
        directory: Path = self.config.anchor.psbt_dir
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        label = "SIMULATED-" if self.simulated else ""
        path = directory / f"{label}anchor-{anchor_id:06d}-{start}.psbt"
        path.write_text(psbt_text + "\n", encoding="ascii")
