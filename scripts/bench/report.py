"""Describing the machine and printing figures as a Markdown table (pasteable into README.md).

A throughput figure means nothing without the machine it came from, so every report starts with
the core count, CPU model, Python and grpcio versions, and every row states its goal and whether
this run met it.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

NOT_IMPLEMENTED = "n/a (not implemented yet)"


def machine() -> dict[str, str]:
    """Core count, CPU model, OS and the versions that move the figures most."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "grpcio": version("grpcio"),
        "protobuf": version("protobuf"),
    }


def machine_line(info: dict[str, str]) -> str:
    return (
        f"{info['cores']} cores, {info['cpu']}, {info['os']}, Python {info['python']}, "
        f"grpcio {info['grpcio']}, protobuf {info['protobuf']}"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with columns padded to equal width, readable as plain text too."""
    widths = [len(cell) for cell in header]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    return f"{value:.2f}"
