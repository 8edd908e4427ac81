"""The Grafana dashboard and the Prometheus alerts use only metric names and labels that exist.

A renamed metric would silently empty a panel or, worse, make an alert never fire: every name a
query references must be exported by the aggregator's or the node's registry (once every event
function has been called, so every labelled series exists), with the labels the query uses.
When promtool is installed (Debian's `prometheus` package) the rules are also checked and their
unit tests (deploy/prometheus/alerts_test.yml) run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from aggregator.metrics import AggregatorMetrics
from common.exchanges import EXCHANGES
from common.metrics import exported_names
from common.proto import oracle_pb2
from oracle_node.metrics import NodeMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "oracle-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"

# Names Prometheus itself provides for every target, and the labels it adds when scraping.
BUILTIN_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {
    "sum", "max", "min", "count", "avg", "by", "without", "rate", "increase", "irate",
    "histogram_quantile", "time", "vector", "and", "or", "unless", "offset", "le", "absent",
}  # fmt: skip

_NAME = re.compile(r"(?<![\w$\"'])([a-z_][a-z0-9_]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported() -> dict[str, frozenset[str]]:
    """Every sample name of both services, after every event function has been called once."""
    aggregator = AggregatorMetrics(exchanges=EXCHANGES, simulated=True, version="test")
    aggregator.record_submission("kraken", "counted")
    aggregator.record_refusal("price")
    aggregator.set_aggregate(
        price=Decimal(1),
        confidence=Decimal(1),
        status=oracle_pb2.PRICE_STATUS_OK,
        minute=60,
        inputs={"kraken": Decimal(1)},
    )
    aggregator.set_active_nodes(1)
    aggregator.set_draining(False)
    aggregator.record_round_closed(
        minute=60,
        closed_at=121.0,
        status=oracle_pb2.PRICE_STATUS_OK,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED,
    )
    aggregator.observe_rpc("SubmitPrice", grpc.StatusCode.OK, 0.001)
    aggregator.subscribers_changed(1)
    aggregator.subscriber_dropped("behind")
    aggregator.observe_db_write("observation", 0.001)

    node = NodeMetrics(exchange="kraken", node_id="n", simulated=False)
    node.record_fetch(
        outcome="ok", seconds=0.1, start_skew=0.0, finish_skew=0.1, minute=60, now=121.0
    )
    node.record_retry("rate_limit")
    node.record_submission(outcome="accepted", seconds=0.001, minute=60, now=121.0)
    node.set_buffer_depth(0)
    names = exported_names(aggregator.registry)
    names.update(exported_names(node.registry))
    return names


def references(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric name, label names matched) for every series selector in a PromQL expression."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    grouping = set()
    for group in _GROUPING.findall(without_strings):
        grouping.update(label.strip() for label in group.split(",") if label.strip())
    stripped = _GROUPING.sub(" ", without_strings)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)  # range selectors [5m]
    for name, selector in _NAME.findall(stripped):
        if name in PROMQL_WORDS or name in grouping:
            continue
        yield name, set(_MATCHER.findall(selector or ""))


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in _GROUPING.findall(expr):
        labels.update(label.strip() for label in group.split(",") if label.strip())
    return labels


def check_expression(expr: str, names: dict[str, frozenset[str]]) -> list[str]:
    problems = []
    used: set[str] = set()
    for name, matched in references(expr):
        if name in BUILTIN_SERIES:
            used |= TARGET_LABELS
            continue
        if name not in names:
            problems.append(f"{name}: no such metric in the registries")
            continue
        labels = names[name] | TARGET_LABELS
        used |= labels
        problems.extend(f"{name}: no label {label!r}" for label in matched - labels)
    problems.extend(
        f"grouping by unknown label {label!r}" for label in grouping_labels(expr) - used - {"le"}
    )
    return problems


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target)
        for panel in document["panels"]
        for target in panel.get("targets", [])
    ]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_dashboard_is_a_grafana_dashboard_over_a_prometheus_datasource_variable() -> None:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert document["uid"] == "btcfi-oracle"
    assert document["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    for panel in document["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for key in ("x", "y", "w", "h"):
            assert isinstance(panel["gridPos"][key], int)


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    expressions = " ".join(target["expr"] for _title, target in dashboard_targets())
    for name in (
        "oracle_aggregator_price_usd",
        "oracle_aggregator_confidence_usd",
        "oracle_aggregator_status",
        "oracle_aggregator_result_age_seconds",
        "oracle_aggregator_active_nodes",
        "oracle_aggregator_submissions_total",
        "oracle_aggregator_refusals_total",
        "oracle_aggregator_round_close_delay_seconds_bucket",
        "oracle_aggregator_rpc_duration_seconds_bucket",
        "oracle_node_fetch_skew_seconds_bucket",
        "oracle_node_fetch_duration_seconds_bucket",
        "oracle_node_buffer_depth",
        'oracle_aggregator_info{simulated="true"}',
    ):
        assert name in expressions, name


def test_every_dashboard_query_uses_existing_metrics_and_labels() -> None:
    names = exported()
    problems = [
        f"{title}: {problem}"
        for title, target in dashboard_targets()
        for problem in check_expression(target["expr"], names)
    ]
    assert problems == []


def test_every_alert_uses_existing_metrics_and_labels() -> None:
    names = exported()
    problems = [
        f"{rule['alert']}: {problem}"
        for rule in alert_rules()
        for problem in check_expression(rule["expr"], names)
    ]
    assert problems == []


def test_the_checker_itself_catches_a_renamed_metric_or_label() -> None:
    names = exported()
    assert check_expression("oracle_aggregator_price", names)  # the gauge is ..._price_usd
    assert check_expression('oracle_node_buffer_depth{venue="kraken"}', names)
    assert check_expression("sum by (venue) (rate(oracle_aggregator_refusals_total[5m]))", names)
    assert not check_expression(
        "sum by (reason) (rate(oracle_aggregator_refusals_total[5m]))", names
    )


def test_alerts_cover_stale_degraded_node_down_and_refusals_with_durations_and_text() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for required in (
        "OraclePriceStale",
        "OraclePriceDegraded",
        "OracleNodeDown",
        "OracleRefusalsRising",
    ):
        assert required in rules
    for name, rule in rules.items():
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    for command in (
        ["promtool", "check", "rules", str(ALERTS)],
        ["promtool", "test", "rules", str(ALERT_TESTS)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
