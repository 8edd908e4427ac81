"""A node's signing key: create it (`oracle-node keygen --out PATH`) and say how to allowlist it.

The secret is written once, 0600, by `common.schnorr.write_key_file`, and never printed: what the
command shows is the x-only public key and a ready-to-paste entry for the aggregator's allowlist
(`aggregator/allowlist.py` reads exactly that format). When the caller does not know the node's
id or exchange, the entry carries placeholders that the allowlist refuses on load, so a
half-edited entry can never be accepted by accident.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from common.schnorr import SigningKey, write_key_file

NODE_ID_PLACEHOLDER: Final = "<node id from the node's config>"
EXCHANGE_PLACEHOLDER: Final = "<exchange this node reports>"


def keygen(out: Path) -> bytes:
    """Create a fresh key at `out` (mode 0600, never overwriting) and return its public key.

    Raises `ConfigError` naming the path when a file is already there: replacing a node's key
    is a rotation, done on purpose (delete the old file first), never by a repeated command.
    """
    key = SigningKey.generate()
    write_key_file(out, key)
    return key.public_key


def allowlist_entry(
    public_key: bytes, *, node_id: str | None = None, exchanges: Sequence[str] = ()
) -> str:
    """The TOML `[[nodes]]` table that allows `public_key` to report as `node_id`."""
    names = list(exchanges) or [EXCHANGE_PLACEHOLDER]
    # json.dumps of str gives a valid TOML basic string (same escapes for these characters).
    return (
        "[[nodes]]\n"
        f"id = {json.dumps(node_id or NODE_ID_PLACEHOLDER)}\n"
        f'public_key = "{public_key.hex()}"\n'
        f"exchanges = [{', '.join(json.dumps(name) for name in names)}]\n"
    )


def keygen_report(
    out: Path, public_key: bytes, *, node_id: str | None = None, exchanges: Sequence[str] = ()
) -> str:
    """What `oracle-node keygen` prints after writing the key: the public key and the entry."""
    lines = [
        f"Wrote a new node signing key to {out} (mode 0600).",
        "Keep it secret: whoever can read it can sign prices as this node. It is never printed;",
        "back the file up if losing it would matter.",
        "",
        f"public key: {public_key.hex()}",
        "",
        "Add this entry to the aggregator's allowlist file, then reload the aggregator",
        "(SIGHUP) or restart it:",
    ]
    if node_id is None or not exchanges:
        lines.append("(replace the <...> placeholders first; the allowlist refuses them)")
    return (
        "\n".join(lines)
        + "\n\n"
        + allowlist_entry(public_key, node_id=node_id, exchanges=exchanges)
    )
