"""deploy/: the systemd units, their installer, the container image and the compose file.

What can be checked on a machine without systemd as PID 1 and without a Docker daemon is checked
for real: `systemd-analyze verify` on every unit (where the tool exists), the installer run into
a temporary root, and every command the units and the compose file run, given to the real
program with `--check-config` (so an option that does not exist, or a config path that is not
shipped, fails here). Not checked: a service actually running under systemd's sandbox, or the
image being built and run (no daemon here); the README says so.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.scripts.helpers import REPO_ROOT

SYSTEMD = REPO_ROOT / "deploy" / "systemd"
DOCKER = REPO_ROOT / "deploy" / "docker"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
UNITS = sorted(path.name for path in SYSTEMD.glob("*.service"))
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
    "User": "btcfi-oracle",
    "KillSignal": "SIGTERM",
    "Restart": "on-failure",
    "RestartPreventExitStatus": "2",
}
EXPLORER_INSTALLED = (VENV_BIN / "oracle-explorer").exists()


def _console_scripts() -> set[str]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        return set(tomllib.load(handle)["project"]["scripts"])


def _unit(name: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, by key (a key may repeat)."""
    values: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


# --- systemd ------------------------------------------------------------------------------------


def test_every_part_has_a_unit() -> None:
    assert UNITS == [
        "oracle-aggregator.service",
        "oracle-committer.service",
        "oracle-exchange-sim.service",
        "oracle-explorer.service",
        "oracle-node@.service",
    ]


@pytest.mark.parametrize("name", UNITS)
def test_each_unit_is_hardened_restarts_and_stops_with_sigterm(name: str) -> None:
    if name == "oracle-explorer.service" and not EXPLORER_INSTALLED:
        pytest.skip("the explorer package is not in this checkout yet")
    unit = _unit(name)
    for key, value in HARDENING.items():
        assert unit.get(key) == [value], f"{name}: {key}"
    assert unit["ReadWritePaths"] == ["/var/lib/btcfi-oracle /var/log/btcfi-oracle"]
    assert unit["WorkingDirectory"] == ["/var/lib/btcfi-oracle"]
    assert "@system-service" in unit["SystemCallFilter"]
    assert unit["WantedBy"] == ["btcfi-oracle.target"]
    program = Path(shlex.split(unit["ExecStart"][0])[0])
    assert program.parent == Path("/opt/btcfi-oracle/venv/bin")
    assert program.name in _console_scripts()


