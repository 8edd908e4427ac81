"""The node allowlist: which node id may sign with which key, for which exchanges; reload-safe.

The aggregator accepts a signed observation only from a node on this list, signed by that node's
own key, for an exchange the list names for it. The file is TOML, one `[[nodes]]` table per node:

    [[nodes]]
    id = "oracle-node-1"
    public_key = "b3c943856bbad62040b530040c1e9c67a34533ae2c1db33900fd59dd9784c599"
    exchanges = ["binance"]

(`oracle-node keygen` prints that table for a new key). It is validated strictly and whole before
it is used: unknown keys, a public key that is not a valid BIP340 x-only key, an id that breaks
the node id rule, an unknown exchange, a repeated id and one key shared by two ids are all
refused, with a one-line error naming the file and the key. A file that others may write is
refused too: whoever can edit the allowlist can add a node, so it is guarded like ssh's
`authorized_keys`.

Checking order (docs/signing.md): look the node up first (UNAUTHENTICATED for an unknown node or a
key that is not its own, before any curve arithmetic), verify the signature (UNAUTHENTICATED), and
only then, the caller being authenticated, check the exchange (PERMISSION_DENIED).
`check_signed_observation` does exactly that.

`AllowlistHolder.reload()` swaps in a new file only once it has validated; a bad file keeps the old
allowlist and says why, so an operator's typo never locks the honest nodes out.
"""

from __future__ import annotations

import enum
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from pydantic import ValidationError, field_validator, model_validator

from common.errors import ConfigError, OracleError, PermissionDeniedError, UnauthenticatedError
from common.exchanges import EXCHANGES, MAX_ID_LENGTH, NODE_ID_PATTERN, NODE_ID_RULE
from common.logsetup import get_logger
from common.observation import ObservationPayload, verify_observation
from common.schnorr import PUBLIC_KEY_BYTES, is_valid_public_key
from common.settings import Table, TomlList, read_toml

# An allowlist names a handful of nodes (common.settings caps the file at 256 KiB).
MAX_NODES: Final = 10_000


class Verdict(enum.Enum):
    """The allowlist's answer for (node id, public key, exchange); its value is the refusal
    counter's reason label."""

    ALLOWED = "allowed"
    UNKNOWN_NODE = "unknown_node"
    WRONG_KEY = "wrong_key"
    EXCHANGE_NOT_ALLOWED = "exchange_not_allowed"

    @property
    def allowed(self) -> bool:
        return self is Verdict.ALLOWED

    @property
    def authenticated(self) -> bool:
        """True when the key is the node's own (the exchange may still be refused)."""
        return self in (Verdict.ALLOWED, Verdict.EXCHANGE_NOT_ALLOWED)

    def error(self, node_id: str, exchange: str) -> OracleError:
        """The error a refused request answers with (UNAUTHENTICATED or PERMISSION_DENIED)."""
        if self is Verdict.UNKNOWN_NODE:
            return UnauthenticatedError(
                f"node_id {_shown(node_id)} is not on this aggregator's allowlist",
                reason=self.value,
            )
        if self is Verdict.WRONG_KEY:
            return UnauthenticatedError(
                f"public_key is not the key allowlisted for node {_shown(node_id)}",
                reason=self.value,
            )
        if self is Verdict.EXCHANGE_NOT_ALLOWED:
            return PermissionDeniedError(
                f"node {_shown(node_id)} is not allowed to report {_shown(exchange)}",
                reason=self.value,
            )
        raise ValueError("an allowed request has no error")


BAD_SIGNATURE: Final = "bad_signature"


def _shown(text: str) -> str:
    # Ids reach here validated, but this module must stay safe for any caller's strings.
    return repr(text[:MAX_ID_LENGTH])


@dataclass(frozen=True, slots=True)
class NodePermit:
    """One allowlisted node: its id, its x-only public key and the exchanges it may report."""

    node_id: str
    public_key: bytes
    exchanges: frozenset[str]


