"""The shared settings machinery: precedence, parsing of option text, file reading, error lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from common.errors import ConfigError
from common.settings import (
    LoggingConfig,
    Override,
    Seconds,
    Table,
    explain,
    layer,
    read_toml,
    rename_deprecated,
    show,
    validate,
)


class Demo(Table):
    """`[demo]`: a table like any service's."""

    port: int = Field(1, ge=0, le=65535, description="A port")
    wait: Seconds = Field(2.0, gt=0, le=60, description="A delay")
    on: bool = Field(False, description="A switch")


class DemoFile(Table):
    demo: Demo = Demo()
    logging: LoggingConfig = LoggingConfig()


OVERRIDES = (
    Override("--port", ("demo", "port"), "DEMO_PORT"),
    Override("--on/--off", ("demo", "on"), "DEMO_ON"),
    Override("--old-port", ("demo", "port"), "DEMO_OLD_PORT", deprecated="--port"),
)


def load(document: dict[str, object], given: dict[str, object], env: dict[str, str]) -> DemoFile:
    return validate(DemoFile, layer(DemoFile, document, OVERRIDES, given, env), "demo.toml")


def test_option_beats_environment_beats_file_beats_default() -> None:
    file = {"demo": {"port": 10}}
    assert load({}, {}, {}).demo.port == 1
    assert load(file, {}, {}).demo.port == 10
    assert load(file, {}, {"DEMO_PORT": "20"}).demo.port == 20
    assert load(file, {"port": "30"}, {"DEMO_PORT": "20"}).demo.port == 30


def test_option_and_variable_text_is_parsed_as_the_fields_type() -> None:
    assert load({}, {"on": True}, {}).demo.on is True
    assert load({}, {}, {"DEMO_ON": "yes"}).demo.on is True
    assert load({}, {}, {"DEMO_ON": "0"}).demo.on is False
    assert load({}, {}, {"DEMO_ON": ""}).demo.on is False  # empty: unset, as click does


def test_a_variable_is_refused_like_the_same_value_in_the_file() -> None:
    with pytest.raises(ConfigError) as from_file:
        load({"demo": {"port": True}}, {}, {})
    with pytest.raises(ConfigError) as from_env:
        load({}, {}, {"DEMO_PORT": "true"})
    assert str(from_file.value) == (
        "demo.toml: [demo] port: must be an integer from 0 to 65535, got true"
    )
    assert str(from_env.value) == (
        "environment DEMO_PORT (--port): must be an integer from 0 to 65535, got 'true'"
    )
    with pytest.raises(ConfigError, match=r"^option --port: must be an integer .*got 70000$"):
        load({}, {"port": "70000"}, {})


def test_a_deprecated_option_works_and_is_reported() -> None:
    layers = layer(DemoFile, {}, OVERRIDES, {"old_port": "5"}, {})
    assert validate(DemoFile, layers, "x").demo.port == 5
    assert layers.notices == ("option --old-port is deprecated; use --port",)
    with pytest.raises(ConfigError, match="set the same setting; give only one"):
        layer(DemoFile, {}, OVERRIDES, {"old_port": "5", "port": "6"}, {})
    # At different levels the stronger one wins, and the deprecated one is not mentioned.
    layers = layer(DemoFile, {}, OVERRIDES, {"port": "6"}, {"DEMO_OLD_PORT": "5"})
    assert validate(DemoFile, layers, "x").demo.port == 6
    assert layers.notices == ()


def test_renamed_keys_move_and_warn() -> None:
    document: dict[str, object] = {"demo": {"old": 3}}
    notices = rename_deprecated(document, {("demo", "old"): ("demo", "port")}, "f.toml")
    assert document == {"demo": {"port": 3}}
    assert notices == ("f.toml: [demo] old is deprecated; use [demo] port",)
    with pytest.raises(ConfigError, match="deprecated name of"):
        rename_deprecated({"demo": {"old": 3, "port": 4}}, {("demo", "old"): ("demo", "port")}, "f")


def test_several_errors_are_one_line_that_counts_the_others() -> None:
    with pytest.raises(ValidationError) as caught:
        DemoFile.model_validate({"demo": {"port": "x", "wait": -1, "on": 2}})
    line = explain(caught.value, DemoFile, "f.toml", {})
    assert line == "f.toml: [demo] port: must be an integer from 0 to 65535, got 'x' (and 2 more)"
    assert "\n" not in line


def test_a_hostile_value_cannot_make_a_long_or_multiline_error() -> None:
    assert show("a\nb") == "'a\\nb'"
    assert len(show("x" * 10_000)) == 80


def test_dev_null_reads_as_an_empty_file_and_other_devices_are_refused() -> None:
    assert read_toml(Path(os.devnull)) == {}
    with pytest.raises(ConfigError, match="not a regular file"):
        read_toml(Path("/dev/urandom"))


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "secret.toml"
    path.write_text("")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read config file: Permission denied"):
        read_toml(path)


def test_a_model_built_in_code_is_as_strict_as_a_file() -> None:
    with pytest.raises(ValidationError):
        Demo(port=True)
    with pytest.raises(ValidationError):
        Demo(wait=float("inf"))
    with pytest.raises(ValidationError):
        Demo.model_validate({"prot": 1})
    demo = Demo()
    with pytest.raises(ValidationError):
        demo.port = 2  # type: ignore[misc]  # frozen
