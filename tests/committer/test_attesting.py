"""Announcing ahead, attesting from the matching closed round, and the guard across restarts."""

from __future__ import annotations

import shutil
from pathlib import Path

from btclib_wallet.dlc import oracle as btclib_dlc

from committer.dlc.oracle import SigningMode, event_id_for, verify_attestation
from committer.dlc.tlv import parse_announcement, parse_attestation
from common.proto import committer_pb2, oracle_pb2
from tests.committer.conftest import make_config
from tests.committer.rounds import BASE_MINUTE, make_round
from tests.committer.test_dlc import independent_attestation_check

MATURITY = BASE_MINUTE + 3600  # on the hour
ANNOUNCE_AT = MATURITY - 3 * 3600


def round_at_maturity(price_e8: int = 9_712_345_678_900, **kwargs):
    return make_round(MATURITY - 60, (price_e8, price_e8, price_e8), **kwargs)


async def test_events_are_announced_ahead_and_attested_from_their_round(committer_factory) -> None:
    committer = committer_factory()
    announced = committer.announce_due(ANNOUNCE_AT)
    assert len(announced) == 24  # a day ahead, hourly on the hour
    assert event_id_for(MATURITY, simulated=False) in announced
    assert all(
        event_id.startswith("btcusd-") and event_id.endswith(":00:00Z") for event_id in announced
    )
    assert committer.announce_due(ANNOUNCE_AT) == []  # idempotent
    row = committer.store.announcement_for_maturity(MATURITY)
    assert row is not None
    announcement = parse_announcement(row.tlv)
    assert announcement.event.nonces == tuple(
        committer.store._db.execute(  # the nonces were stored with it
            "SELECT nonce FROM nonces WHERE event_id = ? ORDER BY idx", (row.event_id,)
        ).fetchall()[i][0]
        for i in range(20)
    )
    await committer.ingest([round_at_maturity()], MATURITY + 3)
    attestation_row = committer.store.attestation(row.event_id)
    assert attestation_row is not None
    assert attestation_row.outcome_value == 97_123
    attestation = parse_attestation(attestation_row.tlv)
    assert verify_attestation(announcement, attestation, SigningMode.TAGGED)
    assert independent_attestation_check(row.tlv, attestation_row.tlv, tagged=True) == 97_123
    theirs = btclib_dlc.OracleAnnouncement.parse(row.tlv)
    assert btclib_dlc.verify_announcement(theirs, scheme=btclib_dlc.TAGGED)
    assert committer.store.announcement(row.event_id).state == committer_pb2.EVENT_STATE_ATTESTED


async def test_plain_mode_attestation_is_checked_by_the_independent_verifier(
    committer_factory,
) -> None:
    committer = committer_factory(dlc={"signing_mode": "plain"})
    committer.announce_due(ANNOUNCE_AT)
    await committer.ingest([round_at_maturity(price_e8=5 * 10**15)], MATURITY + 3)  # 50M USD
    row = committer.store.announcement_for_maturity(MATURITY)
    attestation = committer.store.attestation(row.event_id)
    assert attestation.clamped
    assert attestation.outcome_value == 2**20 - 1
    assert independent_attestation_check(row.tlv, attestation.tlv, tagged=False) == 2**20 - 1


async def test_an_unknown_round_is_never_attested(committer_factory) -> None:
    committer = committer_factory()
    committer.announce_due(ANNOUNCE_AT)
    await committer.ingest(
        [round_at_maturity(status=oracle_pb2.PRICE_STATUS_UNKNOWN)], MATURITY + 50
    )
    row = committer.store.announcement_for_maturity(MATURITY)
    assert committer.store.attestation(row.event_id) is None
    assert row.state == committer_pb2.EVENT_STATE_UNATTESTABLE


async def test_a_deleted_database_cannot_make_the_oracle_sign_another_outcome(
    tmp_path: Path, committer_factory
) -> None:
    config = make_config(tmp_path)
    first = committer_factory(config)
    first.announce_due(ANNOUNCE_AT)
    await first.ingest([round_at_maturity(price_e8=9_700_000_000_000)], MATURITY + 3)
    event_id = first.store.announcement_for_maturity(MATURITY).event_id
    first.store.close()
    for path in config.committer.database.parent.iterdir():
        path.unlink()  # the database is gone; the guard beside the key is not

    second = committer_factory(config)
    second.announce_due(ANNOUNCE_AT)  # the same event again, with the same derived nonces
    # The aggregator (or an attacker in its place) now serves another price for that minute.
    await second.ingest([round_at_maturity(price_e8=1_000_000_000_000)], MATURITY + 5)
    assert second.store.attestation(event_id) is None  # refused: it would reveal the key
    # The honest outcome is still served again on a retry (same outcome, same signatures).
    third_price = round_at_maturity(price_e8=9_700_000_000_000)
    second.store._db.execute("DELETE FROM reports")
    second.store._db.commit()
    await second.ingest([third_price], MATURITY + 6)
    assert second.store.attestation(event_id).outcome_value == 97_000


async def test_a_restored_database_copy_cannot_either(tmp_path: Path, committer_factory) -> None:
    config = make_config(tmp_path)
    first = committer_factory(config)
    first.announce_due(ANNOUNCE_AT)
    backup = tmp_path / "backup"
    first.store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(config.committer.database.parent, backup)  # yesterday's copy
    await first.ingest([round_at_maturity(price_e8=9_700_000_000_000)], MATURITY + 3)
    event_id = first.store.announcement_for_maturity(MATURITY).event_id
    assert first.store.attestation(event_id) is not None
    first.store.close()
    shutil.rmtree(config.committer.database.parent)
    shutil.copytree(backup, config.committer.database.parent)  # restored: no attestation in it

    restored = committer_factory(config)
    assert restored.store.attestation(event_id) is None
    await restored.ingest([round_at_maturity(price_e8=1_000_000_000_000)], MATURITY + 5)
    assert restored.store.attestation(event_id) is None