class Allowlist:
    """An immutable, validated allowlist; lookups are one dictionary access."""

    __slots__ = ("_by_id", "source")

    def __init__(self, permits: Iterable[NodePermit], *, source: str = "<memory>") -> None:
        by_id: dict[str, NodePermit] = {}
        keys: set[bytes] = set()
        for permit in permits:
            if permit.node_id in by_id:
                raise ValueError(f"node id {permit.node_id!r} is listed twice")
            if permit.public_key in keys:
                raise ValueError(f"node {permit.node_id!r} shares its public key with another")
            by_id[permit.node_id] = permit
            keys.add(permit.public_key)
        self._by_id: Mapping[str, NodePermit] = by_id
        self.source = source

    @property
    def node_ids(self) -> tuple[str, ...]:
        """The allowlisted node ids, in file order: exactly the nodes the node table holds."""
        return tuple(self._by_id)

    def get(self, node_id: str) -> NodePermit | None:
        return self._by_id.get(node_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._by_id

    def authorize(self, node_id: str, public_key: bytes, exchange: str) -> Verdict:
        """Whether `node_id`, signing with `public_key`, may report `exchange`.

        This does not verify a signature: call it before verifying (an unknown node or a
        wrong key costs no curve arithmetic) and raise EXCHANGE_NOT_ALLOWED only after the
        signature verified, as `check_signed_observation` does.
        """
        permit = self._by_id.get(node_id)
        if permit is None:
            return Verdict.UNKNOWN_NODE
        if public_key != permit.public_key:
            return Verdict.WRONG_KEY
        if exchange not in permit.exchanges:
            return Verdict.EXCHANGE_NOT_ALLOWED
        return Verdict.ALLOWED


def check_signed_observation(
    allowlist: Allowlist, payload: ObservationPayload, public_key: bytes, signature: bytes
) -> NodePermit:
    """The node's permit when `payload` is signed by its allowlisted key for an allowed exchange.

    Raises `UnauthenticatedError` (reason unknown_node, wrong_key or bad_signature) or
    `PermissionDeniedError` (exchange_not_allowed), in that order of checks; changes nothing.
    """
    verdict = allowlist.authorize(payload.node_id, public_key, payload.exchange)
    if not verdict.authenticated:
        raise verdict.error(payload.node_id, payload.exchange)
    if not verify_observation(public_key, payload, signature):
        raise UnauthenticatedError(
            f"observation_signature does not verify for node {_shown(payload.node_id)} "
            "(not a BIP340 signature of this observation by its key; docs/signing.md)",
            reason=BAD_SIGNATURE,
        )
    if not verdict.allowed:
        raise verdict.error(payload.node_id, payload.exchange)
    permit = allowlist.get(payload.node_id)
    assert permit is not None  # noqa: S101 (authorize found it just above)
    return permit


# --- the file ---------------------------------------------------------------------------------


class _NodeEntry(Table):
    """One `[[nodes]]` table."""

    id: str
    """The node's id, as in its own config (`node_id`)"""
    public_key: str
    """The node's BIP340 x-only public key, 64 hex digits (`oracle-node keygen` prints it)"""
    exchanges: Annotated[tuple[str, ...], TomlList]
    """The exchanges this node may report"""

    @field_validator("id")
    @classmethod
    def _check_id(cls, node_id: str) -> str:
        if not 1 <= len(node_id) <= MAX_ID_LENGTH:
            raise ValueError(f"must be 1 to {MAX_ID_LENGTH} characters")
        if NODE_ID_PATTERN.fullmatch(node_id) is None:
            raise ValueError(f"{node_id!r}: use {NODE_ID_RULE}")
        return node_id

    @field_validator("public_key")
    @classmethod
    def _check_public_key(cls, text: str) -> str:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ValueError(
                f"expected {2 * PUBLIC_KEY_BYTES} hex digits (an x-only public key)"
            ) from None
        if len(key) != PUBLIC_KEY_BYTES:
            raise ValueError(
                f"expected {2 * PUBLIC_KEY_BYTES} hex digits (an x-only public key), "
                f"got {len(key)} bytes"
            )
        if not is_valid_public_key(key):
            raise ValueError(f"{text} is not a valid BIP340 x-only public key (not on the curve)")
        return key.hex()

    @field_validator("exchanges")
    @classmethod
    def _check_exchanges(cls, exchanges: tuple[str, ...]) -> tuple[str, ...]:
        if not exchanges:
            raise ValueError("name at least one exchange")
        for name in exchanges:
            if name not in EXCHANGES:
                raise ValueError(f"unknown exchange {name!r}; expected {', '.join(EXCHANGES)}")
        if len(set(exchanges)) != len(exchanges):
            raise ValueError("an exchange is listed twice")
        return exchanges


class _AllowlistFile(Table):
    """The allowlist file: a list of `[[nodes]]` tables."""

    nodes: Annotated[tuple[_NodeEntry, ...], TomlList]
    """The nodes whose signed observations are accepted"""

    @model_validator(mode="after")
    def _check_unique(self) -> _AllowlistFile:
        if not self.nodes:
            raise ValueError("no [[nodes]]: an empty allowlist would refuse every node")
        if len(self.nodes) > MAX_NODES:
            raise ValueError(f"more than {MAX_NODES} nodes")
        ids: set[str] = set()
        owners: dict[str, str] = {}
        for entry in self.nodes:
            if entry.id in ids:
                raise ValueError(f"node id {entry.id!r} is listed twice")
            ids.add(entry.id)
            if entry.public_key in owners:
                raise ValueError(
                    f"nodes {owners[entry.public_key]!r} and {entry.id!r} share one public key; "
                    "each node needs its own key (oracle-node keygen)"
                )
            owners[entry.public_key] = entry.id
        return self


def parse_allowlist(document: Mapping[str, object], *, source: str) -> Allowlist:
    """An `Allowlist` from an already-parsed TOML document; `ConfigError` naming source and key."""
    try:
        parsed = _AllowlistFile.model_validate(document)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_first_problem(error)}") from None
    return Allowlist(
        (
            NodePermit(entry.id, bytes.fromhex(entry.public_key), frozenset(entry.exchanges))
            for entry in parsed.nodes
        ),
        source=source,
    )


