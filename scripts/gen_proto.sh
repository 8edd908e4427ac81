#!/usr/bin/env bash
# Regenerate the Python bindings of every proto/*.proto into src/common/proto/.
# The output is committed and never edited by hand; tests/common/test_proto_fresh.py fails when it
# is stale. Usage: scripts/gen_proto.sh [OUT_DIR]   (OUT_DIR defaults to src/; tests use a temp dir)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/src}"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
bindir="$(dirname "$python")"
mkdir -p "$out/common/proto"
# The virtual include path "common/proto=proto" makes the generated modules import each other as
# `common.proto.oracle_pb2`, so they live in one package instead of on sys.path's top level.
protos=()
for file in "$root"/proto/*.proto; do protos+=("common/proto/$(basename "$file")"); done
PATH="$bindir:$PATH" "$python" -m grpc_tools.protoc \
  -I"common/proto=$root/proto" \
  --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}"
