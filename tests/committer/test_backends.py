"""Broadcast backends against respx fakes of the real Bitcoin Core RPC and Esplora APIs."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from btclib.tx import Tx

from committer.app import Committer
from committer.backends import BackendError, BitcoinCoreBackend, EsploraBackend, Unspent
from committer.store import open_store
from common.proto import committer_pb2
from tests.committer.conftest import keys, make_config
from tests.committer.rounds import BASE_MINUTE, make_round

CORE = "http://127.0.0.1:18443"
ESPLORA = "http://127.0.0.1:3002/api"
TXID = "ab" * 32


def rpc_answer(result: object = None, error: object = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"result": result, "error": error, "id": 1})


@respx.mock
async def test_core_broadcast_fetch_and_scan() -> None:
    calls: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        assert request.headers["authorization"].startswith("Basic ")
        return {
            "sendrawtransaction": rpc_answer(TXID),
            "getrawtransaction": rpc_answer("0200"),
            "scantxoutset": rpc_answer(
                {
                    "success": True,
                    "unspents": [
                        {"txid": TXID, "vout": 1, "amount": 0.0005, "scriptPubKey": "5120"}
                    ],
                }
            ),
        }[body["method"]]

    respx.post(CORE + "/").mock(side_effect=handler)
    backend = BitcoinCoreBackend(CORE, user="rpc", password="secret-pw")  # noqa: S106 (fake node)
    assert await backend.broadcast("0200") == TXID
    assert await backend.transaction_hex(TXID) == "0200"
    assert await backend.unspent("bcrt1pxyz") == [Unspent(TXID, 1, 50_000)]
    assert calls[0]["params"] == ["0200"]
    assert calls[2]["params"] == ["start", ["addr(bcrt1pxyz)"]]
    await backend.aclose()


@respx.mock
async def test_core_refusal_is_final_and_names_the_reason() -> None:
    route = respx.post(CORE + "/").mock(
        return_value=rpc_answer(error={"code": -26, "message": "min relay fee not met"}, status=500)
    )
    backend = BitcoinCoreBackend(CORE, user="rpc", password="secret-pw")  # noqa: S106 (fake node)
    with pytest.raises(BackendError, match="min relay fee not met") as caught:
        await backend.broadcast("0200")
    assert route.call_count == 1  # not retried
    assert "secret-pw" not in str(caught.value)
    await backend.aclose()


@respx.mock
async def test_core_cookie_file_and_bad_credentials(tmp_path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:s3cr3t")
    respx.post(CORE + "/").mock(return_value=httpx.Response(401))
    backend = BitcoinCoreBackend(CORE, cookie_file=cookie)
    with pytest.raises(BackendError, match="401") as caught:
        await backend.broadcast("00")
    assert "s3cr3t" not in str(caught.value)
    await backend.aclose()


@respx.mock
async def test_esplora_broadcast_retries_a_5xx_then_succeeds() -> None:
    route = respx.post(ESPLORA + "/tx").mock(
        side_effect=[httpx.Response(503, text="busy"), httpx.Response(200, text=TXID)]
    )
    backend = EsploraBackend(ESPLORA)
    assert await backend.broadcast("0200") == TXID
    assert route.call_count == 2
    assert route.calls[-1].request.content == b"0200"
    await backend.aclose()


@respx.mock
async def test_esplora_refusal_and_reads() -> None:
    respx.post(ESPLORA + "/tx").mock(
        return_value=httpx.Response(
            400, text="sendrawtransaction RPC error: bad-txns-inputs-missingorspent"
        )
    )
    respx.get(ESPLORA + f"/tx/{TXID}/hex").mock(return_value=httpx.Response(200, text="0200\n"))
    respx.get(ESPLORA + "/address/bc1pxyz/utxo").mock(
        return_value=httpx.Response(
            200, json=[{"txid": TXID, "vout": 0, "value": 1234, "status": {"confirmed": True}}]
        )
    )
    backend = EsploraBackend(ESPLORA)
    with pytest.raises(BackendError, match="missingorspent"):
        await backend.broadcast("0200")
    assert await backend.transaction_hex(TXID) == "0200"
    assert await backend.unspent("bc1pxyz") == [Unspent(TXID, 0, 1234)]
    await backend.aclose()


@respx.mock
async def test_committer_broadcasts_a_signed_anchor(tmp_path) -> None:
    route = respx.post(ESPLORA + "/tx").mock(
        side_effect=lambda request: httpx.Response(200, text=_txid(request))
    )
    config = make_config(
        tmp_path,
        anchor={
            "funding_txid": "ef" * 32,
            "funding_amount": 100_000,
            "backend": "esplora",
            "backend_url": ESPLORA,
            "broadcast": True,
        },
    )
    committer = Committer(
        config, open_store(config.committer.database), keys(), backend=EsploraBackend(ESPLORA)
    )
    await committer.ingest([make_round(BASE_MINUTE)], BASE_MINUTE + 3600)
    (anchor,) = await committer.anchor_due(BASE_MINUTE + 3600)
    assert anchor.state == committer_pb2.ANCHOR_STATE_BROADCAST
    assert route.call_count == 1
    assert route.calls[0].request.content.decode() == anchor.tx.hex()
    committer.store.close()


def _txid(request: httpx.Request) -> str:
    return Tx.parse(bytes.fromhex(request.content.decode())).id.hex()
