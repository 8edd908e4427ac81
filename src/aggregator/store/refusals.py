"""Refused submissions: counted by reason, with a small sample of each, so junk cannot fill disk.

A flood of refused requests costs the history a counter increment each, never a row each: counts
are summed in memory and written once per flush as one row per (day, reason); of the requests
themselves only the newest `SAMPLES_PER_REASON` per reason are kept, each cut to `SAMPLE_BYTES`.
Reasons are the aggregator's own codes, but they are bounded too (length, number of distinct
reasons), so a bug that put request text into a reason still could not grow the tables.
Counts are not durable on return: a crash loses at most the last flush interval of them.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from aggregator.store.records import RefusalSample

SAMPLES_PER_REASON = 8
SAMPLE_BYTES = 1024
MAX_REASON_LENGTH = 64
MAX_REASONS = 64
# Where refusals beyond MAX_REASONS distinct reasons are counted.
OTHER_REASON = "other"
DAY = 86_400


def normalize_reason(reason: str) -> str:
    """A printable, bounded reason code."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(reason)[:MAX_REASON_LENGTH])
    return cleaned or "unspecified"


@dataclass(slots=True)
class RefusalBatch:
    """What one flush writes: (day, reason) -> (count, last_at), and the newest samples."""

    counts: dict[tuple[int, str], tuple[int, float]] = field(default_factory=dict)
    samples: dict[str, list[RefusalSample]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.counts or self.samples)


class RefusalLedger:
    """Thread-safe accumulator between `count_refusal` (event loop) and the writer thread."""

    def __init__(self, known_reasons: set[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._known = set(known_reasons or ())
        self._counts: dict[tuple[int, str], tuple[int, float]] = {}
        self._samples: dict[str, deque[RefusalSample]] = {}

    def add(self, reason: str, sample: bytes | None, now: float) -> bool:
        """Count one refusal; True when it is the first pending one (the writer needs waking)."""
        reason = normalize_reason(reason)
        with self._lock:
            if reason not in self._known:
                if len(self._known) >= MAX_REASONS:
                    reason = OTHER_REASON
                self._known.add(reason)
            first = not self._counts
            key = (int(now // DAY), reason)
            count, last_at = self._counts.get(key, (0, now))
            self._counts[key] = (count + 1, max(last_at, now))
            if sample is not None:
                kept = bytes(sample[:SAMPLE_BYTES])
                queue = self._samples.setdefault(reason, deque(maxlen=SAMPLES_PER_REASON))
                queue.append(RefusalSample(reason, now, len(sample), kept))
            return first

    def take(self) -> RefusalBatch:
        """Everything pending, leaving the ledger empty."""
        with self._lock:
            batch = RefusalBatch(
                self._counts, {reason: list(queue) for reason, queue in self._samples.items()}
            )
            self._counts = {}
            self._samples = {}
            return batch

    def restore(self, batch: RefusalBatch) -> None:
        """Put back a batch whose transaction rolled back, merging with what arrived since."""
        with self._lock:
            for key, (count, last_at) in batch.counts.items():
                pending, pending_last = self._counts.get(key, (0, last_at))
                self._counts[key] = (pending + count, max(pending_last, last_at))
            for reason, samples in batch.samples.items():
                queue = self._samples.setdefault(reason, deque(maxlen=SAMPLES_PER_REASON))
                newer = list(queue)
                queue.clear()
                queue.extend([*samples, *newer])
