"""The JSON API and the pages against the in-process fake aggregator: what a user or script sees."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from common.proto import oracle_pb2
from common.timeutil import minute_floor
from explorer.app import CONTENT_SECURITY_POLICY
from explorer.documents import Documents
from tests.explorer.conftest import System, close_system, make_system, populated_fake, wait_for
from tests.explorer.fake_aggregator import (
    Excluded,
    FakeAggregator,
    make_round,
    node_key,
    price_from_round,
    start_fake,
)
from tests.explorer.fake_committer import AnchoredCommitter


async def get_json(system: System, path: str) -> tuple[int, Any]:
    async with system.http.get(system.url + path) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def get_text(system: System, path: str) -> tuple[int, str]:
    async with system.http.get(system.url + path) as response:
        return response.status, await response.text()


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[tuple[str, Any]]:
    """The next `count` named events of a server-sent event stream."""
    events: list[tuple[str, Any]] = []
    name = ""
    async with asyncio.timeout(5):
        while len(events) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


# -- /api/price and the live stream --------------------------------------------------------------


async def test_price_is_the_aggregate_as_exact_strings(system: System) -> None:
    status, document = await get_json(system, "/api/price")
    live = system.fake.price
    assert status == 200
    assert (
        document["price"]
        == f"{live.aggregated_price_e8 // 10**8}.{live.aggregated_price_e8 % 10**8:08d}"
    )
    assert isinstance(document["price"], str)
    assert document["confidence"] == "1.00000000"
    assert document["status"] == "OK"
    assert document["minute"] == live.aggregate_minute
    assert document["simulated"] is True
    assert document["aggregator"]["reachable"] is True
    assert document["aggregator"]["mode"] == "subscribe"
    assert {item["exchange"] for item in document["inputs"]} == {"binance", "coinbase", "kraken"}


async def test_the_stream_pushes_each_change_and_round_close(system: System) -> None:
    async with system.http.get(system.url + "/api/stream") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        [(name, first)] = await read_events(response, 1)
        assert name == "price"
        assert first["minute"] == system.fake.price.aggregate_minute
        minute = first["minute"] + 60
        closing = make_round(
            minute, {"binance": Decimal("123456.78"), "kraken": Decimal("123456.80")}
        )
        system.fake.close_round(closing, time.time())
        events = await read_events(response, 2)
    by_name = dict(events)
    assert by_name["price"]["minute"] == minute
    assert by_name["price"]["price"] == "123456.79000000"
    assert by_name["round"]["minute"] == minute
    assert by_name["round"]["status"] == "OK"


async def test_without_subscribe_prices_the_feed_polls(old_system: System) -> None:
    fake = old_system.fake
    assert old_system.explorer.feed.state.mode == "poll"
    assert fake.calls.get("SubscribePrices") == 1
    async with old_system.http.get(old_system.url + "/api/stream") as response:
        await read_events(response, 1)
        minute = fake.price.aggregate_minute + 60
        fake.close_round(
            make_round(minute, {"coinbase": Decimal(5000), "kraken": Decimal(5002)}), time.time()
        )
        events = await read_events(response, 2)
    names = [name for name, _ in events]
    assert "round" in names  # "refresh": the page reloads its rounds
    prices = [doc for name, doc in events if name == "price"]
    assert prices[-1]["minute"] == minute
    assert prices[-1]["aggregator"]["mode"] == "poll"


async def test_stream_count_is_bounded() -> None:
    now = time.time()
    system = await make_system(populated_fake(now), now, max_streams=1)
    try:
        async with system.http.get(system.url + "/api/stream") as first:
            await read_events(first, 1)
            status, document = await get_json(system, "/api/stream")
            assert status == 503
            assert document["error"]["code"] == "too_many_streams"
    finally:
        await close_system(system)


# -- rounds ------------------------------------------------------------------------------------


async def test_rounds_are_newest_first_and_paginate_without_overlap(system: System) -> None:
    status, first = await get_json(system, "/api/rounds?limit=40")
    assert status == 200
    minutes = [round_["minute"] for round_ in first["rounds"]]
    assert minutes == sorted(minutes, reverse=True)
    assert len(minutes) == 40
    assert first["next_cursor"]
    _, second = await get_json(system, f"/api/rounds?limit=40&cursor={first['next_cursor']}")
    _, third = await get_json(system, f"/api/rounds?limit=40&cursor={second['next_cursor']}")
    seen = (
        minutes + [r["minute"] for r in second["rounds"]] + [r["minute"] for r in third["rounds"]]
    )
    assert len(seen) == len(set(seen)) == 90
    assert sorted(seen) == sorted(system.fake.rounds)
    assert third["next_cursor"] is None


async def test_rounds_in_a_range(system: System) -> None:
    minutes = sorted(system.fake.rounds)
    low, high = minutes[10], minutes[19]
    _, document = await get_json(system, f"/api/rounds?from={low}&to={high}")
    assert [r["minute"] for r in document["rounds"]] == list(reversed(minutes[10:20]))
    excluded = [r for r in document["rounds"] if r["excluded"]]
    assert excluded
    assert excluded[0]["excluded"][0]["excluded_reason"] == "deviation"


async def test_one_round_with_every_input_and_not_anchored(system: System) -> None:
    minute = sorted(system.fake.rounds)[3]  # index 3 has kraken excluded
    status, document = await get_json(system, f"/api/rounds/{minute}")
    assert status == 200
    assert document["minute"] == minute
    assert [item["exchange"] for item in document["inputs"]] == ["binance", "coinbase"]
    assert document["excluded"][0]["exchange"] == "kraken"
    assert document["excluded"][0]["excluded_detail"].startswith("5.00 %")
    observation = document["inputs"][0]["observations"][0]
    assert len(bytes.fromhex(observation["signature"])) == 64
    assert observation["public_key"] == node_key(observation["node_id"]).public_key.hex()
    assert observation["signature_check"] == "verified"
    assert document["anchor"]["state"] == "not_anchored"
    assert "not anchored yet" in document["anchor"]["detail"]
    status, page = await get_text(system, f"/rounds/{minute}")
    assert status == 200
    assert "not anchored yet" in page
    assert "SIMULATED" in page
    assert document["price"] in page


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/rounds/60", 404, "not_found"),
        ("/api/rounds/61", 400, "bad_request"),
        ("/api/rounds/abc", 400, "bad_request"),
        ("/api/rounds/-60", 400, "bad_request"),
        ("/api/rounds?limit=0", 400, "bad_request"),
        ("/api/rounds?limit=5000", 400, "bad_request"),
        ("/api/rounds?from=abc", 400, "bad_request"),
        ("/api/rounds?from=600&to=60", 400, "bad_request"),
        ("/api/rounds?cursor=%3Cscript%3E", 400, "bad_request"),
        ("/api/price?verbose=1", 400, "bad_request"),
        ("/api/nodes?limit=-1", 400, "bad_request"),
        ("/api/nothing", 404, "not_found"),
    ],
)
async def test_bad_requests_get_a_clear_json_error(
    system: System, path: str, status: int, code: str
) -> None:
    answered, document = await get_json(system, path)
    assert answered == status
    assert document["error"]["code"] == code
    assert document["error"]["message"]
    assert "Traceback" not in json.dumps(document)


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/rounds/60", 404, "no round for minute 60"),
        ("/rounds/abc", 400, "minute must be a whole number"),
        ("/rounds/90", 400, "multiple of 60"),
        ("/nowhere", 404, "no such page"),
        ("/?x=1", 400, "unknown query parameter"),
    ],
)
async def test_bad_pages_get_a_clear_error_page(
    system: System, path: str, status: int, words: str
) -> None:
    async with system.http.get(system.url + path) as response:
        page = await response.text()
        assert response.status == status
        assert response.content_type == "text/html"
    assert words in page
    assert "Traceback" not in page


async def test_a_wrong_method_is_refused(system: System) -> None:
    async with system.http.post(system.url + "/api/price", data=b"x") as response:
        assert response.status == 405
        assert "GET" in response.headers["Allow"]
        document = await response.json()
    assert document["error"]["code"] == "method_not_allowed"


async def test_a_bug_is_a_clean_500(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Documents, limit: int) -> dict[str, Any]:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(Documents, "nodes", broken)
    status, document = await get_json(system, "/api/nodes")
    assert status == 500
    assert document == {
        "error": {"code": "internal", "message": "internal error; see the explorer's log"}
    }


async def test_history_not_implemented_is_said_not_hidden() -> None:
    now = time.time()
    system = await make_system(populated_fake(now, history=False, list_nodes=False), now)
    try:
        status, document = await get_json(system, "/api/rounds")
        assert status == 501
        assert "GetPriceHistory" in document["error"]["message"]
        status, page = await get_text(system, "/")
        assert status == 200
        assert "does not implement GetPriceHistory yet" in page
        _, nodes = await get_json(system, "/api/nodes")
        assert nodes["source"] == "live"
        assert {node["node_id"] for node in nodes["nodes"]} == {
            "oracle-node-1",
            "oracle-node-2",
            "oracle-node-3",
        }
    finally:
        await close_system(system)


# -- nodes -------------------------------------------------------------------------------------


async def test_nodes_from_list_nodes(system: System) -> None:
    status, document = await get_json(system, "/api/nodes")
    assert status == 200
    assert document["source"] == "ListNodes"
    assert [node["node_id"] for node in document["nodes"]] == [
        "oracle-node-1",
        "oracle-node-2",
        "oracle-node-3",
    ]
    first = document["nodes"][0]
    assert first["active"] is True
    assert first["signature_status"] == "verified"
    assert first["public_key"] == node_key("oracle-node-1").public_key.hex()


async def test_nodes_derived_from_rounds_without_list_nodes(old_system: System) -> None:
    _, document = await get_json(old_system, "/api/nodes")
    assert document["source"] == "rounds"
    assert "does not implement ListNodes" in document["note"]
    assert {node["exchange"] for node in document["nodes"]} == {"binance", "coinbase", "kraken"}
    # The explorer checked each node's latest stored signature itself.
    assert all(node["signature_status"] == "verified" for node in document["nodes"])


# -- the aggregator going away and coming back ---------------------------------------------------


async def test_aggregator_down_is_said_and_recovered_from() -> None:
    now = time.time()
    fake = populated_fake(now)
    system = await make_system(fake, now)
    try:
        await system.server.stop(None)
        await wait_for(lambda: not system.explorer.feed.state.reachable)
        status, document = await get_json(system, "/api/price")
        assert status == 503
        assert document["price"] is None
        assert document["error"]["code"] == "upstream_unavailable"
        assert f"127.0.0.1:{system.aggregator_port}" in document["error"]["message"]
        status, page = await get_text(system, "/")
        assert status == 200
        assert 'id="aggregator-banner" class="banner down" role="alert"' in page  # not hidden
        assert "Aggregator unreachable at" in page
        assert "UNREACHABLE" in page
        status, _ = await get_json(system, "/api/rounds")
        assert status == 503

        server, _ = await start_fake(fake, system.aggregator_port)
        system.server = server
        await wait_for(lambda: system.explorer.feed.state.reachable, within=10)
        await wait_for(lambda: system.explorer.feed.state.mode == "subscribe", within=10)
        status, document = await get_json(system, "/api/price")
        assert status == 200
        assert document["price"] is not None
        _, page = await get_text(system, "/")
        assert 'id="aggregator-banner" class="banner down" hidden' in page
    finally:
        await close_system(system)


async def test_an_aggregator_that_never_was_is_reported() -> None:
    from explorer.server import start_explorer
    from tests.explorer.conftest import explorer_config

    explorer = await start_explorer(explorer_config(1))  # nothing listens on port 1
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: explorer.feed.state.error != "not connected yet")
            async with http.get(explorer.url + "/api/price") as response:
                assert response.status == 503
            async with http.get(explorer.url + "/") as response:
                assert response.status == 200
                assert "Aggregator unreachable at 127.0.0.1:1" in await response.text()
    finally:
        await explorer.stop()


# -- security ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/price",
        "/static/explorer.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/nowhere",
        "/api/rounds/1",
    ],
)
async def test_every_response_carries_the_security_headers(system: System, path: str) -> None:
    async with system.http.get(system.url + path) as response:
        headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Server"] == "oracle-explorer"


async def test_pages_have_no_inline_script(system: System) -> None:
    minute = sorted(system.fake.rounds)[0]
    for path in ("/", f"/rounds/{minute}", "/rounds/60"):
        _, page = await get_text(system, path)
        for chunk in page.split("<script")[1:]:
            assert chunk.startswith(' src="/static/'), chunk[:80]
        for handler in ("onclick", "onerror", "onload", "javascript:"):
            assert handler not in page


async def test_hostile_text_from_the_network_is_escaped() -> None:
    now = time.time()
    fake = FakeAggregator()
    hostile_id = '<script>alert("id")</script>'
    hostile_reason = '<img src=x onerror="alert(1)">'
    minute = minute_floor(now) - 60
    round_ = make_round(
        minute,
        {"binance": Decimal(100), "coinbase": Decimal(101)},
        excluded={"kraken": Excluded(Decimal(200), hostile_reason, hostile_reason)},
        node_ids={"binance": hostile_id},
    )
    fake.add_rounds([round_])
    fake.set_price(price_from_round(round_, now))
    fake.nodes = [oracle_pb2.NodeInfo(node_id=hostile_id, exchange="binance", active=True)]
    system = await make_system(fake, now)
    try:
        for path in ("/", f"/rounds/{minute}"):
            _, page = await get_text(system, path)
            assert hostile_id not in page
            assert hostile_reason not in page
            assert "&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;" in page
            assert "&lt;img src=x onerror=" in page
        _, document = await get_json(system, f"/api/rounds/{minute}")
        assert document["inputs"][0]["observations"][0]["node_id"] == hostile_id  # JSON: as is
    finally:
        await close_system(system)


async def test_healthz_says_whether_the_aggregator_is_reachable(system: System) -> None:
    status, document = await get_json(system, "/healthz")
    assert status == 200
    assert document == {"status": "ok", "aggregator_reachable": True, "mode": "subscribe"}


async def test_the_rounds_pages_walk_every_round(system: System) -> None:
    seen: list[int] = []
    path = "/rounds?limit=40"
    pages = 0
    for _ in range(5):
        pages += 1
        status, page = await get_text(system, path)
        assert status == 200
        seen += [int(part.split('"')[0]) for part in page.split('<a href="/rounds/')[1:]]
        if 'id="older"' not in page:
            break
        path = page.split('id="older" href="')[1].split('"')[0].replace("&amp;", "&")
    assert pages == 3  # 90 rounds, 40 a page: the limit is carried by the "older" link
    assert sorted(seen, reverse=True) == seen
    assert sorted(seen) == sorted(system.fake.rounds)


async def test_a_new_stream_gets_the_current_state_at_once() -> None:
    now = time.time()
    # Health checks far apart: nothing else would wake the stream for a minute.
    system = await make_system(populated_fake(now), now, health_interval=60)
    try:
        async with system.http.get(system.url + "/api/stream") as response:
            async with asyncio.timeout(5):  # far below the 60 s health period
                [(name, document)] = await read_events(response, 1)
        assert name == "price"
        assert document["minute"] == system.fake.price.aggregate_minute
    finally:
        await close_system(system)


async def test_an_anchored_round_shows_its_proof_and_verify_command() -> None:
    now = time.time()
    fake = populated_fake(now)
    minutes = sorted(fake.rounds)
    system = await make_system(fake, now, anchors=AnchoredCommitter(minutes[-10]))
    try:
        _, anchored = await get_json(system, f"/api/rounds/{minutes[-10]}")
        _, pending = await get_json(system, f"/api/rounds/{minutes[-1]}")
        assert anchored["anchor"]["state"] == "anchored"
        assert anchored["anchor"]["txid"] == "78" * 32
        assert anchored["anchor"]["merkle_proof"] == ["34" * 32, "56" * 32]
        assert anchored["anchor"]["verify_command"].startswith("committer verify proof-")
        assert pending["anchor"]["state"] == "not_anchored"
        _, page = await get_text(system, f"/rounds/{minutes[-10]}")
        assert 'id="verify-command"' in page
        assert "78" * 32 in page
        assert "34" * 32 in page
        _, page = await get_text(system, f"/rounds/{minutes[-1]}")
        assert 'id="verify-command"' not in page
        assert "not anchored yet" in page
    finally:
        await close_system(system)


async def test_a_signature_that_does_not_match_its_record_is_shown_invalid() -> None:
    now = time.time()
    fake = populated_fake(now)
    minute = sorted(fake.rounds)[-2]
    forged = fake.rounds[minute]
    forged.inputs[0].observations[0].price_e8 += 100  # the record no longer matches what was signed
    system = await make_system(fake, now)
    try:
        _, document = await get_json(system, f"/api/rounds/{minute}")
        checks = [obs["signature_check"] for i in document["inputs"] for obs in i["observations"]]
        assert checks[0] == "invalid"
        assert set(checks[1:]) == {"verified"}
        _, page = await get_text(system, f"/rounds/{minute}")
        assert page.count("✗ INVALID") == 1
        assert page.count("✓ verified") == len(checks) - 1
    finally:
        await close_system(system)
