"""The CLI (keygen, info, verify exit codes), the config's refusals and the store's guards."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from committer import views
from committer.cli import main
from committer.config import build_config, load_config
from committer.store import open_store
from common.errors import ConfigError
from tests.committer.rounds import ALLOWLIST, BASE_MINUTE, make_round

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "committer.toml"
    path.write_text(
        f"""
[committer]
database = "{tmp_path}/db/c.sqlite3"
key_file = "{tmp_path}/keys/oracle.key"
nonce_seed_file = "{tmp_path}/keys/seed.key"
simulate = true
[anchor]
anchor_key_file = "{tmp_path}/keys/anchor.key"
{extra}
"""
    )
    return path


def test_shipped_config_loads() -> None:
    config = load_config(ROOT / "config" / "committer.toml")
    assert config.committer.host == "127.0.0.1"
    assert config.dlc.nb_digits == 20
    assert config.anchor.period_seconds == 3600


def test_keygen_creates_0600_keys_and_never_overwrites(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    result = CliRunner().invoke(main, ["keygen", "--config", str(path)])
    assert result.exit_code == 0, result.output
    for name in ("oracle.key", "seed.key", "anchor.key"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    secret = (tmp_path / "keys" / "oracle.key").read_text().strip()
    assert secret not in result.output
    again = CliRunner().invoke(main, ["keygen", "--config", str(path)])
    assert "created" not in again.output
    assert (tmp_path / "keys" / "oracle.key").read_text().strip() == secret
    info = CliRunner().invoke(main, ["info", "--config", str(path)])
    assert json.loads(info.output)["funding_address"].startswith("bcrt1p")
    assert secret not in info.output


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    CliRunner().invoke(main, ["keygen", "--config", str(path)])
    os.chmod(tmp_path / "keys" / "oracle.key", 0o644)
    result = CliRunner().invoke(main, ["info", "--config", str(path)])
    assert result.exit_code != 0
    assert "chmod 600" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("fee_rate = 0", "fee_rate"),
        ('mode = "inscription"', "mode"),
        ("bogus = 1", "bogus"),
        ("broadcast = true", "broadcast"),
        ('backend = "esplora"', "backend_url"),
        ("period_seconds = 90", "multiple of 60"),
    ],
)
def test_bad_settings_are_one_clear_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, extra))


def test_strict_types() -> None:
    with pytest.raises(ConfigError, match="port"):
        build_config({"committer": {"port": "50061"}})
    with pytest.raises(ConfigError, match="simulate"):
        build_config({"committer": {"simulate": 1}})


async def test_verify_exit_codes(tmp_path: Path, committer_factory) -> None:
    committer = committer_factory(anchor={"funding_txid": "ef" * 32, "funding_amount": 100_000})
    await committer.ingest([make_round(BASE_MINUTE)], BASE_MINUTE + 3600)
    (anchor,) = await committer.anchor_due(BASE_MINUTE + 3600)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(views.to_json(views.inclusion_proof(committer, BASE_MINUTE))))
    keys_file = tmp_path / "nodes.json"
    keys_file.write_text(json.dumps({k: v.hex() for k, v in ALLOWLIST.items()}))
    good = CliRunner().invoke(
        main,
        [
            "verify",
            str(bundle),
            "--tx",
            anchor.tx.hex(),
            "--node-keys",
            str(keys_file),
            "--oracle-key",
            committer.keys.oracle.public_key.hex(),
        ],
    )
    assert good.exit_code == 0, good.output
    assert "VERIFIED: yes" in good.output
    wrong_key = CliRunner().invoke(
        main, ["verify", str(bundle), "--tx", anchor.tx.hex(), "--oracle-key", "00" * 32]
    )
    assert wrong_key.exit_code == 1
    assert "VERIFIED: no" in wrong_key.output
    assert "not the pinned one" in wrong_key.output


def test_store_file_is_private_locked_and_refuses_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "db" / "c.sqlite3"
    store = open_store(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(ConfigError, match="another committer"):
        open_store(path)
    store.close()
    open_store(path).close()
    foreign = tmp_path / "foreign.sqlite3"
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    with pytest.raises(ConfigError, match="not a committer database"):
        open_store(foreign)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ConfigError, match="cannot open"):
        open_store(garbage)


async def test_no_secret_ever_reaches_the_log(committer_factory) -> None:
    from structlog.testing import capture_logs

    from tests.committer.conftest import ANCHOR_KEY, ORACLE_KEY, SEED

    with capture_logs() as events:
        committer = committer_factory(anchor={"funding_txid": "ef" * 32, "funding_amount": 100_000})
        committer.announce_due(BASE_MINUTE)
        forged = make_round(BASE_MINUTE + 3540)
        forged.inputs[0].observations[0].price_e8 += 1
        await committer.ingest(
            [make_round(BASE_MINUTE + 60 * i) for i in range(59)], BASE_MINUTE + 3600
        )
        await committer.ingest([forged, make_round(BASE_MINUTE + 3540)], BASE_MINUTE + 3600)
        await committer.anchor_due(BASE_MINUTE + 3600)
    text = repr(events)
    assert events
    for secret in (ORACLE_KEY.secret_bytes(), SEED, ANCHOR_KEY.secret_bytes()):
        assert secret.hex() not in text


async def test_verify_fetches_the_transaction_by_txid_from_esplora(
    tmp_path: Path, committer_factory
) -> None:
    import httpx
    import respx

    committer = committer_factory(anchor={"funding_txid": "ef" * 32, "funding_amount": 100_000})
    await committer.ingest([make_round(BASE_MINUTE)], BASE_MINUTE + 3600)
    (anchor,) = await committer.anchor_due(BASE_MINUTE + 3600)
    bundle = tmp_path / "bundle.json"
    document = views.to_json(views.inclusion_proof(committer, BASE_MINUTE))
    document["anchor"]["tx"] = ""  # the verifier must not rely on the committer's copy
    bundle.write_text(json.dumps(document))
    url = "http://127.0.0.1:3002/api"
    with respx.mock:
        respx.get(f"{url}/tx/{anchor.txid}/hex").mock(
            return_value=httpx.Response(200, text=anchor.tx.hex())
        )
        # The CLI runs its own event loop: in a thread, as from a shell.
        result = await asyncio.to_thread(
            CliRunner().invoke,
            main,
            [
                "verify",
                str(bundle),
                "--txid",
                anchor.txid,
                "--backend",
                "esplora",
                "--backend-url",
                url,
            ],
        )
    assert result.exit_code == 0, result.output
    assert f"transaction is the anchor's ({anchor.txid})" in result.output
