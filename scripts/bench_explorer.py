#!/usr/bin/env python3
"""Explorer figures: /api/price throughput, live-update delay to many open pages, memory.

Runs, all on loopback: the in-process fake aggregator of tests/explorer (it implements
SubscribePrices as the contract documents), the real `oracle-explorer` as its own process, and
the clients here. It prints:

- `/api/price` calls/s and latency with 16 requests in flight (the page's and scripts' read path);
- the delay from a round closing at the aggregator to the new price arriving at each of N open
  server-sent event streams (N pages), p50/p99/max over every stream and round;
- the explorer's RSS with those streams open.

    .venv/bin/python scripts/bench_explorer.py                # ~30 s
    .venv/bin/python scripts/bench_explorer.py --streams 1000 --rounds 30
    .venv/bin/python scripts/bench_explorer.py --smoke        # seconds: CI keeps it working

Clients and the fake share this process and the machine's cores with the explorer: the figures
are end to end and pessimistic. Exit 0 when it ran; 1 when the explorer did not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402 - after the path set-up, like the fake below

from tests.explorer.fake_aggregator import (  # noqa: E402
    FakeAggregator,
    make_round,
    price_from_round,
    simulated_history,
    start_fake,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError("the explorer exited at start")
            try:
                async with http.get(url + "/healthz") as response:
                    document = await response.json()
                    if document["aggregator_reachable"] and document["mode"] == "subscribe":
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the explorer did not become ready in 30 s")


async def _price_load(url: str, seconds: float, in_flight: int) -> dict[str, float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                async with http.get(url + "/api/price") as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"/api/price answered {response.status}")
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - began
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": _quantile(latencies, 0.5) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
    }


async def _fan_out(
    url: str, fake: FakeAggregator, streams: int, rounds: int, pid: int
) -> dict[str, float]:
    closed_at: dict[int, float] = {}
    delays: list[float] = []
    ready = asyncio.Event()
    connected = 0
    minute0 = fake.price.aggregate_minute
    last_minute = minute0 + rounds * 60
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def page() -> None:
            nonlocal connected
            seen: set[int] = set()
            async with http.get(url + "/api/stream") as response:
                name = ""
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name == "price":
                        minute = json.loads(line[6:])["minute"]
                        if minute == minute0 and not ready.is_set():
                            connected += 1
                            if connected == streams:
                                ready.set()
                        elif minute in closed_at and minute not in seen:
                            seen.add(minute)  # health checks resend the same price: not new
                            delays.append(time.perf_counter() - closed_at[minute])
                        if minute == last_minute:
                            return

        tasks = [asyncio.create_task(page()) for _ in range(streams)]
        await asyncio.wait_for(ready.wait(), 60)
        rss = _rss_mib(pid)
        for index in range(1, rounds + 1):
            minute = minute0 + index * 60
            prices = {"binance": Decimal(100000 + index), "kraken": Decimal(100001 + index)}
            closed_at[minute] = time.perf_counter()
            fake.close_round(make_round(minute, prices), time.time())
            await asyncio.sleep(0.5)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return {
        "streams": streams,
        "rounds": rounds,
        "deliveries": len(delays),
        "p50_ms": _quantile(delays, 0.5) * 1000,
        "p99_ms": _quantile(delays, 0.99) * 1000,
        "max_ms": max(delays) * 1000,
        "rss_mib": rss,
    }


async def main(args: argparse.Namespace) -> int:
    now = time.time()
    # The generated .pyi marks every OracleService method abstract; the runtime base class answers
    # UNIMPLEMENTED for the ones the fake leaves out.
    fake = FakeAggregator()  # type: ignore[abstract]
    history = simulated_history(int(now // 60 * 60) - 60, 180)
    fake.add_rounds(history)
    fake.set_price(price_from_round(history[-1], now))
    server, aggregator_port = await start_fake(fake)
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Room for every stream of the run (the default bound is 100 pages).
    config = Path(tempfile.mkdtemp()) / "explorer.toml"
    config.write_text(f"[explorer]\nmax_streams = {args.streams + 10}\n")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measurement
        [
            sys.executable,
            "-m",
            "explorer",
            "--port",
            str(port),
            "--aggregator",
            f"127.0.0.1:{aggregator_port}",
            "--log-level",
            "warning",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_up(url, process)
        idle = _rss_mib(process.pid)
        price = await _price_load(url, args.seconds, 16)
        fan_out = await _fan_out(url, fake, args.streams, args.rounds, process.pid)
    except RuntimeError as error:
        print(f"bench_explorer: {error}", file=sys.stderr)
        return 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        await server.stop(None)
    expected = args.streams * args.rounds
    print(f"explorer benchmark ({'smoke' if args.smoke else 'full'}), {os.cpu_count()} cores")
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| /api/price, 16 in flight | {price['calls_per_s']:,.0f} calls/s, "
        f"p50 {price['p50_ms']:.2f} ms, p99 {price['p99_ms']:.2f} ms |"
    )
    print(
        f"| round close -> new price on each of {fan_out['streams']} open streams "
        f"({fan_out['deliveries']:,}/{expected:,} deliveries) | p50 {fan_out['p50_ms']:.1f} ms, "
        f"p99 {fan_out['p99_ms']:.1f} ms, max {fan_out['max_ms']:.1f} ms |"
    )
    print(
        f"| explorer RSS | {idle:.1f} MiB idle, {fan_out['rss_mib']:.1f} MiB "
        f"with {fan_out['streams']} streams |"
    )
    if args.json:
        Path(args.json).write_text(  # noqa: ASYNC240 - after the measurements
            json.dumps({"price": price, "fan_out": fan_out, "idle_rss_mib": idle}, indent=2)
        )
    return 0 if fan_out["deliveries"] == expected else 1


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500, help="open event streams (pages)")
    parser.add_argument("--rounds", type=int, default=20, help="round closes to deliver")
    parser.add_argument("--seconds", type=float, default=5.0, help="/api/price load duration")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.streams, args.rounds, args.seconds = 5, 2, 0.5
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_arguments())))
