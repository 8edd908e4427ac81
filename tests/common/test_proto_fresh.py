"""The committed bindings in src/common/proto must be what scripts/gen_proto.sh makes now."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def test_committed_bindings_match_proto(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    protos = sorted(path.stem for path in (ROOT / "proto").glob("*.proto"))
    assert "oracle" in protos
    expected = {f"{stem}{suffix}" for stem in protos for suffix in SUFFIXES}
    committed_dir = ROOT / "src" / "common" / "proto"
    committed = {path.name for path in committed_dir.glob("*_pb2*.py*")}
    assert committed == expected, "src/common/proto holds bindings of no proto, or misses some"
    for name in sorted(expected):
        fresh = (tmp_path / "common" / "proto" / name).read_bytes()
        assert fresh == (committed_dir / name).read_bytes(), (
            f"src/common/proto/{name} is stale against proto/: run scripts/gen_proto.sh"
        )
