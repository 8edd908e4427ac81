"""Broadcast backends: Bitcoin Core JSON-RPC and an Esplora REST API, behind one small interface.

Both are adapters of a few calls: broadcast a signed transaction, fetch a transaction by id (for
`committer verify --txid`) and list the unspent outputs of the funding address (to start the
anchor chain). Retries (tenacity, exponential backoff with jitter) only on what can succeed later:
connection errors, timeouts and 5xx; a refused transaction (Core's RPC error, Esplora's 400) is
reported at once with the node's own reason. Credentials never appear in logs or errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from common.errors import OracleError


class BackendError(OracleError):
    """The backend refused the request or could not be reached after the retries."""


@dataclass(frozen=True, slots=True)
class Unspent:
    txid: str
    vout: int
    amount: int  # sats


class Backend(Protocol):
    async def broadcast(self, tx_hex: str) -> str: ...
    async def transaction_hex(self, txid: str) -> str: ...
    async def unspent(self, address: str) -> list[Unspent]: ...
    async def aclose(self) -> None: ...


def _transient(error: BaseException) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500


def _retrying(attempts: int) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.2),
        reraise=True,
    )


def _sats(btc: object) -> int:
    # Core reports amounts as JSON numbers in BTC; through str() they are exact decimals.
    return int(Decimal(str(btc)) * 100_000_000)


class BitcoinCoreBackend:
    """Bitcoin Core's JSON-RPC (`sendrawtransaction`, `getrawtransaction`, `scantxoutset`)."""

    def __init__(
        self,
        url: str,
        *,
        user: str = "",
        password: str = "",
        cookie_file: Path | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if cookie_file is not None:
            user, _, password = cookie_file.read_text(encoding="utf-8").strip().partition(":")
        auth = httpx.BasicAuth(user, password) if user else None
        self._client = httpx.AsyncClient(
            base_url=url, auth=auth, timeout=timeout, transport=transport
        )
        self._attempts = attempts
        self._ids = 0

    async def _call(self, method: str, *params: object) -> Any:  # noqa: ANN401 (JSON)
        self._ids += 1
        body = {"jsonrpc": "1.0", "id": self._ids, "method": method, "params": list(params)}
        try:
            async for attempt in _retrying(self._attempts):
                with attempt:
                    response = await self._client.post("/", json=body)
                    if response.status_code >= 500 and not _has_rpc_error(response):
                        response.raise_for_status()
        except httpx.HTTPError as error:
            raise BackendError(
                f"Bitcoin Core RPC {method} failed: {type(error).__name__}"
            ) from None
        if response.status_code == 401:
            raise BackendError("Bitcoin Core RPC refused the credentials (401)")
        try:
            answer = response.json()
        except ValueError:
            raise BackendError(f"Bitcoin Core RPC {method}: not a JSON answer") from None
        if answer.get("error"):
            refusal = answer["error"]
            raise BackendError(f"Bitcoin Core RPC {method}: {refusal.get('message', refusal)}")
        return answer.get("result")

    async def broadcast(self, tx_hex: str) -> str:
        return str(await self._call("sendrawtransaction", tx_hex))

    async def transaction_hex(self, txid: str) -> str:
        return str(await self._call("getrawtransaction", txid, False))

    async def unspent(self, address: str) -> list[Unspent]:
        result = await self._call("scantxoutset", "start", [f"addr({address})"])
        return [
            Unspent(str(item["txid"]), int(item["vout"]), _sats(item["amount"]))
            for item in result.get("unspents", [])
        ]

    async def aclose(self) -> None:
        await self._client.aclose()


def _has_rpc_error(response: httpx.Response) -> bool:
    # Core answers a refused call with HTTP 500 and a JSON error: final, not transient.
    try:
        return bool(response.json().get("error"))
    except ValueError:
        return False


class EsploraBackend:
    """An Esplora REST API (Blockstream's / mempool.space's): POST /tx, GET /tx/:id/hex, utxo."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), timeout=timeout, transport=transport
        )
        self._attempts = attempts

    async def _request(self, method: str, path: str, content: str | None = None) -> httpx.Response:
        try:
            async for attempt in _retrying(self._attempts):
                with attempt:
                    response = await self._client.request(method, path, content=content)
                    response.raise_for_status()
        except httpx.HTTPStatusError as error:
            detail = error.response.text[:200].strip()
            raise BackendError(
                f"Esplora {method} {path}: HTTP {error.response.status_code} {detail}"
            ) from None
        except httpx.HTTPError as error:
            raise BackendError(f"Esplora {method} {path} failed: {type(error).__name__}") from None
        return response

    async def broadcast(self, tx_hex: str) -> str:
        return (await self._request("POST", "/tx", tx_hex)).text.strip()

    async def transaction_hex(self, txid: str) -> str:
        return (await self._request("GET", f"/tx/{txid}/hex")).text.strip()

    async def unspent(self, address: str) -> list[Unspent]:
        items = (await self._request("GET", f"/address/{address}/utxo")).json()
        return [Unspent(str(i["txid"]), int(i["vout"]), int(i["value"])) for i in items]

    async def aclose(self) -> None:
        await self._client.aclose()
