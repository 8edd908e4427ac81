"""The node-to-exchange mapping is declared once, in the shipped per-node configs.

`scripts/lib/node_table.py` reads `config/oracle-node-<N>.toml`; `procs.sh`'s `oracle_load_nodes`
gives the scripts that table. Changing a config changes what the scripts run, no script repeats
the mapping, and a table that is not one node per exchange stops the scripts before they start
anything.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.scripts.helpers import REPO_ROOT, SCRIPTS


def _load(config_dir: Path) -> subprocess.CompletedProcess[str]:
    script = f'''source "{SCRIPTS}/lib/procs.sh"
oracle_load_nodes
for entry in "${{oracle_nodes[@]}}"; do
  read -r index exchange <<<"$entry"
  echo "$index $exchange ${{oracle_node_ids[$index]}} ${{oracle_node_configs[$index]}}"
done
'''
    return subprocess.run(
        ["bash", "-c", script],
        env={"PATH": "/usr/bin:/bin", "ORACLE_CONFIG_DIR": str(config_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _write_node(config_dir: Path, index: int, exchange: str, node_id: str) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"oracle-node-{index}.toml").write_text(
        f'[oracle]\nnode_id = "{node_id}"\nexchange = "{exchange}"\n', encoding="utf-8"
    )


def test_the_shipped_configs_are_the_table() -> None:
    result = _load(REPO_ROOT / "config")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [row[:3] for row in rows] == [
        ["1", "binance", "oracle-node-1"],
        ["2", "coinbase", "oracle-node-2"],
        ["3", "kraken", "oracle-node-3"],
    ]
    for index, exchange, node_id, path in rows:
        oracle = tomllib.loads(Path(path).read_text())["oracle"]
        assert (oracle["exchange"], oracle["node_id"]) == (exchange, node_id), index


def test_a_changed_config_changes_what_the_scripts_run(tmp_path: Path) -> None:
    _write_node(tmp_path, 1, "kraken", "edge-kraken")
    _write_node(tmp_path, 4, "binance", "edge-binance")
    result = _load(tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line.split()[:3] for line in result.stdout.splitlines()] == [
        ["1", "kraken", "edge-kraken"],
        ["4", "binance", "edge-binance"],
    ]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([(1, "kraken", "a"), (2, "kraken", "b")], "both name exchange 'kraken'"),
        ([(1, "kraken", "same"), (2, "binance", "same")], "both name node id 'same'"),
        ([(1, "kraken", "bad id!")], "node_id must name"),
        ([], "no oracle-node-<N>.toml"),
    ],
)
def test_a_table_that_is_not_one_node_per_exchange_stops_the_scripts(
    tmp_path: Path, nodes: list[tuple[int, str, str]], message: str
) -> None:
    tmp_path.mkdir(exist_ok=True)
    for node in nodes:
        _write_node(tmp_path, *node)
    result = _load(tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_run_multi_nodes_refuses_a_bad_table_before_starting_anything(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    _write_node(tmp_path / "config", 1, "kraken", "a")
    _write_node(tmp_path / "config", 2, "kraken", "b")
    env = {**script_env, "ORACLE_CONFIG_DIR": str(tmp_path / "config")}
    result = subprocess.run(
        [str(SCRIPTS / "run_multi_nodes.sh"), "--simulate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "both name exchange 'kraken'" in result.stderr
    assert not list(Path(env["ORACLE_RUN_DIR"]).glob("*.pid"))


def test_no_script_writes_the_mapping_down_again() -> None:
    repeated = re.compile(r"oracle-node-[0-9]|\"[0-9] (binance|coinbase|kraken)\"")
    for script in [
        *SCRIPTS.glob("*.sh"),
        *SCRIPTS.glob("lib/*.sh"),
        SCRIPTS / "test_aggregator.py",
    ]:
        code = "\n".join(
            line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        assert not repeated.search(code), script