def _verifiable_units(tmp_path: Path) -> Path:
    """The units with their programs pointed at this checkout's venv, as verify needs them."""
    root = tmp_path / "units"
    root.mkdir()
    for path in [*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.target")]:
        text = path.read_text().replace("/opt/btcfi-oracle/venv/bin", str(VENV_BIN))
        (root / path.name).write_text(text)
    return root


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    root = _verifiable_units(tmp_path)
    names = [name for name in UNITS if name != "oracle-node@.service"]
    names += ["oracle-node@binance.service", "btcfi-oracle.target"]
    if not EXPLORER_INSTALLED:
        names.remove("oracle-explorer.service")  # its program comes with the explorer package
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # verify also reports on units it pulls in from the host (network-online.target and the
    # like); only lines about our units count.
    ours = [line for line in result.stderr.splitlines() if "oracle" in line]
    assert ours == [], result.stderr
    assert result.returncode == 0, result.stderr


def _install(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    root = tmp_path / "root"
    result = subprocess.run(
        [str(SYSTEMD / "install.sh"), "--no-venv", *args],
        env={**os.environ, "DESTDIR": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, root


def test_install_into_a_root_lays_everything_out(tmp_path: Path) -> None:
    result, root = _install(tmp_path)

    assert result.returncode == 0, result.stderr
    etc = root / "etc" / "btcfi-oracle"
    names = {path.name for path in etc.iterdir()}
    assert {"aggregator.toml", "committer.toml", "oracle.env.example"} <= names
    assert {"oracle-node-binance.toml", "oracle-node-coinbase.toml", "oracle-node-kraken.toml"} <= (
        names
    )
    assert "oracle.env" not in names  # the real system needs none
    node = tomllib.loads((etc / "oracle-node-kraken.toml").read_text())
    assert node["oracle"]["exchange"] == "kraken"
    assert (etc / "aggregator.toml").stat().st_mode & 0o777 == 0o640
    units = root / "etc" / "systemd" / "system"
    assert {path.name for path in units.iterdir()} == {*UNITS, "btcfi-oracle.target"}
    assert (root / "usr" / "lib" / "sysusers.d" / "btcfi-oracle.conf").exists()
    assert "oracle-node@kraken.service" in result.stdout
    assert "oracle-exchange-sim.service" not in result.stdout


def test_install_keeps_an_operators_config_and_simulate_writes_oracle_env(
    tmp_path: Path,
) -> None:
    etc = tmp_path / "root" / "etc" / "btcfi-oracle"
    etc.mkdir(parents=True)
    (etc / "aggregator.toml").write_text("# mine\n")

    result, _ = _install(tmp_path, "--simulate")

    assert result.returncode == 0, result.stderr
    assert (etc / "aggregator.toml").read_text() == "# mine\n"
    assert "aggregator.toml: kept (exists)" in result.stdout
    settings = dict(
        line.split("=", 1)
        for line in (etc / "oracle.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings == {
        "ORACLE_AGGREGATOR_SIMULATE": "true",
        "ORACLE_NODE_SIMULATE": "true",
        "ORACLE_NODE_API_URL": "http://127.0.0.1:8099",
        "ORACLE_COMMITTER_RUN_SIMULATE": "true",
    }
    assert "oracle-exchange-sim.service" in result.stdout


def _check_config(command: list[str], *, env: dict[str, str], cwd: Path) -> None:
    """Run `command` (a unit's or a compose service's) with --check-config: it must pass."""
    result = subprocess.run(
        [*command, "--check-config"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    assert "configuration OK" in result.stdout


@pytest.mark.parametrize("simulate", [False, True])
def test_every_installed_unit_command_is_accepted_by_its_program(
    tmp_path: Path, simulate: bool
) -> None:
    result, root = _install(tmp_path, *(["--simulate"] if simulate else []))
    assert result.returncode == 0, result.stderr
    etc = root / "etc" / "btcfi-oracle"
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORACLE_")}
    if simulate:
        for line in (etc / "oracle.env").read_text().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key] = value
    state = tmp_path / "state"
    state.mkdir()
    units = root / "etc" / "systemd" / "system"
    for unit_path in sorted(units.glob("*.service")):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(unit_path)
        instances = ["binance", "coinbase", "kraken"] if "@" in unit_path.name else [""]
        for instance in instances:
            line = unit["Service"]["ExecStart"].replace("%i", instance)
            line = line.replace("/opt/btcfi-oracle/venv/bin", str(VENV_BIN))
            line = line.replace("/etc/btcfi-oracle", str(etc))
            line = line.replace("/var/log/btcfi-oracle", str(tmp_path / "logs"))
            line = line.replace("/run/btcfi-oracle", str(tmp_path / "run"))
            command = shlex.split(line)
            if Path(command[0]).name == "oracle-explorer" and not EXPLORER_INSTALLED:
                continue
            # The unit's own Environment= comes first, as systemd applies it; oracle.env wins.
            unit_env = dict(
                assignment.partition("=")[::2]
                for assignment in shlex.split(unit["Service"].get("Environment", ""))
            )
            _check_config(command, env={**unit_env, **env}, cwd=state)


# --- container image and compose ----------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's final stage, continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    instructions = [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if not line.startswith("#")
    ]
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    final = _dockerfile()
    users = [args for word, args in final if word == "USER"]
    assert users == ["btcfi-oracle:btcfi-oracle"]
    assert "--uid 10001" in next(args for word, args in final if word == "RUN")
    healthcheck = next(args for word, args in final if word == "HEALTHCHECK")
    assert '"/opt/btcfi-oracle/scripts/test_aggregator.py", "--alive"' in healthcheck
    command = next(args for word, args in final if word == "CMD")
    assert command.startswith('["aggregator",')
    assert ("STOPSIGNAL", "SIGTERM") in final


def test_everything_the_dockerfile_copies_is_in_the_repository() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", text, flags=re.M):
        for item in source.split():
            assert (REPO_ROOT / item).exists(), item


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return document


def _container_path(path: str) -> Path:
    """A path inside the image, as the repository holds it."""
    for inside, outside in (
        ("/etc/btcfi-oracle/", REPO_ROOT / "config"),
        ("/opt/btcfi-oracle/scripts/", REPO_ROOT / "scripts"),
    ):
        if path.startswith(inside):
            return outside / path[len(inside) :]
    raise AssertionError(f"{path} is not a path the image provides")


def test_compose_runs_the_whole_system_simulated_and_hardened() -> None:
    services = _compose()["services"]
    names = {"exchange-sim", "aggregator", "committer", "explorer"}
    names |= {f"node-{exchange}" for exchange in ("binance", "coinbase", "kraken")}
    assert set(services) == names
    scripts = _console_scripts()
    for name, service in services.items():
        if name == "explorer" and not EXPLORER_INSTALLED:
            continue  # its program and config come with the explorer package
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["stop_signal"] == "SIGTERM", name
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile", name
        command = service["command"]
        assert command[0] in scripts, name
        for word in command:
            if word.startswith(("/etc/btcfi-oracle/", "/opt/btcfi-oracle/")):
                assert _container_path(word).exists(), f"{name}: {word}"
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD"
        assert _container_path(test[2]).exists(), name
        for needed in service.get("depends_on", {}):
            assert needed in services, name
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), name
    # Simulated everywhere a mode exists; the committer makes its keys before it runs.
    for name in ("aggregator", "committer", "node-binance", "node-coinbase", "node-kraken"):
        assert "--simulate" in services[name]["command"], name
    assert "committer keygen --config /etc/btcfi-oracle/committer.toml" in " ".join(
        services["committer"]["entrypoint"]
    )
    nodes = {services[f"node-{e}"]["command"][2] for e in ("binance", "coinbase", "kraken")}
    assert nodes == {f"/etc/btcfi-oracle/oracle-node-{n}.toml" for n in (1, 2, 3)}


def test_every_compose_command_is_accepted_by_its_program(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ORACLE_")}
    for name, service in _compose()["services"].items():
        command = [str(VENV_BIN / service["command"][0])]
        if service["command"][0] == "oracle-explorer" and not EXPLORER_INSTALLED:
            continue
        for word in service["command"][1:]:
            if word.startswith("/etc/btcfi-oracle/"):
                command.append(str(_container_path(word)))
            elif word.startswith("/var/log/btcfi-oracle/") or word == "/tmp":  # noqa: S108
                command.append(str(tmp_path / name / Path(word).name))
            else:
                command.append(word)
        _check_config(command, env=env, cwd=tmp_path)
