"""Who listens on a TCP port, read from /proc alone (no `ss`, `lsof` or `fuser` needed).

An operator told "port 50051 is taken" wants to know by what: the run scripts, `stop_nodes.sh`
(a port still held after stopping) and the services' own "cannot listen" errors name the process.
`/proc/net/tcp` and `/proc/net/tcp6` list every socket of this network namespace with its state
and inode; a process holds the socket when one of its `/proc/<pid>/fd/*` links reads
`socket:[<inode>]`. Another user's descriptors cannot be read without privileges, so the holder
may stay unknown: the port is still reported as held, with the PID as unknown.

Standard library only, and no import from the rest of the project: `scripts/lib/ports.py` runs it
with whatever python3 is on the machine, before any virtual environment exists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column
_PROC = Path("/proc")
_PYTHON = re.compile(r"python[0-9.]*")


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket on `port`; `pids` is empty when no readable process holds it."""

    port: int
    address: str
    inode: int
    pids: tuple[int, ...]


def _address(hex_address: str) -> str:
    """/proc/net/tcp's hex address (host byte order, 32-bit words) as text."""
    raw = bytes.fromhex(hex_address)
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    data = b"".join(words)
    if len(data) == 4:
        return ".".join(str(byte) for byte in data)
    if data[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(byte) for byte in data[12:])  # an IPv4-mapped IPv6 address
    groups = [f"{int.from_bytes(data[i : i + 2], 'big'):x}" for i in range(0, 16, 2)]
    return "[" + ":".join(groups) + "]"


def _listening_inodes(port: int, proc: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_address, _, local_port = fields[1].partition(":")
            if int(local_port, 16) == port:
                found.append((_address(local_address), int(fields[9])))
    return found


def _socket_owners(inodes: set[int], proc: Path) -> dict[int, set[int]]:
    """inode -> the PIDs with a descriptor on it (only the processes this user may inspect)."""
    targets = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, set[int]] = {inode: set() for inode in inodes}
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return owners
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            descriptors = os.scandir(Path(entry.path) / "fd")
        except OSError:
            continue  # gone, or another user's
        with descriptors:
            for descriptor in descriptors:
                try:
                    link = os.readlink(descriptor.path)
                except OSError:
                    continue
                if link in targets:
                    owners[targets[link]].add(int(entry.name))
    return owners


def listeners(port: int, *, proc: Path = _PROC) -> list[Listener]:
    """Every socket listening on TCP `port` (any address), with the PIDs holding it."""
    sockets = _listening_inodes(port, proc)
    if not sockets:
        return []
    owners = _socket_owners({inode for _, inode in sockets}, proc)
    return [
        Listener(port, address, inode, tuple(sorted(owners.get(inode, ()))))
        for address, inode in sockets
    ]


def command_line(pid: int, *, proc: Path = _PROC, limit: int = 120) -> str:
    """The process's command line, shortened to `limit` characters; "" when unreadable."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    words = [word.decode(errors="replace") for word in raw.split(b"\0") if word]
    if words:
        words[0] = os.path.basename(words[0])
    # A console script runs as `python /path/.venv/bin/aggregator ...`: show `aggregator ...`.
    if len(words) > 1 and _PYTHON.fullmatch(words[0]) and not words[1].startswith("-"):
        words = [os.path.basename(words[1]), *words[2:]]
    text = " ".join(words)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_holders(port: int, *, proc: Path = _PROC) -> str:
    """`pid 1234 (aggregator --port 50051)`, or `pid unknown` when no holder can be read.

    Empty when nothing listens on the port.
    """
    found = listeners(port, proc=proc)
    if not found:
        return ""
    pids = sorted({pid for listener in found for pid in listener.pids})
    if not pids:
        return "pid unknown (a process this user cannot inspect)"
    parts = []
    for pid in pids:
        command = command_line(pid, proc=proc)
        parts.append(f"pid {pid} ({command})" if command else f"pid {pid}")
    return ", ".join(parts)
