"""The JSON documents of the API, built once and used by both the JSON routes and the pages.

A page is rendered from exactly the documents its `/api/...` twin serves, and its script then
reads only the API, so what a person sees is what a program gets.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from common.timeutil import Clock
from explorer import views
from explorer.anchors import AnchorInfo, AnchorSource, verify_command
from explorer.errors import ExplorerError, UnsupportedError
from explorer.feed import LiveFeed
from explorer.params import RoundsQuery
from explorer.upstream import AggregatorClient

# The aggregator's default node timeout: used to call a node active when the aggregator does not
# say (no ListNodes), and said so in the document.
DEFAULT_NODE_TIMEOUT = 120.0
# Rounds looked at to find the nodes when ListNodes is not available.
_NODE_SCAN_ROUNDS = 60


class Documents:
    """Builds every API document from the live feed and on-demand aggregator calls."""

    def __init__(
        self, feed: LiveFeed, client: AggregatorClient, anchors: AnchorSource, clock: Clock
    ) -> None:
        self._feed = feed
        self._client = client
        self._anchors = anchors
        self._clock = clock
        # The last encoded price event and what it was built from: every open stream is sent
        # the same bytes, so a change costs one encoding, not one per page.
        self._event_key: tuple[object, int] | None = None
        self._event = b""

    def aggregator(self) -> dict[str, Any]:
        state = self._feed.state
        health = state.health
        return {
            "target": self._client.target,
            "reachable": state.reachable,
            "mode": state.mode,
            "error": state.error,
            "since_ms": int(state.changed_at * 1000),
            "version": health.version if health is not None else None,
            "healthy": health.healthy if health is not None else None,
            "health_message": health.message if health is not None else None,
            "draining": health.draining if health is not None else None,
        }

    def price(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, `/api/price` document): 503 without a reachable aggregator."""
        state = self._feed.state
        if state.price is None or not state.reachable:
            document = views.no_price_view()
            document["simulated"] = bool(state.health and state.health.simulated)
            document["aggregator"] = self.aggregator()
            document["error"] = {
                "code": "upstream_unavailable",
                "message": state.error or "the aggregator has not answered yet",
            }
            return 503, document
        document = views.price_view(state.price, self._clock())
        document["simulated"] = document["simulated"] or bool(
            state.health and state.health.simulated
        )
        document["aggregator"] = self.aggregator()
        document["error"] = None
        document["updated_at_ms"] = int(state.price_at * 1000)
        return 200, document

    def price_event(self) -> bytes:
        """`/api/price` as one server-sent event (`event: price`), shared by every stream."""
        state, second = self._feed.state, int(self._clock())
        cached = self._event_key
        if cached is None or cached[0] is not state or cached[1] != second:
            _status, document = self.price()
            # json.dumps never emits a raw newline, so one data line carries the document.
            self._event = f"event: price\ndata: {json.dumps(document)}\n\n".encode()
            self._event_key = (state, second)
        return self._event

    async def rounds(self, query: RoundsQuery) -> dict[str, Any]:
        response = await self._client.history(
            from_minute=query.from_minute,
            to_minute=query.to_minute,
            limit=query.limit,
            page_token=query.cursor,
        )
        rounds = [views.round_view(round_, detail=False) for round_ in response.rounds]
        return {
            "rounds": rounds,
            "count": len(rounds),
            "next_cursor": response.next_page_token or None,
            "simulated": any(round_["simulated"] for round_ in rounds),
        }

    async def round(self, minute: int, base_url: str) -> dict[str, Any]:
        """One round with its anchoring; `base_url` is where the verify command fetches proof."""
        round_ = await self._client.round(minute)
        document = views.round_view(round_, detail=True)
        try:
            anchor = await self._anchors.anchor(minute)
        except ExplorerError as error:
            anchor = AnchorInfo(state="unavailable", detail=error.message)
        if anchor.state in ("committed", "anchored") and not anchor.verify_command:
            command = verify_command(base_url, minute, anchor.oracle_public_key)
            anchor = replace(anchor, verify_command=command)
        document["anchor"] = anchor.to_json()
        return document

    async def proof(self, minute: int) -> dict[str, Any]:
        """The `committer verify` bundle of an anchored round (404 while there is none)."""
        return await self._anchors.proof_bundle(minute)

    async def nodes(self, limit: int) -> dict[str, Any]:
        now = self._clock()
        try:
            response = await self._client.nodes(limit)
        except UnsupportedError:
            return await self._derived_nodes(limit, now)
        return {
            "source": "ListNodes",
            "note": None,
            "nodes": [views.node_view(node, now) for node in response.nodes],
            "total": response.total,
            "node_timeout_seconds": response.node_timeout_seconds,
            "simulated": response.simulated,
        }

    async def _derived_nodes(self, limit: int, now: float) -> dict[str, Any]:
        try:
            history = await self._client.history(
                from_minute=0, to_minute=0, limit=_NODE_SCAN_ROUNDS, page_token=""
            )
        except UnsupportedError:
            price = self._feed.state.price
            nodes = (
                views.nodes_from_live(price, now, DEFAULT_NODE_TIMEOUT) if price is not None else []
            )
            source, scope = "live", "the live aggregate's inputs"
            simulated = bool(price is not None and price.simulated)
        else:
            nodes = views.nodes_from_rounds(list(history.rounds), now, DEFAULT_NODE_TIMEOUT)
            source, scope = "rounds", f"the last {_NODE_SCAN_ROUNDS} rounds' observations"
            simulated = any(round_.simulated for round_ in history.rounds)
        return {
            "source": source,
            "note": (
                f"the aggregator does not implement ListNodes: nodes derived from {scope}; "
                f"active means seen within {DEFAULT_NODE_TIMEOUT:g} s (the aggregator's default)"
            ),
            "nodes": nodes[:limit],
            "total": len(nodes),
            "node_timeout_seconds": int(DEFAULT_NODE_TIMEOUT),
            "simulated": simulated,
        }
