"""The hard guard against signing one DLC event twice with different outcomes.

Two signatures with one nonce over different messages reveal the oracle's key, and a DLC nonce is
fixed by the announcement (derived from the seed and the event id, `committer.dlc.nonces`). So the
one rule is: per event id, at most one outcome, ever. It must hold across restarts, a deleted
committer database and a database restored from an older copy. Hence the guard keeps its own
state *beside the key*, not in the database:

* an append-only journal (`dlc-attestations.journal`, 0600): one JSON line per event, written and
  fsynced *before* the first signature is made (write-ahead), so a crash between the two leaves a
  record and never a signature without one. A torn last line (a crash mid-write) was never
  followed by signing and is ignored.
* a high-water mark (`dlc-attestations.hwm`, 0600, replaced atomically): the latest maturity ever
  attested. Events are attested in maturity order, so an event at or below the mark that the
  journal does not know means the journal itself was replaced by an older copy: the guard then
  refuses everything until an operator looks (the mark and the journal disagree).
* the database's own attestations are merged into the journal at startup, so deleting or
  restoring either one alone loses nothing.

Threat model and what remains (README, "DLC oracle"): the guard protects against restarts,
crashes, a lost or restored database, a restored journal and retries. It does not protect against
an operator restoring the journal, the mark *and* the database to the same older copy, or running
two committers with one key: the last line of defence there is that an outcome is a deterministic
function of an immutable closed round, so the same event gets the same outcome again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from common.errors import OracleError, PreconditionError

JOURNAL_NAME: Final = "dlc-attestations.journal"
HWM_NAME: Final = "dlc-attestations.hwm"


class EquivocationRefusedError(OracleError):
    """An event was about to be signed with an outcome other than the one already signed."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    event_id: str
    maturity: int
    outcomes: tuple[str, ...]


def _open_private(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_CREAT, 0o600)


class AttestationGuard:
    """Loads the journal and mark once; `claim` is the only door to signing an outcome."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.journal_path = directory / JOURNAL_NAME
        self.hwm_path = directory / HWM_NAME
        self._entries: dict[str, JournalEntry] = {}
        self._load()
        self.high_water = self._read_hwm()
        newest = max((entry.maturity for entry in self._entries.values()), default=0)
        if newest > self.high_water:  # a crash after the journal line, before the mark
            self._write_hwm(newest)

    def _load(self) -> None:
        if not self.journal_path.exists():
            return
        data = self.journal_path.read_bytes()
        if data and not data.endswith(b"\n"):
            data = self._repair_tail(data)
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                entry = JournalEntry(
                    str(record["event_id"]), int(record["maturity"]), tuple(record["outcomes"])
                )
            except (ValueError, KeyError, TypeError):
                if number == len(lines):  # torn last line: written, never followed by signing
                    continue
                raise PreconditionError(
                    f"{self.journal_path}: line {number} is corrupt; refusing to attest until it "
                    f"is repaired (never delete this file: it prevents nonce reuse)"
                ) from None
            previous = self._entries.get(entry.event_id)
            if previous is not None and previous.outcomes != entry.outcomes:
                raise PreconditionError(
                    f"{self.journal_path}: event {entry.event_id} has two different outcomes"
                )
            self._entries[entry.event_id] = entry

    def _repair_tail(self, data: bytes) -> bytes:
        """A crash mid-append leaves a line without its newline: end it, or cut it if torn."""
        cut = data.rfind(b"\n") + 1
        try:
            json.loads(data[cut:])
        except ValueError:
            with self.journal_path.open("r+b") as stream:
                stream.truncate(cut)
                os.fsync(stream.fileno())
            return data[:cut]
        with self.journal_path.open("ab") as stream:
            stream.write(b"\n")
            os.fsync(stream.fileno())
        return data + b"\n"

    def _read_hwm(self) -> int:
        try:
            return int(self.hwm_path.read_text(encoding="ascii").strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            raise PreconditionError(f"{self.hwm_path}: not a high-water mark") from None

    def _write_hwm(self, maturity: int) -> None:
        temporary = self.hwm_path.with_suffix(".tmp")
        descriptor = _open_private(temporary, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(descriptor, f"{maturity}\n".encode("ascii"))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        temporary.replace(self.hwm_path)
        self.high_water = maturity

    def known(self, event_id: str) -> JournalEntry | None:
        return self._entries.get(event_id)

    def merge(self, entries: Iterable[JournalEntry]) -> None:
        """Add the database's attestations the journal lacks (a journal restored or lost)."""
        for entry in entries:
            existing = self._entries.get(entry.event_id)
            if existing is None:
                self._append(entry)
            elif existing.outcomes != entry.outcomes:
                raise PreconditionError(
                    f"event {entry.event_id}: the database and {self.journal_path} hold "
                    f"different outcomes; refusing to start"
                )

    def claim(self, event_id: str, maturity: int, outcomes: tuple[str, ...]) -> None:
        """Allow signing `outcomes` for `event_id`, or raise EquivocationRefusedError.

        Returns normally when the same outcome was claimed before (re-signing the same outcome
        with the same nonce gives the same signature: harmless), or after the claim is durably
        recorded for a new event.
        """
        existing = self._entries.get(event_id)
        if existing is not None:
            if existing.outcomes != outcomes:
                raise EquivocationRefusedError(
                    f"event {event_id} was already attested with another outcome; refusing to "
                    f"sign a second one (it would reveal the oracle key)"
                )
            return
        if maturity <= self.high_water:
            raise EquivocationRefusedError(
                f"event {event_id} (maturity {maturity}) is at or below the high-water mark "
                f"{self.high_water} in {self.hwm_path} but not in {self.journal_path}: the "
                f"journal was replaced by an older copy; refusing to attest"
            )
        self._append(JournalEntry(event_id, maturity, outcomes))

    def _append(self, entry: JournalEntry) -> None:
        line = json.dumps(
            {"event_id": entry.event_id, "maturity": entry.maturity, "outcomes": entry.outcomes},
            separators=(",", ":"),
        )
        descriptor = _open_private(self.journal_path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(descriptor, line.encode("utf-8") + b"\n")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self._entries[entry.event_id] = entry
        if entry.maturity > self.high_water:
            self._write_hwm(entry.maturity)
