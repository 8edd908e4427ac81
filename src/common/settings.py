"""Settings for every service: a TOML file read safely, options layered on it, one-line errors.

Each setting is declared once, as a field of a frozen, strict pydantic model: its type, default,
bounds and help text (the field's docstring). A table of the file is one model (`Table`); the
file is a model whose fields are its tables, so an unknown table or key, a wrong type or a value
out of bounds is found by pydantic with its location, and `validate` turns that into ONE line
naming the file (or the option or environment variable the value came from), the key
(`[aggregator] node_timeout`) and what is allowed, derived from the same declaration. Strict
means no coercion: a boolean is never a number (`port = true` is refused) and a string is never a
number, except where a type says so (`DecimalSetting` takes a TOML float or string).

Precedence is command line > environment > file > default (`layer`). A command-line option and
its environment variable (`Override`) both arrive as text (a flag as a bool), are parsed by
pydantic's own lax parser for the field's type and then validated by the same model as the file's
value: `ORACLE_AGGREGATOR_PORT=true` fails exactly like `port = true`. Settings that are valid one
by one but contradict each other are refused by a model validator raising `ConflictError`.

How a service adds a table (e.g. TLS for the aggregator), one small model and two lines:

    class TlsConfig(Table):
        \"\"\"`[tls]`: the gRPC port's certificate; without one the port is plaintext.\"\"\"

        cert: FilePath | None = None
        \"\"\"PEM certificate chain\"\"\"   # a field's docstring is its help text
        key: FilePath | None = None
        \"\"\"PEM private key, mode 0600\"\"\"
        handshake_timeout: Seconds = Field(5.0, gt=0, le=60)
        \"\"\"Seconds a TLS handshake may take\"\"\"

    class AggregatorFile(Table):                 # the file: one field per table
        ...
        tls: TlsConfig = TlsConfig()

    class AggregatorConfig(AggregatorSettings):  # what the service reads: `config.tls.cert`
        ...
        tls: TlsConfig = TlsConfig()

and, when an operator should also set it on the command line, one entry in the service's
`OVERRIDES`: `Override("--tls-cert", ("tls", "cert"), "ORACLE_AGGREGATOR_TLS_CERT")`. Unknown keys,
types, bounds, the error line, `--help` text and the environment variable follow from that.
"""

from __future__ import annotations

import os
import stat
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NoReturn,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

import annotated_types
import click
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined

from common.errors import ConfigError
from common.logsetup import configure_logging

# A config file is a few KiB; anything larger is a mistake (`--config /dev/zero`, a log file),
# refused before it is read, so a wrong path can neither hang the process nor fill its memory.
MAX_CONFIG_BYTES: Final = 256 * 1024
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
# An override's table may be a placeholder resolved at load time (the node's `--api-url` goes to
# the table of the exchange it runs, known only once `--exchange` and the file are read).
EXCHANGE_TABLE: Final = "{exchange}"

Key = tuple[str, str]
ModelT = TypeVar("ModelT", bound=BaseModel)
CommandT = TypeVar("CommandT", bound=Callable[..., Any])


class Table(BaseModel):
    """Base of every settings model: strict types, unknown keys refused, immutable once built."""

    # A field's docstring is its help text (`--help`, README), written once beside it.
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, use_attribute_docstrings=True
    )


