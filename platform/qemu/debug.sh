#!/usr/bin/env bash
# Boot an initmm kernel in QEMU stopped at its first instruction, and debug it with gdb-multiarch.
#
#   platform/qemu/debug.sh KERNEL.elf [runner options] [kernel words]        (`just debug`)
#   platform/qemu/debug.sh --batch GDB-COMMANDS-FILE KERNEL.elf [...]         (the test)
#
# QEMU (through run.sh, so every runner option works: --board rpi4, --smp 2, ...) waits for gdb
# on a free local port (-gdb tcp:127.0.0.1:PORT -S); its console goes to target/qemu-console.log
# (`tail -f` it in another terminal). gdb-multiarch then starts with platform/gdb/initmm.py, and
# the kernel's symbols loaded at its link addresses and at the physical address QEMU loads the
# Image at (virt: 0x40200000; raspi4b: 0x200000; INITMM_GDB_PHYS overrides), attached, with a
# breakpoint at the entry (break-entry) and one at the panic handler (break-panic): `continue`.
# With --batch, gdb runs the commands in the file instead, without a terminal, and this script
# exits with QEMU's status (the kernel's) once both have finished.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
batch=""
if [[ "${1:-}" == --batch ]]; then batch=$2; shift 2; fi
[[ $# -ge 1 ]] || { echo "usage: $0 [--batch FILE] KERNEL.elf [runner options] [words]" >&2; exit 2; }
elf=$1; shift
gdb=$(command -v gdb-multiarch || true)
[[ -n "$gdb" ]] || { echo "debug: gdb-multiarch is missing (just setup, or apt-get install gdb-multiarch)" >&2; exit 2; }

phys=${INITMM_GDB_PHYS:-0x40200000}
if [[ -z "${INITMM_GDB_PHYS:-}" && " $* ${INITMM_BOARD:-} ${INITMM_MACHINE:-} " == *rpi4* || " $* " == *raspi4b* ]]; then
    phys=0x200000
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$repo/target/qemu-console.log
mkdir -p "$repo/target"
INITMM_TIMEOUT=${INITMM_TIMEOUT:-$([[ -n "$batch" ]] && echo 60 || echo 100000)} \
    "$here/run.sh" --qemu-arg -gdb --qemu-arg "tcp:127.0.0.1:$port" --qemu-arg -S "$elf" "$@" \
    >"$log" 2>&1 &
qpid=$!
trap 'kill "$qpid" 2>/dev/null' EXIT
for _ in $(seq 100); do # until QEMU listens
    grep -q "^runner: qemu" "$log" 2>/dev/null && python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
    kill -0 "$qpid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
done
setup=(-nx -x "$repo/platform/gdb/initmm.py" -ex "initmm-symbols $elf $phys"
    -ex "target remote 127.0.0.1:$port")
if [[ -n "$batch" ]]; then
    "$gdb" -batch "${setup[@]}" -x "$batch" </dev/null
    gdb_rc=$?
    wait "$qpid"; rc=$?
    trap - EXIT
    echo "debug: gdb exited with $gdb_rc, QEMU with $rc; the console:"
    sed 's/^/console: /' "$log"
    [[ $gdb_rc == 0 ]] || exit 1
    exit $rc
fi
echo "debug: QEMU waits for gdb on 127.0.0.1:$port; its console: tail -f $log"
"$gdb" "${setup[@]}" -ex break-entry -ex break-panic
