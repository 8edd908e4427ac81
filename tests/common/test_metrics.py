"""The shared metrics endpoint: served over loopback HTTP, own registry, clear port errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from common.errors import ConfigError
from common.metrics import MetricsServer, MetricsSettings, exported_names, new_registry
from tests.metrics_helpers import scrape, value

LOOPBACK = MetricsSettings(port=0)


@pytest.fixture
def registry_and_counter() -> tuple[CollectorRegistry, Counter]:
    registry = new_registry()
    counter = Counter("demo_events", "Demo events", ("kind",), registry=registry)
    return registry, counter


@pytest.fixture
def server(registry_and_counter: tuple[CollectorRegistry, Counter]) -> Iterator[MetricsServer]:
    registry, _counter = registry_and_counter
    with MetricsServer(registry, LOOPBACK) as started:
        yield started


def test_a_scrape_sees_counters_move(
    server: MetricsServer, registry_and_counter: tuple[CollectorRegistry, Counter]
) -> None:
    _registry, counter = registry_and_counter
    counter.labels("a").inc()
    assert value(scrape(server.url), "demo_events_total", kind="a") == 1
    counter.labels("a").inc(2)
    assert value(scrape(server.url), "demo_events_total", kind="a") == 3


def test_the_registry_is_the_service_own_with_process_metrics(
    server: MetricsServer, registry_and_counter: tuple[CollectorRegistry, Counter]
) -> None:
    registry_and_counter[1].labels("b").inc()
    # Registered in prometheus_client's process-wide default registry: must not be served.
    Counter("global_registry_events", "Not ours").inc()
    names = {name for name, _labels in scrape(server.url)}
    assert "process_cpu_seconds_total" in names
    assert "python_info" in names
    assert "demo_events_total" in names
    assert "global_registry_events_total" not in names


def test_it_listens_on_loopback_by_default() -> None:
    assert MetricsSettings().host == "127.0.0.1"


def test_a_taken_port_is_a_clear_config_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        metrics = MetricsServer(
            new_registry(), MetricsSettings(port=port), setting_name="[metrics]"
        )
        with pytest.raises(ConfigError) as refused:
            metrics.start()
    message = str(refused.value)
    assert f"127.0.0.1:{port}" in message
    assert "[metrics] port" in message
    assert "enabled = false" in message


def test_other_paths_and_methods_are_refused(server: MetricsServer) -> None:
    assert httpx.get(f"{server.url}/nope").status_code == 404
    assert httpx.get(f"{server.url}/healthz").status_code == 404  # no health answer given
    assert httpx.post(f"{server.url}/metrics").status_code == 405
    assert httpx.get(f"{server.url}/").text == "/metrics\n"


def test_a_health_answer_is_served_as_json_with_its_status() -> None:
    answers = iter([(200, {"status": "ok"}), (503, {"status": "failing"})])
    with MetricsServer(new_registry(), LOOPBACK, health=lambda: next(answers)) as server:
        first = httpx.get(f"{server.url}/healthz")
        second = httpx.get(f"{server.url}/healthz")
    assert (first.status_code, first.json()) == (200, {"status": "ok"})
    assert (second.status_code, second.json()) == (503, {"status": "failing"})
    assert first.headers["content-type"] == "application/json"


def test_stop_closes_the_port() -> None:
    server = MetricsServer(new_registry(), LOOPBACK)
    server.start()
    url = server.url
    httpx.get(f"{url}/metrics").raise_for_status()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/metrics")
    server.stop()  # twice is harmless


def test_exported_names_give_the_sample_names_queries_use(
    registry_and_counter: tuple[CollectorRegistry, Counter],
) -> None:
    registry, counter = registry_and_counter
    counter.labels("a").inc()
    names = exported_names(registry)
    assert names["demo_events_total"] == frozenset({"kind"})
    assert "demo_events" not in names


@pytest.mark.parametrize(
    "values",
    [{"port": 70000}, {"port": True}, {"host": ""}, {"host": "a b"}, {"enabled": "yes"}, {"x": 1}],
)
def test_bad_metrics_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="1 validation error for MetricsSettings"):
        MetricsSettings.model_validate(values)


def test_a_flood_of_idle_connections_cannot_become_a_flood_of_threads(
    server: MetricsServer,
) -> None:
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + 16
    finally:
        for connection in idle:
            connection.close()
    # Once the idle clients are gone (their threads end on EOF), scrapes are answered again.
    deadline = time.monotonic() + 5
    while True:
        try:
            scrape(server.url)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
