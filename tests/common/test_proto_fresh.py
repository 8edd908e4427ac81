"""The committed bindings in src/common/proto must be what scripts/gen_proto.sh makes now."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("oracle_pb2.py", "oracle_pb2.pyi", "oracle_pb2_grpc.py", "oracle_pb2_grpc.pyi")


def test_committed_bindings_match_proto(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    for name in GENERATED:
        fresh = (tmp_path / "common" / "proto" / name).read_bytes()
        committed = (ROOT / "src" / "common" / "proto" / name).read_bytes()
        assert fresh == committed, (
            f"src/common/proto/{name} is stale against proto/oracle.proto: run scripts/gen_proto.sh"
        )
