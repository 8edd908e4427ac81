"""Explorer settings: loopback by default, strict types, unknown keys refused in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import ConfigError
from explorer.config import ExplorerConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "explorer.toml"
    path.write_text(text)
    return path


def test_defaults_bind_loopback_and_point_at_the_local_aggregator() -> None:
    config = load_config(None)
    assert config.host == "127.0.0.1"
    assert config.loopback
    assert config.aggregator_target == "127.0.0.1:50051"
    assert config.committer_target == ""
    assert config.logging.level == "info"


def test_the_shipped_file_holds_the_defaults() -> None:
    shipped = load_config(ROOT / "config" / "explorer.toml")
    assert shipped.model_dump(exclude={"source"}) == ExplorerConfig().model_dump(exclude={"source"})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[explorer]\nport = "8090"\n', r"\[explorer\] port: must be an integer from 0 to 65535"),
        ("[explorer]\nport = true\n", r"\[explorer\] port"),
        ("[explorer]\npoll_interval = 0.01\n", r"\[explorer\] poll_interval"),
        ('[explorer]\naggregator_target = "localhost"\n', "aggregator_target: must be host:port"),
        ('[explorer]\naggregator_target = ""\n', "aggregator_target: must be host:port"),
        ('[explorer]\ncommitter_target = "host:99999"\n', "committer_target"),
        ("[explorer]\nprot = 1\n", r"\[explorer\] unknown key 'prot'"),
        ("[explorr]\n", r"unknown table \[explorr\]"),
        ('[logging]\nlevel = "loud"\n', r"\[logging\] level"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        load_config(_file(tmp_path, text))
    assert str(caught.value).startswith(str(tmp_path / "explorer.toml"))
    assert "\n" not in str(caught.value)


def test_targets_are_normalised() -> None:
    config = load_config(None, {"aggregator": "http://localhost:50052/"})
    assert config.aggregator_target == "localhost:50052"


def test_options_beat_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, '[explorer]\nport = 9000\n[logging]\nfile = "logs/explorer.log"\n')
    assert load_config(path).port == 9000
    assert load_config(path, {}, {"ORACLE_EXPLORER_PORT": "9001"}).port == 9001
    config = load_config(path, {"port": "9002"}, {"ORACLE_EXPLORER_PORT": "9001"})
    assert config.port == 9002
    assert config.logging.file == Path("logs/explorer.log")
    with pytest.raises(ConfigError, match="ORACLE_EXPLORER_PORT"):
        load_config(path, {}, {"ORACLE_EXPLORER_PORT": "70000"})


def test_every_setting_has_help_text_and_every_option_its_variable() -> None:
    from click.testing import CliRunner

    from explorer.cli import main
    from explorer.config import ExplorerFile

    for table_name, table in ExplorerFile.model_fields.items():
        model = table.annotation
        assert model is not None
        for name, info in model.model_fields.items():  # type: ignore[union-attr]
            assert info.description, f"[{table_name}] {name}"
    text = CliRunner().invoke(main, ["-h"], terminal_width=200).stdout
    assert text.startswith("Usage:")
    for option in ("--host", "--port", "--aggregator", "--committer", "--log-file", "--log-level"):
        assert option in text
        assert "env var: ORACLE_EXPLORER_" in text.split(option, 1)[1].split("\n  -", 1)[0]
