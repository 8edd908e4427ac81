#!/usr/bin/env python3
"""Committer benchmark: round close -> signed report, event time -> attestation, catch-up rate.

Runs the real follower against the in-process fake aggregator over loopback gRPC (the same fake
the tests use: it implements SubscribePrices and GetPriceHistory as proto/oracle.proto documents),
with the committer's SQLite database on disk (WAL, synchronous=FULL), rounds carrying three real
node signatures (each checked before signing):

* close -> report: from the aggregator publishing a closed round to the signed report being
  stored and published to StreamRoundReports subscribers (goal: p99 < 100 ms);
* event -> attestation: for rounds that are an announced DLC event's round, from the round's close
  to its 20 digit signatures being stored (goal: < 1 s after the round closes);
* catch-up: a fresh committer reading a day of rounds (1,440) through GetPriceHistory pages.

Usage: .venv/bin/python scripts/bench_committer.py [--rounds N] [--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from committer.app import Committer, Subscriber  # noqa: E402
from committer.follower import Follower  # noqa: E402
from committer.store import open_store  # noqa: E402
from common.logsetup import configure_logging  # noqa: E402
from tests.committer.conftest import keys, make_config  # noqa: E402
from tests.committer.fake_aggregator import start_fake_aggregator  # noqa: E402
from tests.committer.rounds import BASE_MINUTE, make_round  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def live(rounds: int, workdir: Path) -> dict[str, object]:
    server, port, fake = await start_fake_aggregator()
    config = make_config(
        workdir / "live", dlc={"event_interval_seconds": 600, "lead_seconds": 86_400}
    )
    committer = Committer(config, open_store(config.committer.database), keys())
    now = float(BASE_MINUTE)
    committer.announce_due(now)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    follower = Follower(committer, channel, clock=lambda: now)
    stopping = asyncio.Event()
    task = asyncio.create_task(follower.run(stopping))
    await follower.connected.wait()
    subscriber = Subscriber(asyncio.Queue(maxsize=10_000))
    committer.subscribers.add(subscriber)
    report_ms: list[float] = []
    attest_ms: list[float] = []
    prepared = [make_round(BASE_MINUTE + 60 * i) for i in range(rounds)]
    for round_ in prepared:
        now = round_.minute + 62.0
        started = time.perf_counter()
        fake.close_round(round_)
        await subscriber.queue.get()
        elapsed = (time.perf_counter() - started) * 1000
        report_ms.append(elapsed)
        announcement = committer.store.announcement_for_maturity(round_.minute + 60)
        if announcement is not None:
            if committer.store.attestation(announcement.event_id) is None:
                raise RuntimeError(f"event {announcement.event_id} was not attested")
            attest_ms.append(elapsed)  # attested in the same step, before the report is awaited
    stopping.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await channel.close(None)
    await server.stop(None)
    committer.store.close()
    return {
        "rounds": rounds,
        "report_p50_ms": statistics.median(report_ms),
        "report_p99_ms": percentile(report_ms, 0.99),
        "report_max_ms": max(report_ms),
        "attestations": len(attest_ms),
        "attest_p50_ms": statistics.median(attest_ms) if attest_ms else 0.0,
        "attest_max_ms": max(attest_ms) if attest_ms else 0.0,
    }


async def catch_up(rounds: int, workdir: Path) -> dict[str, object]:
    server, port, fake = await start_fake_aggregator()
    fake.add_rounds([make_round(BASE_MINUTE + 60 * i) for i in range(rounds)])
    config = make_config(workdir / "catchup")
    committer = Committer(config, open_store(config.committer.database), keys())
    now = BASE_MINUTE + 60.0 * rounds  # backfill_seconds (one day) reaches back to round 0
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    follower = Follower(committer, channel, clock=lambda: now)
    started = time.perf_counter()
    new = await follower.catch_up()
    seconds = time.perf_counter() - started
    if not new == rounds == committer.store.report_count():
        raise RuntimeError(f"caught up {new} of {rounds} rounds")
    await channel.close(None)
    await server.stop(None)
    committer.store.close()
    return {"rounds": rounds, "seconds": seconds, "reports_per_second": rounds / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="live rounds (default 300)")
    parser.add_argument("--catch-up", type=int, default=1440, help="rounds to catch up (a day)")
    parser.add_argument("--smoke", action="store_true", help="tiny run: keeps the script working")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    configure_logging("error", json=True)  # the figures are the output; logs only on errors
    if args.smoke:
        args.rounds, args.catch_up = 25, 120
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        live_figures = asyncio.run(live(args.rounds, workdir))
        catch_figures = asyncio.run(catch_up(args.catch_up, workdir))
    machine = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(f"Committer benchmark ({'smoke' if args.smoke else 'full'}): {machine}")
    print("| measure | n | p50 | p99 / max | goal |")
    print("|---|---|---|---|---|")
    print(
        f"| round close -> signed report | {live_figures['rounds']} | "
        f"{live_figures['report_p50_ms']:.2f} ms | {live_figures['report_p99_ms']:.2f} ms p99 | "
        f"p99 < 100 ms {'met' if live_figures['report_p99_ms'] < 100 else 'MISSED'} |"  # type: ignore[operator]
    )
    print(
        f"| round close -> DLC attestation | {live_figures['attestations']} | "
        f"{live_figures['attest_p50_ms']:.2f} ms | {live_figures['attest_max_ms']:.2f} ms max | "
        f"< 1 s {'met' if live_figures['attest_max_ms'] < 1000 else 'MISSED'} |"  # type: ignore[operator]
    )
    print(
        f"| catch-up of {catch_figures['rounds']} rounds | | "
        f"{catch_figures['reports_per_second']:.0f} reports/s | "
        f"{catch_figures['seconds']:.2f} s total | |"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "live": live_figures, "catch_up": catch_figures}, indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
