"""Opening a history file at startup: every way it can be wrong is a ConfigError naming the path.

The order matters. The directory and file are created with owner-only modes; the process lock is
taken before the file is read; a file that is not SQLite is refused from its header without
SQLite ever opening it (so nothing can be written into it); an SQLite file that is not ours
(another application's `application_id`, or tables of its own) is refused before any check
that could write; then the integrity check, WAL mode, the migrations, the recorded mode
(simulated or real) and finally a write probe, so an unwritable file fails here and not on the
first acknowledged observation. Nothing on these paths deletes, truncates or rewrites a file it
did not create.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aggregator.store import schema
from common.errors import ConfigError
from common.logsetup import get_logger

_log = get_logger(service="aggregator")

SQLITE_HEADER = b"SQLite format 3\x00"
# SQLite's own header is 100 bytes; a shorter non-empty file cannot be a database.
_HEADER_LENGTH = 100
# UPSERT (3.24) and the window of bugs fixed around it; Python 3.11 wheels ship far newer.
_MIN_SQLITE = (3, 31, 0)
BUSY_TIMEOUT_SECONDS = 5.0
# The WAL is reset after each checkpoint; this caps what it keeps on disk between them.
_JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024

Synchronous = Literal["FULL", "NORMAL"]
MODE_SIMULATED = "simulated"
MODE_REAL = "real"


@dataclass(frozen=True, slots=True)
class OpenedFile:
    connection: sqlite3.Connection  # autocommit, checked, migrated; for the writer thread
    created: bool
    migrated: list[int]


def mode_name(simulated: bool) -> str:
    return MODE_SIMULATED if simulated else MODE_REAL


def prepare_directory(path: Path) -> None:
    """Create the database's directory (0700) when missing; it must be ours to write in."""
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path}: the history database path exists but is not a regular file")
    _make_directories(path.parent)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{path}: the directory {path.parent} is not writable; SQLite needs to create the "
            "database's -wal and -shm files next to it"
        )


def prepare_file(path: Path) -> bool:
    """Create the file (0600) when missing, else check it; True if the file is new."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        _check_existing(path)
        return False
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot create the history database: {error.strerror}"
        ) from error
    try:
        os.fchmod(descriptor, 0o600)  # exactly 0600, whatever the umask
    finally:
        os.close(descriptor)
    return True


def _make_directories(directory: Path) -> None:
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
            created.chmod(0o700)
        except FileExistsError:
            continue
        except OSError as error:
            raise ConfigError(
                f"{created}: cannot create the history directory: {error.strerror}"
            ) from error
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory; it must hold the history database")


def _check_existing(path: Path) -> None:
    info = path.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path}: the history database is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); anyone could rewrite the record. "
            f"Run: chmod 600 {path}"
        )
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        _log.warning(
            "history_file_readable_by_others",
            path=str(path),
            mode=f"{stat.S_IMODE(info.st_mode):04o}",
            hint="chmod 600",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"{path}: the history database is not readable and writable by us")
    if info.st_size == 0:
        return  # SQLite treats an empty file as an empty database: a fresh history
    with path.open("rb") as stream:
        header = stream.read(_HEADER_LENGTH)
    if len(header) < _HEADER_LENGTH or not header.startswith(SQLITE_HEADER):
        raise ConfigError(
            f"{path}: not an SQLite database (unknown header); refusing to touch it. Move it "
            "away or set [database] path to another file"
        )


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection to an existing file (SQLite must not create one: mode=rw)."""
    if sqlite3.sqlite_version_info < _MIN_SQLITE:
        raise ConfigError(
            f"{path}: SQLite {sqlite3.sqlite_version} is too old; at least "
            f"{'.'.join(map(str, _MIN_SQLITE))} is needed"
        )
    uri = f"{path.resolve().as_uri()}?mode=rw"
    try:
        return sqlite3.connect(
            uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_SECONDS,
        )
    except sqlite3.Error as error:
        raise ConfigError(f"{path}: cannot open the history database: {error}") from error