class ConflictError(ValueError):
    """Settings valid one by one that make no sense together; `key` is the one to name.

    Raised inside a model validator; `key` is relative to the model that raises it, so a table's
    validator names its own keys and the file's validator names `(table, key)`.
    """

    def __init__(self, key: tuple[str, ...], reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


# --- reusable field types ------------------------------------------------------------------------


def checked(check: Callable[[Any], object]) -> AfterValidator:
    """A validator from a function that raises ValueError on a bad value (its message is shown)."""

    def run(value: Any) -> Any:  # noqa: ANN401  # any field type
        check(value)
        return value

    return AfterValidator(run)


def _decimal_from_toml(value: object) -> object:
    # TOML has no decimal: a price bound arrives as an integer, a float or a string. Through str()
    # a float becomes the decimal it prints as (0.01, not 0.01000000000000000020816681711721685).
    if isinstance(value, bool):
        return value  # refused by the strict Decimal validator: a boolean is never a number
    if isinstance(value, int | float | str):
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            return value
    return value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _path_from_text(value: object) -> object:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must be a path, not empty")
        if "\0" in value:
            raise ValueError("must be a path without NUL characters")
        return Path(value)
    return value


def _host(value: str) -> str:
    if not value or len(value) > 253 or any(char.isspace() or char in "/[]" for char in value):
        raise ValueError("must be a host name or an IP address such as '127.0.0.1'")
    return value


def _not_a_directory(path: Path) -> Path:
    if path.is_dir():
        raise ValueError("is a directory; give a file path")
    return path


def _not_a_file(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ValueError("exists and is not a directory")
    return path


def _list_as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _no_repeats(items: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"lists {', '.join(map(repr, repeated))} more than once")
    return items


HostName = Annotated[str, AfterValidator(_host)]
"""An address to bind or reach: a host name or an IP address (IPv6 without brackets)."""

DecimalSetting = Annotated[Decimal, BeforeValidator(_decimal_from_toml), Field(allow_inf_nan=False)]
"""A Decimal from a TOML integer, float or string; never from a boolean, never infinite."""


class _Unit(str):
    """Marks a field's unit, so an error can say `a number of seconds from 1 to 60`."""


SECONDS: Final = _Unit("seconds")
Seconds = Annotated[float, Field(allow_inf_nan=False), SECONDS]
"""A finite number of seconds (an integer is taken as well); bounds are set per field."""

FilePath = Annotated[Path, BeforeValidator(_path_from_text), AfterValidator(_not_a_directory)]
"""A file's path: a non-empty string that does not name an existing directory."""

DirPath = Annotated[Path, BeforeValidator(_path_from_text), AfterValidator(_not_a_file)]
"""A directory's path: a non-empty string that does not name an existing file."""

TomlList = BeforeValidator(_list_as_tuple)
"""Lets a TOML list fill a tuple field (strict mode takes only a tuple)."""

NoRepeats = AfterValidator(_no_repeats)

LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]


class LoggingConfig(Table):
    """`[logging]`: every service's log level and optional JSON log file."""

    level: LogLevel = "info"
    """Log level"""
    file: FilePath | None = None
    """Append JSON log lines to this file"""


# --- reading the file ----------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at `path`: a regular file (or /dev/null, read as empty), UTF-8, small.

    The file is opened without blocking and checked before it is read, so a directory, a device
    such as /dev/zero, a FIFO or a huge file is one clear error instead of a hang or a traceback.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from None
    try:
        data = _read_regular(path, descriptor)
    finally:
        os.close(descriptor)
    if len(data) > MAX_CONFIG_BYTES:  # grew while read, or a /proc-like file without a size
        raise ConfigError(f"{path}: larger than 256 KiB; a config file is at most 256 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _read_regular(path: Path, descriptor: int) -> bytes:
    info = os.fstat(descriptor)
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory, not a config file")
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == os.stat(os.devnull).st_rdev:
        return b""  # `--config /dev/null`: no settings from a file, the defaults apply
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file (a device, pipe or socket)")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {info.st_size} bytes; a config file is at most 256 KiB")
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= MAX_CONFIG_BYTES and (chunk := os.read(descriptor, 65536)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror}") from None
    return b"".join(chunks)


def rename_deprecated(
    document: dict[str, Any], renames: Mapping[Key, Key], source: str
) -> tuple[str, ...]:
    """Move deprecated keys to their new names in `document`; the warnings to give for each."""
    notices: list[str] = []
    for old, new in renames.items():
        table = document.get(old[0])
        if not isinstance(table, dict) or old[1] not in table:
            continue
        if new[1] in table:
            raise ConfigError(
                f"{source}: {render_key(old)} is the deprecated name of {render_key(new)}; "
                f"set only {new[1]}"
            )
        table[new[1]] = table.pop(old[1])
        notices.append(f"{source}: {render_key(old)} is deprecated; use {render_key(new)}")
    return tuple(notices)


# --- command line and environment ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Override:
    """A command-line option and its environment variable, bound to one key of the file.

    `option` is click's declaration (`--port`, or `--simulate/--no-simulate` for a flag);
    `deprecated` names the replacement to point to when this option is an old name.
    """

    option: str
    key: Key
    envvar: str | None = None
    deprecated: str | None = None
    help: str | None = None

    @classmethod
    def named(cls, prefix: str, option: str, key: Key, **extra: str) -> Override:
        """The option with its variable named after it: `--node-timeout`, `<prefix>NODE_TIMEOUT`."""
        variable = prefix + option.split("/", 1)[0].lstrip("-").replace("-", "_").upper()
        return cls(option, key, variable, **extra)

    @property
    def name(self) -> str:
        """The option as an operator types it (`--simulate` for `--simulate/--no-simulate`)."""
        return self.option.split("/", 1)[0]

    @property
    def param(self) -> str:
        """The Python name click gives the option's value."""
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Layers:
    """The file's document with the overrides applied, and where each overridden value came from."""

    document: dict[str, Any]
    origins: dict[Key, str]
    notices: tuple[str, ...]


def layer(
    model: type[BaseModel],
    document: Mapping[str, Any],
    overrides: Sequence[Override],
    given: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    tables: Mapping[str, str] | None = None,
) -> Layers:
    """Apply `given` (option values by param, None = not given) and `environ` over `document`.

    For each key the command line wins over the environment, which wins over the file. Two
    options for one key at the same level (an option and its deprecated name) are an error. An
    override whose table is a placeholder missing from `tables` is left out.
    """
    merged: dict[str, Any] = {
        name: dict(table) if isinstance(table, dict) else table for name, table in document.items()
    }
    origins: dict[Key, str] = {}
    notices: list[str] = []
    grouped: dict[Key, list[Override]] = {}
    for override in overrides:
        grouped.setdefault(override.key, []).append(override)
    for declared, group in grouped.items():
        key = _resolve(declared, tables or {})
        if key is None:
            continue
        chosen = _highest(group, given, environ)
        if chosen is None:
            continue
        override, value, label = chosen
        if override.deprecated:
            notices.append(f"{label} is deprecated; use {override.deprecated}")
        if isinstance(value, str):
            value = _from_text(value, field_at(model, key), label)
        table = merged.setdefault(key[0], {})
        if isinstance(table, dict):  # else the file's `name = 3` is reported by validation
            table[key[1]] = value
            origins[key] = label
    return Layers(merged, origins, tuple(notices))


def _resolve(key: Key, tables: Mapping[str, str]) -> Key | None:
    if key[0].startswith("{"):
        table = tables.get(key[0])
        return None if table is None else (table, key[1])
    return key


def option_label(override: Override) -> str:
    return f"option {override.name}"


def env_label(override: Override) -> str:
    return f"environment {override.envvar} ({override.name})"


def _highest(
    group: Sequence[Override], given: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[Override, object, str] | None:
    levels: list[list[tuple[Override, object, str]]] = [
        [(o, given[o.param], option_label(o)) for o in group if given.get(o.param) is not None],
        # An empty variable counts as unset, as click does: `ORACLE_NODE_ID= oracle-node` is
        # the usual way to switch one off in a shell.
        [(o, environ[o.envvar], env_label(o)) for o in group if o.envvar and environ.get(o.envvar)],
    ]
    for found in levels:
        if len(found) > 1:
            raise ConfigError(
                f"{found[0][2]} and {found[1][2]} set the same setting; give only one"
            )
        if found:
            return found[0]
    return None


def _from_text(text: str, field: FieldInfo | None, label: str) -> object:
    """An option's or variable's text as the field's type, by pydantic's lax parser."""
    if field is None:
        return text
    base = _base_type(field.annotation)
    if base in (bool, int, float):
        try:
            return TypeAdapter(base).validate_python(text.strip(), strict=False)
        except ValidationError:
            raise ConfigError(f"{label}: must be {allowed(field)}, got {text!r}") from None
    if get_origin(base) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def click_options(
    model: type[BaseModel], overrides: Sequence[Override]
) -> Callable[[CommandT], CommandT]:
    """click options for `overrides`, their help text and default taken from the model's fields.

    Every option is a plain string (or a flag) with no default: click only parses the command
    line, the model validates, and `layer` reads the environment.
    """

    def decorate(command: CommandT) -> CommandT:
        for override in reversed(overrides):
            field = field_at(model, _resolve(override.key, {EXCHANGE_TABLE: "binance"}))
            text = override.help or (field.description if field else None) or ""
            default = _default_text(field)
            extras = [f"default: {default}"] if default and not override.help else []
            if override.envvar:
                extras.append(f"env var: {override.envvar}")
            if override.deprecated:
                extras.append(f"deprecated: use {override.deprecated}")
            help_text = f"{text}  [{'; '.join(extras)}]" if extras else text
            command = click.option(
                override.option,
                override.param,
                default=None,
                help=help_text,
                metavar=None if "/" in override.option else _metavar(field),
            )(command)
        return command

    return decorate


def given_values(params: Mapping[str, object], overrides: Sequence[Override]) -> dict[str, object]:
    """The command line's values for `overrides`, out of click's parameters."""
    return {override.param: params.get(override.param) for override in overrides}


# --- validation and one-line errors --------------------------------------------------------------


def validate(model: type[ModelT], layers: Layers, source: str) -> ModelT:
    """`model` from the layered document; pydantic's errors become one `ConfigError` line."""
    try:
        return model.model_validate(layers.document)
    except ValidationError as error:
        raise ConfigError(explain(error, model, source, layers.origins)) from None


def explain(
    error: ValidationError, model: type[BaseModel], source: str, origins: Mapping[Key, str]
) -> str:
    """The first of pydantic's errors as a line: where, the key, what is allowed, what was given."""
    details = error.errors()
    line = _explain_one(details[0], model, source, origins)
    if len(details) > 1:
        line += f" (and {len(details) - 1} more)"
    return line


def _explain_one(
    detail: ErrorDetails, model: type[BaseModel], source: str, origins: Mapping[Key, str]
) -> str:
    path = tuple(part for part in detail["loc"] if isinstance(part, str))
    index = next((part for part in detail["loc"] if isinstance(part, int)), None)
    value = detail.get("input")
    cause = (detail.get("ctx") or {}).get("error")
    if detail["type"] == "extra_forbidden":
        return _unknown(model, path, value, source)
    if isinstance(cause, ConflictError):
        key = path + cause.key
        origin = _origin(origins, key)
        if origin:
            return f"{origin}: {cause.reason} (with {source})"
        return f"{source}: {render_key(key)}: {cause.reason}"
    label = _origin(origins, path) or f"{source}: {render_key(path, index)}"
    return f"{label}: {_reason(detail, field_at(model, path), index, cause)}, got {show(value)}"


def _reason(detail: ErrorDetails, field: FieldInfo | None, index: int | None, cause: object) -> str:
    if detail["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a table"
    if isinstance(cause, ValueError):
        return str(cause)  # a field's own validator words what it allows
    if field is None:
        return detail["msg"]
    return f"must be {allowed(field, item=index is not None)}"


def _origin(origins: Mapping[Key, str], path: tuple[str, ...]) -> str | None:
    """The option or variable that set the key at `path`, if one did."""
    return origins.get((path[0], path[1])) if len(path) >= 2 else None


def _unknown(model: type[BaseModel], path: tuple[str, ...], value: object, source: str) -> str:
    parent = model if len(path) == 1 else _model_at(model, path[:-1])
    names = list(parent.model_fields) if parent else []
    if len(path) == 1:
        known = ", ".join(f"[{name}]" for name in names)
        if isinstance(value, dict):
            return f"{source}: unknown table [{show(path[0])[1:-1]}]; known tables: {known}"
        return f"{source}: unknown key {show(path[0])} outside any table; known tables: {known}"
    table = render_key(path[:-1])
    return f"{source}: {table} unknown key {show(path[-1])}; allowed: {', '.join(names)}"


def render_key(path: Sequence[str], index: int | None = None) -> str:
    """`[table] key` (or `[table]`), as an operator finds it in the file."""
    if not path:
        return "the file"
    text = f"[{path[0]}]" + (f" {'.'.join(path[1:])}" if len(path) > 1 else "")
    return text if index is None else f"{text}[{index}]"


def show(value: object) -> str:
    """A value as TOML shows it, shortened: a hostile value cannot make a long, multi-line error."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        value = list(value)  # a TOML list, turned into a tuple before it was refused
    text = repr(str(value)) if isinstance(value, Path) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- what a field allows, from its declaration ---------------------------------------------------


def field_at(model: type[BaseModel], path: Sequence[str] | None) -> FieldInfo | None:
    """The declaration of the field at `path` (table, key) in `model`, if there is one."""
    if not path:
        return None
    parent = _model_at(model, path[:-1])
    return parent.model_fields.get(path[-1]) if parent else None


def _model_at(model: type[BaseModel], path: Sequence[str]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for name in path:
        field = current.model_fields.get(name) if current else None
        base = _base_type(field.annotation) if field else None
        current = base if isinstance(base, type) and issubclass(base, BaseModel) else None
    return current


def _base_type(annotation: object) -> object:
    """`annotation` without Annotated[...] and without `| None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def allowed(field: FieldInfo, *, item: bool = False) -> str:
    """What `field` accepts in words: `an integer from 0 to 65535`, `one of 'mean', 'median'`."""
    base = _base_type(field.annotation)
    if get_origin(base) is tuple:
        element = _base_type(get_args(base)[0])
        if item:
            return _kind(element)
        if get_origin(element) is Literal:
            words = f"a list of {_choices(element)}"
        else:
            words = f"a list of {_kind(element).removeprefix('a ').removeprefix('an ')}s"
        limits = _limits(field.metadata, unit="items")
        return f"{words}, {limits}" if limits else words
    kind = _kind(base)
    units = [item for item in field.metadata if isinstance(item, _Unit)]
    if units and kind == "a number":
        kind = f"a number of {units[0]}"
    steps = [item for item in field.metadata if isinstance(item, annotated_types.MultipleOf)]
    if steps:
        kind = f"{kind} multiple of {number_text(steps[0].multiple_of)}"
    limits = _limits(field.metadata, unit="characters")
    return f"{kind} {limits}" if limits else kind


def _kind(base: object) -> str:
    if get_origin(base) is Literal:
        return f"one of {_choices(base)}"
    kinds: dict[object, str] = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        Decimal: "a number",
        str: "a string",
        Path: "a path (a string)",
    }
    if base in kinds:
        return kinds[base]
    if isinstance(base, type) and issubclass(base, BaseModel):
        return "a table"
    return "a valid value"


def _choices(literal: object) -> str:
    return ", ".join(repr(choice) for choice in get_args(literal))


def _limits(metadata: Sequence[object], *, unit: str) -> str:
    low = next((_lower_bound(item) for item in metadata if _lower_bound(item)), None)
    high = next((_upper_bound(item) for item in metadata if _upper_bound(item)), None)
    if low and high:
        if low[0] == "at least" and high[0] == "at most":
            return f"from {number_text(low[1])} to {number_text(high[1])}"
        return f"{low[0]} {number_text(low[1])} and {high[0]} {number_text(high[1])}"
    if low or high:
        words, bound = low or high  # type: ignore[misc]  # one of them is set
        return f"{words} {number_text(bound)}"
    shortest = next((i.min_length for i in metadata if isinstance(i, annotated_types.MinLen)), 0)
    longest = next((i.max_length for i in metadata if isinstance(i, annotated_types.MaxLen)), 0)
    if shortest and longest:
        return f"of {shortest} to {longest} {unit}"
    if longest:
        return f"of at most {longest} {unit}"
    return "not empty" if shortest else ""


def _lower_bound(item: object) -> tuple[str, object] | None:
    if isinstance(item, annotated_types.Ge):
        return ("at least", item.ge)
    if isinstance(item, annotated_types.Gt):
        return ("above", item.gt)
    return None


def _upper_bound(item: object) -> tuple[str, object] | None:
    if isinstance(item, annotated_types.Le):
        return ("at most", item.le)
    if isinstance(item, annotated_types.Lt):
        return ("below", item.lt)
    return None


def number_text(value: object) -> str:
    """A number as an operator writes it: 10000000, 0.5, 1e-09 (never 1e+07)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_text(field: FieldInfo | None) -> str:
    if field is None or field.default is PydanticUndefined or field.default is None:
        return ""
    default = field.default
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return number_text(default) if isinstance(default, float | int) else str(default)


def _metavar(field: FieldInfo | None) -> str:
    base = _base_type(field.annotation) if field else str
    if get_origin(base) is Literal:
        return "[" + "|".join(str(choice) for choice in get_args(base)) + "]"
    if get_origin(base) is tuple:
        return "LIST"
    names: dict[object, str] = {int: "INTEGER", float: "NUMBER", Decimal: "NUMBER", Path: "PATH"}
    return names.get(base, "TEXT")


# --- at startup ----------------------------------------------------------------------------------


def origin_of(
    key: Key,
    overrides: Sequence[Override],
    given: Mapping[str, object],
    environ: Mapping[str, str],
    source: str,
) -> str:
    """Where the value of `key` came from, worded as in the error lines."""
    group = [override for override in overrides if override.key == key]
    chosen = _highest(group, given, environ)
    return chosen[2] if chosen else f"{source}: {render_key(key)}"


def start_logging(logging: LoggingConfig, *, service: str, origin: str) -> None:
    """Configure structlog; a log file that cannot be appended to is a `ConfigError` naming it.

    The file is checked by opening it (what matters is whether this process can append to it,
    which a permission check cannot tell: root passes `os.access` on /proc/version). A FIFO is
    accepted only while something reads it.
    """
    try:
        if logging.file is not None:
            # Without a reader, opening a FIFO for writing would block forever; non-blocking,
            # it fails at once (ENXIO), and so does anything else this process cannot append to.
            logging.file.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
            os.close(os.open(logging.file, flags, 0o644))
        configure_logging(logging.level, logging.file, service=service)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"{origin}: cannot append to log file {str(logging.file)!r}: {reason}"
        ) from None


def exit_on_config_error(program: str, error: ConfigError) -> NoReturn:
    """Print the error as one line on stderr and exit 2, the usage-error status."""
    message = " ".join(str(error).split("\n"))
    click.echo(f"{program}: configuration error: {message}", err=True)
    raise SystemExit(2)
