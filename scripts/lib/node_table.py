#!/usr/bin/env python3
"""The scripts' node table, read from the one place it is declared: the shipped per-node configs.

`config/oracle-node-<N>.toml` says which exchange node N collects and under which node id
(`[oracle] exchange`, `node_id`); the operator scripts (`run_multi_nodes.sh`, `stop_nodes.sh`,
`test_exchanges.sh`, through `scripts/lib/procs.sh`) read that table from here instead of writing
it down again. One line per node, in node order:

    <N> <exchange> <node_id> <config path>

Exit 1 with one line on stderr when a config cannot be read or the table is not one node per
exchange (the aggregator counts each exchange once, so two nodes for one exchange is a mistake).
Standard library only (tomllib, Python >= 3.11): the scripts run it before any venv exists.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

CONFIG_NAME = re.compile(r"oracle-node-(\d+)\.toml")


def node_table(config_dir: Path) -> list[tuple[int, str, str, Path]]:
    """(N, exchange, node id, config path) for every `oracle-node-<N>.toml`, in node order."""
    rows: list[tuple[int, str, str, Path]] = []
    for path in sorted(config_dir.glob("oracle-node-*.toml")):
        match = CONFIG_NAME.fullmatch(path.name)
        if match is None:
            continue
        try:
            with path.open("rb") as handle:
                oracle = tomllib.load(handle).get("oracle", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot read it ({exc})") from None
        exchange, node_id = oracle.get("exchange"), oracle.get("node_id")
        for key, value in (("exchange", exchange), ("node_id", node_id)):
            if not isinstance(value, str) or not re.fullmatch(
                r"[A-Za-z0-9][A-Za-z0-9._:@-]*", value
            ):
                raise ValueError(
                    f"{path}: [oracle] {key} must name the node's {key}, got {value!r}"
                )
        rows.append((int(match.group(1)), str(exchange), str(node_id), path))
    rows.sort()
    if not rows:
        raise ValueError(f"{config_dir}: no oracle-node-<N>.toml, so no node to run")
    for what, named in (
        ("exchange", [(n, exchange) for n, exchange, _, _ in rows]),
        ("node id", [(n, node_id) for n, _, node_id, _ in rows]),
    ):
        seen: dict[str, int] = {}
        for n, value in named:
            if value in seen:
                raise ValueError(
                    f"config/oracle-node-{seen[value]}.toml and oracle-node-{n}.toml "
                    f"both name {what} {value!r}: one node per {what}"
                )
            seen[value] = n
    return rows


def main(argv: list[str]) -> int:
    config_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / "config"
    try:
        rows = node_table(config_dir)
    except ValueError as exc:
        print(f"node table: {exc}", file=sys.stderr)
        return 1
    for index, exchange, node_id, path in rows:
        print(index, exchange, node_id, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
