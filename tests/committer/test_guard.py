"""The nonce-reuse guard: restarts, a deleted database, a restored journal, torn writes."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from committer.dlc.guard import AttestationGuard, EquivocationRefusedError, JournalEntry
from common.errors import PreconditionError

ZEROS = ("0",) * 20
ONES = ("1",) * 20


def test_same_outcome_again_is_allowed_a_different_one_never(tmp_path: Path) -> None:
    guard = AttestationGuard(tmp_path)
    guard.claim("e1", 3600, ZEROS)
    guard.claim("e1", 3600, ZEROS)
    with pytest.raises(EquivocationRefusedError, match="another outcome"):
        guard.claim("e1", 3600, ONES)
    assert stat.S_IMODE(guard.journal_path.stat().st_mode) == 0o600


def test_the_refusal_survives_a_restart(tmp_path: Path) -> None:
    AttestationGuard(tmp_path).claim("e1", 3600, ZEROS)
    restarted = AttestationGuard(tmp_path)
    with pytest.raises(EquivocationRefusedError):
        restarted.claim("e1", 3600, ONES)


def test_a_restored_older_journal_is_caught_by_the_high_water_mark(tmp_path: Path) -> None:
    guard = AttestationGuard(tmp_path)
    guard.claim("e1", 3600, ZEROS)
    backup = tmp_path / "backup.journal"
    shutil.copy(guard.journal_path, backup)
    guard.claim("e2", 7200, ZEROS)
    shutil.copy(backup, guard.journal_path)  # the operator restores yesterday's journal
    restored = AttestationGuard(tmp_path)
    with pytest.raises(EquivocationRefusedError, match="older copy"):
        restored.claim("e2", 7200, ONES)
    restored.claim("e3", 10800, ONES)  # later events still go through


def test_database_records_are_merged_and_conflicts_stop_the_start(tmp_path: Path) -> None:
    guard = AttestationGuard(tmp_path)
    guard.merge([JournalEntry("e1", 3600, ZEROS)])
    with pytest.raises(EquivocationRefusedError):
        AttestationGuard(tmp_path).claim("e1", 3600, ONES)
    with pytest.raises(PreconditionError, match="different outcomes"):
        AttestationGuard(tmp_path).merge([JournalEntry("e1", 3600, ONES)])


def test_a_torn_last_line_is_cut_and_a_corrupt_middle_line_stops(tmp_path: Path) -> None:
    guard = AttestationGuard(tmp_path)
    guard.claim("e1", 3600, ZEROS)
    with guard.journal_path.open("ab") as stream:
        stream.write(b'{"event_id":"e2","matu')  # crash mid-append
    repaired = AttestationGuard(tmp_path)
    repaired.claim("e2", 7200, ONES)
    assert AttestationGuard(tmp_path).known("e2") is not None
    content = guard.journal_path.read_bytes()
    guard.journal_path.write_bytes(b"garbage\n" + content)
    with pytest.raises(PreconditionError, match="corrupt"):
        AttestationGuard(tmp_path)
