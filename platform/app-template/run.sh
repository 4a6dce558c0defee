#!/bin/sh
# Cargo's runner: boot the kernel ELF ($1) in QEMU with initmm's own runner, wherever the initmm
# dependency is checked out (a path or a git dependency), as `cargo metadata` says.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
initmm=$(cargo metadata --format-version 1 --manifest-path "$here/Cargo.toml" | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "initmm"))')
exec "$initmm/platform/qemu/run.sh" "$@"
