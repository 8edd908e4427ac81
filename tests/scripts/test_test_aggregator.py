"""scripts/test_aggregator.py as an operator and a monitor use it: what it prints, how it exits.

Run in-process (its `main(argv)`) against a fake aggregator for the reporting paths, against the
real aggregator for the numbers, and as a subprocess with the system python for the venv re-exec.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from common.proto import oracle_pb2, oracle_pb2_grpc
from tests.scripts.fake_aggregator import FakeAggregator, healthy_three_exchanges, serving
from tests.scripts.helpers import REPO_ROOT, SCRIPTS, free_port


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_script", SCRIPTS / "test_aggregator.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


probe_script = _load_script()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = probe_script.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_healthy_aggregator_prints_the_aggregate_and_each_input_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = healthy_three_exchanges()
    with serving(fake) as port:
        code, out, err = _run(["--target", f"127.0.0.1:{port}"], capsys)
    assert code == 0
    assert err == ""
    assert "healthy, active nodes 3" in out
    assert "100,010.25 from 3 exchanges for 2026-11-25T23:21Z, age 10 s" in out
    for source, node in (("binance", "oracle-node-1"), ("coinbase", "oracle-node-2")):
        assert source in out
        assert node in out
    assert "USDT" in out
    assert "SIMULATED" not in out
    # A probe identifies itself and is not a node id the operator would mistake for one.
    assert fake.probes == ["probe:test_aggregator"]


def test_simulated_aggregate_is_labelled_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(healthy_three_exchanges(simulated=True)) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}"], capsys)
        json_code, json_out, _ = _run(["--target", f"127.0.0.1:{port}", "--json"], capsys)
    assert code == 0
    price_lines = [line for line in out.splitlines() if "100,0" in line]
    assert len(price_lines) == 4  # the aggregate and three inputs
    assert all("SIMULATED" in line for line in price_lines)
    assert json_code == 0
    assert json.loads(json_out)["simulated"] is True


def test_json_is_one_object_with_health_aggregate_and_inputs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(healthy_three_exchanges()) as port:
        code, out, _ = _run(["--target", f"http://127.0.0.1:{port}", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["healthy"] is True
    assert report["reachable"] is True
    assert report["simulated"] is False
    assert report["health"]["active_nodes"] == 3
    assert report["aggregate"]["price"] == 100010.25
    assert report["aggregate"]["aggregate_minute"] == 1_795_648_860
    assert report["aggregate"]["aggregate_minute_utc"] == "2026-11-25T23:21Z"
    assert [point["source"] for point in report["inputs"]] == ["binance", "coinbase", "kraken"]
    assert report["inputs"][0]["quote"] == "USDT"


def test_unhealthy_aggregator_exits_1_with_its_reason_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeAggregator(
        health=oracle_pb2.HealthResponse(
            healthy=False, active_nodes=1, message="1 exchange fresh, quorum is 2"
        ),
        price=oracle_pb2.GetPriceResponse(success=False, message="no fresh prices"),
    )
    with serving(fake) as port:
        code, out, err = _run(["--target", f"127.0.0.1:{port}"], capsys)
    assert code == 1
    assert "UNHEALTHY" in out
    assert err.strip() == "UNHEALTHY: 1 exchange fresh, quorum is 2"


def test_alive_exits_0_for_an_unhealthy_but_answering_aggregator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeAggregator(health=oracle_pb2.HealthResponse(healthy=False, simulated=True))
    with serving(fake) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}", "--alive", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["simulated"] is True


def test_unreachable_aggregator_exits_3_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        ["--target", f"127.0.0.1:{free_port()}", "--timeout", "2", "--json"], capsys
    )
    assert code == 3
    assert json.loads(out)["reachable"] is False
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("UNREACHABLE: cannot reach the aggregator")
    assert "run_multi_nodes.sh --only aggregator" in err  # not a dead end: one part can start
    assert "status.sh" in err


def test_the_unreachable_hint_carries_the_environment_in_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Copied as printed, the command must act on this system, not on the default run/ directory.
    monkeypatch.setenv("ORACLE_RUN_DIR", str(tmp_path / "my run"))
    monkeypatch.delenv("ORACLE_AGGREGATOR_PORT", raising=False)
    port = free_port()
    code, _, err = _run(["--target", f"127.0.0.1:{port}", "--timeout", "2"], capsys)
    assert code == 3
    expected = (
        f"ORACLE_RUN_DIR='{tmp_path / 'my run'}' ORACLE_AGGREGATOR_PORT={port} "
        f"{SCRIPTS / 'run_multi_nodes.sh'} --only aggregator"
    )
    assert expected in err


def test_an_unknown_exchange_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # The aggregator's answer to a source it does not know (its own validation).
    import grpc

    class Refusing(FakeAggregator):
        def GetAggregatedPrice(self, request, context):  # type: ignore[no-untyped-def]
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "source_filter: unknown exchange")

    fake = Refusing(health=oracle_pb2.HealthResponse(healthy=True))
    with serving(fake) as port:
        code, _, err = _run(["--target", f"127.0.0.1:{port}", "--source", "bitstamp"], capsys)
        watched, _, _ = _run(
            ["--target", f"127.0.0.1:{port}", "--source", "bitstamp", "--watch", "5"], capsys
        )
    assert code == 2
    assert err.strip() == (
        f"USAGE: aggregator at 127.0.0.1:{port} answered INVALID_ARGUMENT: "
        "source_filter: unknown exchange"
    )
    assert watched == 2  # --watch does not keep asking a question that cannot be answered


def test_a_malformed_source_is_refused_before_asking(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        probe_script.main(["--target", f"127.0.0.1:{free_port()}", "--source", "Bit stamp"])
    assert exit_info.value.code == 2
    assert "--source needs an exchange name" in capsys.readouterr().err


def test_one_exchange_is_singular(capsys: pytest.CaptureFixture[str]) -> None:
    fake = healthy_three_exchanges()
    fake.price.data_points = 1
    del fake.price.recent_prices[1:]
    with serving(fake) as port:
        _, out, _ = _run(["--target", f"127.0.0.1:{port}", "--source", "binance"], capsys)
    assert "from 1 exchange for" in out
    assert "1 exchanges" not in out


def test_json_prices_are_the_exact_decimals_of_the_e8_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = healthy_three_exchanges()
    # The double the contract also carries, and the exact integer beside it.
    fake.price.aggregated_price = 99782.26333333334
    fake.price.aggregated_price_e8 = 9_978_226_333_333
    fake.price.recent_prices[0].price = 100010.5
    fake.price.recent_prices[0].price_e8 = 10_001_050_000_000
    with serving(fake) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}", "--json"], capsys)
    assert code == 0
    assert '"price": 99782.26333333,' in out  # a JSON number with the exact digits
    assert "99782.26333333334" not in out
    assert '"price": 100010.5,' in out
    report = json.loads(out, parse_float=Decimal)
    assert report["aggregate"]["price"] == Decimal("99782.26333333")
    assert report["aggregate"]["exact"] is True
    assert report["inputs"][0]["exact"] is True
    assert report["inputs"][1]["exact"] is False  # no e8 sent for it: the double, 8 decimals


def test_json_prices_without_e8_are_the_double_to_8_decimals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = healthy_three_exchanges()
    fake.price.aggregated_price = 99782.26333333334  # the long float
    with serving(fake) as port:
        _, out, _ = _run(["--target", f"127.0.0.1:{port}", "--json"], capsys)
    assert '"price": 99782.26333333,' in out
    assert json.loads(out)["aggregate"]["exact"] is False


def test_a_forged_marker_in_an_answer_stays_a_string(capsys: pytest.CaptureFixture[str]) -> None:
    # The exact-number writer replaces a marker by a number; a hostile aggregator must not be
    # able to plant one (the marker is a random token per run).
    fake = healthy_three_exchanges()
    fake.price.recent_prices[0].node_id = "@@exact:1@@"
    fake.price.message = '"deadbeef:1"'
    with serving(fake) as port:
        _, out, _ = _run(["--target", f"127.0.0.1:{port}", "--json"], capsys)
    report = json.loads(out)
    assert report["inputs"][0]["node_id"] == "@@exact:1@@"
    assert report["aggregate"]["message"] == '"deadbeef:1"'


def test_a_port_that_never_answers_is_unreachable_well_before_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Issue 15: a probe of a down aggregator waited out its whole deadline. Here something holds
    # the port and accepts connections but never speaks gRPC (a hung or foreign process).
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        started = time.monotonic()
        code, _, err = _run(["--target", f"127.0.0.1:{port}", "--timeout", "10"], capsys)
        took = time.monotonic() - started
    finally:
        listener.close()
    assert code == 3
    assert err.startswith("UNREACHABLE: cannot reach the aggregator")
    assert took < 5  # the probe's connect timeout, not the 10 s deadline


def test_nothing_listening_is_unreachable_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, _ = _run(["--target", f"127.0.0.1:{free_port()}", "--timeout", "10"], capsys)
    assert code == 3
    assert time.monotonic() - started < 2


def test_original_aggregator_without_the_new_fields_still_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What the original Rust aggregator sends: only fields 1-5 / 1-4 are set.
    fake = FakeAggregator(
        health=oracle_pb2.HealthResponse(
            healthy=True, timestamp=1, active_nodes=4, version="1.0.0"
        ),
        price=oracle_pb2.GetPriceResponse(
            success=True,
            aggregated_price=106160.42,
            data_points=6,
            last_update=1_795_648_870,
            recent_prices=[
                oracle_pb2.PriceDataPoint(
                    price=106160.0,
                    timestamp=1_795_648_870,
                    source="binance",
                    node_id="binance-node",
                )
            ],
        ),
    )
    with serving(fake) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}"], capsys)
    assert code == 0
    assert "106,160.42 from 6 exchanges for minute unknown" in out
    assert "version 1.0.0" in out


def test_watch_probes_again_until_interrupted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    naps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(probe_script.time, "sleep", fake_sleep)
    with serving(healthy_three_exchanges()) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}", "--watch", "7", "--json"], capsys)
    assert code == 0
    assert naps == [7.0, 7.0]
    assert len([line for line in out.splitlines() if line.startswith("{")]) == 2


async def test_against_the_real_aggregator_reports_the_mean_of_three_exchanges() -> None:
    import grpc

    from aggregator.config import AggregatorConfig
    from aggregator.server import create_server

    now = time.time()
    minute = int(now // 60) * 60 - 60
    server, port = create_server(AggregatorConfig(host="127.0.0.1", port=0, simulate=False))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            for index, (source, price) in enumerate(
                (("binance", 100000.5), ("coinbase", 100003.0), ("kraken", 99999.25)), start=1
            ):
                await stub.SubmitPrice(
                    oracle_pb2.PriceRequest(
                        price=price, timestamp=minute, source=source, node_id=f"node-{index}"
                    )
                )
        result = await asyncio.to_thread(probe_script.probe, f"127.0.0.1:{port}", 5.0)
    finally:
        await server.stop(grace=None)
    assert result.exit_code == 0
    assert result.healthy is True
    assert result.simulated is False
    # The exact mean is 100000.91666...: the contract's 8 decimals, never a double's digits.
    assert result.aggregate["price"] == Decimal("100000.91666667")
    assert result.aggregate["aggregate_minute"] == minute
    assert result.health["active_nodes"] == 3  # the probe itself is not counted
    assert {point["source"] for point in result.inputs} == {"binance", "coinbase", "kraken"}


def _system_python_without_grpc() -> str | None:
    venv_bin = str(REPO_ROOT / ".venv" / "bin")
    path = os.pathsep.join(
        entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry != venv_bin
    )
    python = shutil.which("python3", path=path)
    if python is None or Path(python).resolve() == Path(sys.executable).resolve():
        return None
    return python


def test_runs_with_a_system_python_by_re_executing_in_the_venv() -> None:
    python = _system_python_without_grpc()
    if python is None:
        pytest.skip("no python3 outside the venv on PATH")
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PYTHONPATH"] = ""
    completed = subprocess.run(
        [
            python,
            str(SCRIPTS / "test_aggregator.py"),
            "--target",
            f"127.0.0.1:{free_port()}",
            "--json",
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
        check=False,
    )
    assert completed.returncode == 3, completed.stderr
    assert json.loads(completed.stdout)["reachable"] is False


def test_runs_with_bindings_generated_from_the_original_contract(tmp_path: Path) -> None:
    """The original .proto lacks every field the port added; the probe must not need them."""
    grpc_tools = pytest.importorskip("grpc_tools.protoc")
    original = REPO_ROOT / "tests" / "fixtures" / "original_contract" / "oracle.proto"
    (tmp_path / "protos" / "common" / "proto").mkdir(parents=True)
    (tmp_path / "protos" / "common" / "proto" / "oracle.proto").write_text(original.read_text())
    (tmp_path / "common" / "proto").mkdir(parents=True)
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "proto" / "__init__.py").write_text("")
    # The probe's one gRPC client imports nothing else of `common`: it goes beside the bindings.
    shutil.copy(REPO_ROOT / "src" / "common" / "grpc_client.py", tmp_path / "common")
    status = grpc_tools.main(
        [
            "protoc",
            f"-I{tmp_path / 'protos'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            "common/proto/oracle.proto",
        ]
    )
    assert status == 0
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    with serving(healthy_three_exchanges(simulated=True)) as port:
        completed = subprocess.run(
            [
                sys.executable,
                str(SCRIPTS / "test_aggregator.py"),
                "--target",
                f"127.0.0.1:{port}",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    # Only the original fields are decoded: the new ones read as their documented defaults.
    assert report["aggregate"]["price"] == 100010.25
    assert report["aggregate"]["aggregate_minute"] == 0
    assert report["simulated"] is False
    assert [point["source"] for point in report["inputs"]] == ["binance", "coinbase", "kraken"]
    assert all(point["quote"] == "" for point in report["inputs"])


def _degraded_with_exclusions() -> FakeAggregator:
    fake = healthy_three_exchanges()
    fake.health.healthy = False
    fake.health.status = oracle_pb2.PRICE_STATUS_DEGRADED
    answer = fake.price
    answer.status = oracle_pb2.PRICE_STATUS_DEGRADED
    answer.confidence = 0.0
    answer.method = oracle_pb2.AGGREGATION_METHOD_MEAN
    answer.final = True
    answer.usdt_at_par = True
    del answer.recent_prices[1:]
    answer.excluded.add(
        source="kraken",
        price=105000.0,
        quote="USD",
        minute=answer.aggregate_minute,
        excluded_reason="deviation",
        excluded_detail="4.99 % from the median 100010.00 (> 1.00 %)",
        deviation=0.0499,
    )
    answer.excluded.add(
        source="coinbase",
        price=100020.0,
        quote="USD",
        minute=answer.aggregate_minute - 300,
        excluded_reason="frozen",
        excluded_detail="close 100020 unchanged for 5 minutes while binance moved",
    )
    return fake


def test_prints_status_confidence_method_usdt_and_each_excluded_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(_degraded_with_exclusions()) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}"], capsys)
    assert code == 1  # DEGRADED is served, but not healthy
    assert "status: DEGRADED, confidence ± 0.00, mean of the kept inputs, final" in out
    assert "USDT taken at par with USD: no fresh USDT/USD rate" in out
    kraken = next(line for line in out.splitlines() if "excluded kraken" in line)
    assert "105,000.00 USD  deviation: 4.99 % from the median" in kraken
    assert "excluded coinbase" in out
    assert "frozen: close 100020 unchanged for 5 minutes" in out


def test_json_carries_status_excluded_and_usdt_conversion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = healthy_three_exchanges()
    fake.health.status = oracle_pb2.PRICE_STATUS_OK
    fake.price.status = oracle_pb2.PRICE_STATUS_OK
    fake.price.confidence = 10.0
    fake.price.confidence_e8 = 10 * 10**8
    fake.price.method = oracle_pb2.AGGREGATION_METHOD_MEDIAN
    fake.price.usdt_converted = True
    fake.price.usdt_usd_rate = 0.9995
    with serving(fake) as port:
        code, out, _ = _run(["--target", f"127.0.0.1:{port}", "--json"], capsys)
        text_code, text, _ = _run(["--target", f"127.0.0.1:{port}"], capsys)
    assert code == text_code == 0
    report = json.loads(out, parse_float=Decimal)
    aggregate = report["aggregate"]
    assert report["health"]["status"] == "OK"
    assert (aggregate["status"], aggregate["method"], aggregate["final"]) == ("OK", "median", False)
    assert aggregate["confidence"] == Decimal(10)
    assert aggregate["usdt"] == {"converted": True, "rate": Decimal("0.9995"), "at_par": False}
    assert aggregate["excluded"] == []
    assert "USDT converted to USD at 0.9995 (USDT/USD)" in text
    assert "round open" in text
    excluded = json.loads(_run_json(_degraded_with_exclusions(), capsys), parse_float=Decimal)[
        "aggregate"
    ]["excluded"]
    assert [(item["source"], item["reason"]) for item in excluded] == [
        ("kraken", "deviation"),
        ("coinbase", "frozen"),
    ]


def _run_json(fake: FakeAggregator, capsys: pytest.CaptureFixture[str]) -> str:
    with serving(fake) as port:
        _, out, _ = _run(["--target", f"127.0.0.1:{port}", "--json"], capsys)
    return out