def open_file(
    path: Path,
    *,
    simulated: bool,
    synchronous: Synchronous,
    migrations: Sequence[schema.Migration] = schema.MIGRATIONS,
    now: float,
) -> OpenedFile:
    """Check, migrate and prepare the file; the caller ran prepare_directory and holds the lock."""
    created = prepare_file(path)
    connection = connect(path)
    try:
        recorded = _inspect(connection, path, migrations)
        _check_mode(path, recorded, simulated)
        _configure(connection, path, synchronous)
        migrated = _migrate(connection, path, migrations)
        _write_probe(connection, path, None if recorded else mode_name(simulated), now)
        if created:
            # The new file's and its WAL's directory entries must survive a power cut too.
            _fsync_directory(path.parent)
    except BaseException:
        connection.close()
        raise
    return OpenedFile(connection, created, migrated)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _inspect(
    connection: sqlite3.Connection, path: Path, migrations: Sequence[schema.Migration]
) -> str | None:
    """Refuse what is not our healthy history; the mode it records (None when new)."""
    latest = migrations[-1].version
    try:
        app_id = schema.application_id(connection)
        version = schema.user_version(connection)
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    except sqlite3.DatabaseError as error:
        raise ConfigError(
            f"{path}: unreadable or corrupt SQLite database ({error}); refusing to start on it. "
            "Restore a backup or move the file away"
        ) from error
    ours = app_id == schema.APPLICATION_ID and version >= 1 and "meta" in tables
    empty = app_id == 0 and version == 0 and not tables
    if not ours and not empty:
        raise ConfigError(
            f"{path}: an SQLite database of another application (application_id {app_id}, "
            f"user_version {version}, tables {', '.join(sorted(tables)) or 'none'}); refusing "
            "to write into it. Set [database] path to a file of its own"
        )
    if version > latest:
        raise ConfigError(
            f"{path}: history schema version {version} was written by a newer aggregator (this "
            f"one knows up to {latest}); refusing to downgrade it. Run the newer version"
        )
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as error:
        problems = [str(error)]
    if problems != ["ok"]:
        raise ConfigError(
            f"{path}: the history database is corrupt ({'; '.join(problems)}); refusing to "
            "start on it. Restore a backup, or move it away to start an empty history"
        )
    if not ours:
        return None
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'mode'").fetchone()
    except sqlite3.DatabaseError as error:
        raise ConfigError(f"{path}: cannot read the history's meta table ({error})") from error
    return None if row is None else str(row[0])


def _configure(connection: sqlite3.Connection, path: Path, synchronous: Synchronous) -> None:
    try:
        (journal_mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(journal_mode).lower() != "wal":
            raise ConfigError(
                f"{path}: SQLite refused WAL mode (journal_mode is {journal_mode}); the "
                "history needs a local, writable file system"
            )
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        connection.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as error:
        raise ConfigError(
            f"{path}: cannot prepare the history database ({error}); is it writable?"
        ) from error


def _migrate(
    connection: sqlite3.Connection, path: Path, migrations: Sequence[schema.Migration]
) -> list[int]:
    before = schema.user_version(connection)
    try:
        applied = schema.migrate(connection, target=migrations[-1].version, migrations=migrations)
    except sqlite3.Error as error:
        raise ConfigError(
            f"{path}: migrating the history schema from version "
            f"{schema.user_version(connection)} failed ({error}); the file was left at that "
            "version"
        ) from error
    if applied:
        _log.info(
            "history_schema_migrated", path=str(path), from_version=before, to_version=applied[-1]
        )
    return applied


def _check_mode(path: Path, recorded: str | None, simulated: bool) -> None:
    """Before anything is written: simulated and real data never share a file."""
    wanted = mode_name(simulated)
    if recorded is not None and recorded != wanted:
        raise ConfigError(
            f"{path}: this history holds {recorded.upper()} data and this aggregator runs in "
            f"{wanted} mode; simulated and real prices never share a database. Give this "
            "mode its own [database] path"
        )


def _write_probe(
    connection: sqlite3.Connection, path: Path, new_mode: str | None, now: float
) -> None:
    """Record the mode of a new history, and prove the file writable before serving."""
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            if new_mode is not None:
                connection.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    [("mode", new_mode), ("created_at", repr(now))],
                )
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('opened_at', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (repr(now),),
            )
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as error:
        raise ConfigError(
            f"{path}: the history database is not writable ({error}); check its permissions "
            "and the file system"
        ) from error