def load_allowlist(path: Path) -> Allowlist:
    """Read and validate the allowlist file; `ConfigError` with one line naming file and key."""
    return parse_allowlist(_read_toml(path), source=str(path))


def _read_toml(path: Path) -> dict[str, object]:
    # The allowlist's own checks first (it is a security boundary, so its mode matters), then
    # common.settings' safe reader: no blocking on a FIFO, size-capped, UTF-8, one-line errors.
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: allowlist file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the allowlist ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: the allowlist must be a regular file")
    if info.st_mode & 0o022:
        raise ConfigError(
            f"{path}: allowlist mode is {stat.S_IMODE(info.st_mode):04o}; whoever can write it "
            f"can add a node, so group and others must not have write access (chmod 644 {path})"
        )
    return read_toml(path)


# common.settings.explain renders `[table] key` for a settings file's tables; an allowlist is an
# array of tables, where `nodes[1].public_key` is what an operator finds in the file.
def _first_problem(error: ValidationError) -> str:
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    if first["type"] == "extra_forbidden":
        message = "unknown key (allowed: nodes; in [[nodes]]: id, public_key, exchanges)"
    elif first["type"] == "missing":
        message = "required"
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{where or 'allowlist'}: {message}{more}"


# --- reloading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: applied (and what changed) or refused (and why; the old list stays)."""

    applied: bool
    message: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


class AllowlistHolder:
    """The allowlist in force, swapped atomically by `reload()` (SIGHUP, once wired).

    Readers take `holder.current` once per request and use that object throughout, so a reload
    in the middle of a request never mixes two lists. The swap is one attribute assignment,
    atomic under the GIL, so it is safe from a signal handler or another thread.
    """

    __slots__ = ("_current", "path")

    def __init__(self, path: Path, initial: Allowlist) -> None:
        self.path = path
        self._current = initial

    @classmethod
    def load(cls, path: Path) -> AllowlistHolder:
        """At startup: a bad file is fatal (`ConfigError`), unlike on reload."""
        return cls(path, load_allowlist(path))

    @property
    def current(self) -> Allowlist:
        return self._current

    def reload(self) -> ReloadResult:
        """Validate the file again and swap it in; a bad file keeps the old allowlist."""
        try:
            fresh = load_allowlist(self.path)
        except ConfigError as error:
            result = ReloadResult(False, f"allowlist not reloaded, the old one stays: {error}")
            get_logger(component="allowlist").error(
                "allowlist_reload_refused", path=str(self.path), reason=str(error), kept=True
            )
            return result
        old = self._current
        added = tuple(node for node in fresh.node_ids if node not in old)
        removed = tuple(node for node in old.node_ids if node not in fresh)
        changed = tuple(
            node for node in fresh.node_ids if node in old and old.get(node) != fresh.get(node)
        )
        self._current = fresh
        message = (
            f"allowlist reloaded: {len(fresh)} nodes; added {list(added)}, removed "
            f"{list(removed)}, changed {list(changed)}"
        )
        get_logger(component="allowlist").info(
            "allowlist_reloaded",
            path=str(self.path),
            nodes=len(fresh),
            added=list(added),
            removed=list(removed),
            changed=list(changed),
        )
        return ReloadResult(True, message, added, removed, changed)
