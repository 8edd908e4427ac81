"""How a simulated answer is told apart from a real one: a contract between simulator and nodes.

The exchange simulator marks every HTTP answer with `X-Oracle-Simulated: 1`; a node in simulate
mode refuses any answer without the mark (a real price would be labelled simulated) and a real
node refuses any answer with it (a simulated price would pass for a real one). Both sides read
the name and value from here, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Final

SIMULATED_HEADER: Final = "X-Oracle-Simulated"
SIMULATED_HEADER_VALUE: Final = "1"
# The word every simulated log line, banner and message carries.
SIMULATED_LABEL: Final = "SIMULATED"


def is_marked_simulated(header_value: str | None) -> bool:
    """True when an answer's `X-Oracle-Simulated` header says it came from the simulator."""
    return header_value is not None and header_value.strip() == SIMULATED_HEADER_VALUE
