"""Every command README.md shows is one the project really accepts.

The CLIs' invocations are parsed by the real click commands (options, choices and values are
validated without running anything); scripts must exist and be executable, and the ones that run
processes are exercised for real by tests/e2e and tests/scripts.
"""

import re
import shlex
from pathlib import Path

import click
import pytest

from aggregator.cli import main as aggregator_main
from committer.cli import main as committer_main
from exchange_sim.cli import main as simulator_main
from explorer.cli import main as explorer_main
from oracle_node.cli import main as node_main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CLIS: dict[str, click.Command] = {
    "aggregator": aggregator_main,
    "oracle-node": node_main,
    "exchange-sim": simulator_main,
    "oracle-explorer": explorer_main,
    "committer": committer_main,
}


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


COMMANDS = readme_commands()


def test_readme_has_the_two_newcomer_commands():
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "./scripts/run_multi_nodes.sh --simulate" in quick_start
    assert "scripts/test.sh" in quick_start
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_has_no_placeholders_left():
    for placeholder in ("BENCHMARK_TABLE", "TODO", "TBD", "XXX"):
        assert placeholder not in README, placeholder


# System tools the README shows beside the project's own commands (the service and container
# sections); the project's parts of those lines are checked by tests/scripts/test_deploy.py.
SYSTEM_TOOLS = (
    "tail",
    "curl",
    "systemctl",
    "docker",
    "journalctl",
    "grpcurl",
)  # grpcurl: not installed here; its use is tested with the reflection client


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_is_accepted(command):
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]  # VAR=value before a command
    if words[0] == "sudo":
        words = words[1:]
    program = words[0]
    if program == "source":
        assert (ROOT / words[1]).is_file()
        return
    if program in ("python3", ".venv/bin/python"):
        if words[1] == "-m":
            program, arguments = words[2], words[3:]
        else:
            assert (ROOT / words[1]).is_file(), command
            return
    else:
        program, arguments = program.removeprefix(".venv/bin/").removeprefix("./"), words[1:]
    if program in CLIS:
        # Parsing validates every option and value exactly as a real start would.
        CLIS[program].make_context(program, list(arguments))
        return
    if program in SYSTEM_TOOLS:
        return
    script = ROOT / program
    assert script.is_file(), f"README names {program}, which does not exist"
    assert script.stat().st_mode & 0o111, f"{program} is not executable"
