"""The committer's configuration: strict, frozen pydantic models, validated once at startup.

Tables `[committer]`, `[dlc]`, `[anchor]`, `[logging]` of `config/committer.toml`; unknown tables or
keys, wrong types (strict: `port = "1"` is refused) and values out of bounds stop the process
with one line naming the file and the key. Secrets are never in this file: keys and the DLC
nonce seed live in 0600 key files it names, and Bitcoin Core credentials in a cookie file.
Simulate mode forces regtest and labels everything SIMULATED. The models are built on
`common/settings.py` (its `Table` base, path types, TOML reader and one-line errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from committer.anchoring import AnchorMode
from committer.bitcoin import Network
from committer.dlc.oracle import SigningMode
from common.errors import ConfigError
from common.settings import DirPath, FilePath, HostName, LoggingConfig, Table, explain, read_toml

Port = Annotated[int, Field(ge=0, le=65535)]
# TOML has no enum type: these take their text (strict everywhere else).
Mode = Annotated[SigningMode, Field(strict=False)]
AnchorModeSetting = Annotated[AnchorMode, Field(strict=False)]
NetworkSetting = Annotated[Network, Field(strict=False)]


class CommitterTable(Table):
    """[committer]: where the rounds come from, where reports are served, the oracle's keys."""

    aggregator: str = Field("127.0.0.1:50051", min_length=3, description="aggregator host:port")
    host: HostName = Field("127.0.0.1", description="gRPC and HTTP listen address")
    port: Port = Field(50061, description="CommitterService gRPC port")
    http_port: Port = Field(8061, description="read-only HTTP endpoint port")
    http_enabled: bool = True
    database: FilePath = Path("data/committer.sqlite3")
    key_file: FilePath = Field(Path("keys/committer.key"), description="oracle BIP340 key, 0600")
    nonce_seed_file: FilePath = Field(Path("keys/committer-dlc-seed.key"), description="0600")
    # Beside the key by default: the nonce guard must not live with the database it protects
    # against (see committer.dlc.guard).
    guard_dir: DirPath | None = None
    simulate: bool = False
    # A fresh database catches up this far back; afterwards, from the last report.
    backfill_seconds: int = Field(86_400, ge=0, le=30 * 86_400)
    # Catch-up re-reads this much before the last report (rounds may close out of order).
    lookback_seconds: int = Field(600, ge=60, le=86_400)
    # A safety net beside the stream: re-read recent history this often.
    resync_seconds: float = Field(300.0, ge=5, le=86_400)
    reconnect_max_seconds: float = Field(30.0, ge=0.1, le=3600)
    stream_queue: int = Field(1024, ge=1, le=1_000_000)
    max_subscribers: int = Field(256, ge=1, le=100_000)
    grace_seconds: float = Field(5.0, gt=0, le=300)


class DlcTable(Table):
    """[dlc]: the BTC/USD numeric events this oracle announces and attests."""

    enabled: bool = True
    signing_mode: Mode = SigningMode.TAGGED
    event_interval_seconds: int = Field(3600, ge=60, le=7 * 86_400)
    lead_seconds: int = Field(86_400, ge=60, le=365 * 86_400)
    nb_digits: int = Field(20, ge=1, le=64)
    unit: str = Field("USD", min_length=1, max_length=16)

    @model_validator(mode="after")
    def _interval_in_minutes(self) -> Self:
        if self.event_interval_seconds % 60:
            raise ValueError("event_interval_seconds must be a multiple of 60")
        return self


class AnchorTable(Table):
    """[anchor]: the hourly Merkle commitment on Bitcoin."""

    enabled: bool = True
    period_seconds: int = Field(3600, ge=60, le=7 * 86_400)
    settle_seconds: int = Field(120, ge=0, le=3600)
    mode: AnchorModeSetting = AnchorMode.TAPROOT
    network: NetworkSetting = Network.MAINNET
    fee_rate: float = Field(2.0, gt=0, le=10_000)
    signer: Literal["external", "local"] = "external"
    anchor_key_file: FilePath = Field(Path("keys/committer-anchor.key"), description="0600")
    internal_key: str = Field("", pattern=r"^([0-9a-f]{64})?$")
    funding_txid: str = Field("", pattern=r"^([0-9a-f]{64})?$")
    funding_vout: int = Field(0, ge=0, le=0xFFFFFFFF)
    funding_amount: int = Field(0, ge=0, le=21_000_000 * 100_000_000)
    psbt_dir: DirPath = Path("data/psbt")
    backend: Literal["none", "bitcoind", "esplora"] = "none"
    backend_url: str = ""
    rpc_user: str = ""
    rpc_cookie_file: FilePath | None = None
    broadcast: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.period_seconds % 60:
            raise ValueError("period_seconds must be a multiple of 60")
        if self.backend != "none" and not self.backend_url:
            raise ValueError(f"backend = {self.backend!r} needs backend_url")
        if self.broadcast and (self.backend == "none" or self.signer != "local"):
            raise ValueError('broadcast = true needs signer = "local" and a backend')
        return self


class CommitterConfig(Table):
    """The whole file; `source` names it in errors."""

    committer: CommitterTable = CommitterTable()
    dlc: DlcTable = DlcTable()
    anchor: AnchorTable = AnchorTable()
    logging: LoggingConfig = LoggingConfig()
    source: str = Field("defaults", exclude=True)

    @property
    def simulate(self) -> bool:
        return self.committer.simulate

    @property
    def network(self) -> Network:
        return Network.REGTEST if self.simulate else self.anchor.network

    @property
    def guard_dir(self) -> Path:
        return self.committer.guard_dir or self.committer.key_file.parent


def build_config(document: dict[str, object], *, source: str = "defaults") -> CommitterConfig:
    try:
        return CommitterConfig.model_validate({**document, "source": source})
    except ValidationError as error:
        raise ConfigError(explain(error, CommitterConfig, source, {})) from None


def load_config(path: Path, **overrides: dict[str, object]) -> CommitterConfig:
    """Read `path` (TOML), apply `overrides` ({table: {key: value}}), validate."""
    document: dict[str, Any] = read_toml(path)
    return build_config(merge(document, overrides), source=str(path))


def merge(
    document: dict[str, object], overrides: dict[str, dict[str, object]]
) -> dict[str, object]:
    merged = dict(document)
    for table, values in overrides.items():
        present = {key: value for key, value in values.items() if value is not None}
        if present:
            existing = merged.get(table, {})
            merged[table] = {**(existing if isinstance(existing, dict) else {}), **present}
    return merged
