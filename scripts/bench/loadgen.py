"""The load generator: N concurrent in-flight calls from separate processes, raw latencies back.

The parent (`run_load`) starts `processes` copies of this module, each with its share of the
in-flight calls on one `grpc.aio` channel, so the client's Python never shares an interpreter (or
a GIL) with the server it measures. All workers start at the same wall-clock instant, warm up
unrecorded, then record the latency of every successful call until the window ends (or, in count
mode, until their share of calls is done). Each writes a JSON result file; the parent merges them.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.procs import REPO_ROOT, bench_env, cpu_seconds
from bench.stats import LoadFigures, summarise
from bench.traffic import ServerClock, SubmitStream
from common.proto import oracle_pb2, oracle_pb2_grpc

RPCS = ("submit", "get", "history")
# GetPriceHistory as the explorer and the committer page it: 100 rounds per call.
HISTORY_LIMIT = 100


@dataclass(frozen=True)
class WorkerSpec:
    """Everything one worker process needs, passed as JSON on its command line."""

    target: str
    rpc: str
    concurrency: int
    warmup: float
    duration: float
    count: int  # > 0: count mode (exactly this many calls, no warm-up), else timed mode
    nodes_per_stream: int
    node_prefix: str
    clock_t0: float
    clock_speed: float
    simulated: bool
    out_path: str


async def _run_worker(spec: WorkerSpec) -> dict[str, Any]:
    clock = ServerClock(spec.clock_t0, spec.clock_speed)
    latencies: list[int] = []
    errors: Counter[str] = Counter()
    duplicates = 0
    issued = 0
    tickets = spec.count
    get_request = oracle_pb2.GetPriceRequest()
    history_request = oracle_pb2.GetPriceHistoryRequest(limit=HISTORY_LIMIT)

    async with grpc.aio.insecure_channel(spec.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        # Handshake: READY once connected, then wait for the parent's GO, so every worker's
        # process start-up and connection set-up stay outside the measured window.
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        begin = time.perf_counter_ns()
        record_from = begin + int(spec.warmup * 1e9) if spec.count <= 0 else begin
        stop_at = record_from + int(spec.duration * 1e9)
        last_end = record_from

        async def stream_loop(slot: int) -> None:
            nonlocal tickets, duplicates, last_end, issued
            submits = SubmitStream(
                f"{spec.node_prefix}-s{slot}",
                spec.nodes_per_stream,
                clock,
                simulated=spec.simulated,
            )
            while True:
                if spec.count > 0:
                    if tickets <= 0:
                        break
                    tickets -= 1
                elif time.perf_counter_ns() >= stop_at:
                    break
                started = time.perf_counter_ns()
                issued += 1
                try:
                    if spec.rpc == "submit":
                        response = await stub.SubmitPrice(submits.next_request())
                        duplicated = response.duplicate
                    elif spec.rpc == "history":
                        await stub.GetPriceHistory(history_request)
                        duplicated = False
                    else:
                        await stub.GetAggregatedPrice(get_request)
                        duplicated = False
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                    continue
                ended = time.perf_counter_ns()
                if started >= record_from:
                    latencies.append(ended - started)
                    duplicates += duplicated
                    last_end = max(last_end, ended)

        await asyncio.gather(*(stream_loop(slot) for slot in range(spec.concurrency)))

    return {
        "latencies_ns": latencies,
        "seconds": (last_end - record_from) / 1e9,
        "errors": dict(errors),
        "duplicates": duplicates,
        "total_calls": issued,
    }


def run_load(
    target: str,
    rpc: str,
    concurrency: int,
    *,
    processes: int = 1,
    warmup: float = 1.0,
    duration: float = 5.0,
    count: int = 0,
    node_prefix: str = "bench",
    clock: ServerClock | None = None,
    simulated: bool = False,
    nodes: int = 300,
    server_pid: int | None = None,
) -> LoadFigures:
    """Run one load level against `target`: `processes` workers share `concurrency` slots."""
    if rpc not in RPCS:
        raise ValueError(f"rpc must be one of {RPCS}")
    clock = clock or ServerClock(time.time())
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    counts = [count // processes + (i < count % processes) for i in range(processes)]
    # `nodes` ids in all, each slot owning its share (slots never send for the same node, so a
    # node's reports stay one per minute even with many calls in flight).
    nodes_per_stream = max(1, math.ceil(nodes / concurrency))
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workers = []
        for index, (share, share_count) in enumerate(zip(shares, counts, strict=True)):
            spec = WorkerSpec(
                target=target,
                rpc=rpc,
                concurrency=share,
                warmup=warmup,
                duration=duration,
                count=share_count,
                nodes_per_stream=nodes_per_stream,
                node_prefix=f"{node_prefix}-w{index}",
                clock_t0=clock.t0,
                clock_speed=clock.speed,
                simulated=simulated,
                out_path=str(Path(tmp) / f"worker-{index}.json"),
            )
            workers.append(
                (
                    spec,
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.loadgen", json.dumps(asdict(spec))],
                        env=bench_env(),
                        cwd=REPO_ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    ),
                )
            )
        for _spec, proc in workers:
            assert proc.stdout is not None  # noqa: S101 - set by Popen above
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError(f"load worker could not connect to {target}")
        cpu_before = cpu_seconds(server_pid) if server_pid else None
        for _spec, proc in workers:
            assert proc.stdin is not None  # noqa: S101 - set by Popen above
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        latencies: list[int] = []
        errors: Counter[str] = Counter()
        duplicates = total_calls = 0
        seconds = 0.0
        for spec, proc in workers:
            if proc.wait() != 0:
                raise RuntimeError(f"load worker exited with {proc.returncode}")
            result = json.loads(Path(spec.out_path).read_text(encoding="utf-8"))
            latencies.extend(result["latencies_ns"])
            errors.update(result["errors"])
            duplicates += result["duplicates"]
            seconds = max(seconds, result["seconds"])
            total_calls += result["total_calls"]
        server_cpu = (
            cpu_seconds(server_pid) - cpu_before if server_pid and cpu_before is not None else None
        )
    return summarise(
        latencies,
        seconds,
        error_codes=dict(errors),
        duplicates=duplicates,
        total_calls=total_calls,
        server_cpu_seconds=server_cpu,
    )


def main() -> None:
    spec = WorkerSpec(**json.loads(sys.argv[1]))
    result = asyncio.run(_run_worker(spec))
    Path(spec.out_path).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
