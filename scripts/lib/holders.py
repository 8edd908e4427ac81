#!/usr/bin/env python3
"""Who holds a TCP port or a lock file, for the operator scripts (standard library only).

    holders.py port PORT...   one line `PORT<TAB>holder` per port something listens on
    holders.py lock PATH...   one line `PATH<TAB>holder` per lock file a process holds

`holder` is `pid 1234 (aggregator --port 50051 ...)`, or `pid unknown (...)` when the socket
belongs to a process this user cannot inspect. Nothing is printed for a free port or lock; the
exit status is 0 either way (1 on a usage error). The logic is the services' own
(`common.procnet`, `common.filelock`, read from /proc), imported from src/ directly: the scripts
run this with any python3 3.11+, before a virtual environment exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from common.filelock import holder_of
from common.procnet import describe_holders


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in {"port", "lock"}:
        print("usage: holders.py port PORT... | holders.py lock PATH...", file=sys.stderr)
        return 1
    for item in argv[2:]:
        if argv[1] == "port":
            holder = describe_holders(int(item)) if item.isdigit() else ""
        else:
            holder = holder_of(Path(item)) or ""
        if holder:
            print(f"{item}\t{holder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
