#!/usr/bin/env bash
# The gdb script, in batch mode, on QEMU virt (part of `just test` when gdb-multiarch is
# installed): gdb attaches to a kernel waiting at reset, stops at its entry (the Image's first
# instruction, at its physical address), reads x0 (the device tree, per the boot protocol) and
# sees all four CPUs as threads, stops again in the kernel proper (upper-half addresses, MMU on),
# loads the symbols again from where the running kernel says it is (as over JTAG), sets the
# panic breakpoint, continues, and the kernel runs to the end and exits 0 without hitting it.
#   platform/qemu/test-gdb.sh KERNEL.elf
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
elf=${1:?usage: $0 KERNEL.elf}
if ! command -v gdb-multiarch >/dev/null; then
    echo "test-gdb: gdb-multiarch is not installed (just setup installs it): skipped"
    exit 0
fi
cmds=$(mktemp) out=$(mktemp)
trap 'rm -f "$cmds" "$out"' EXIT
cat >"$cmds" <<'GDB'
break-entry
continue
printf "at entry: pc=%#lx x0=%#lx\n", $pc, $x0
info symbol $pc
cpus
tbreak __initmm_main
continue
printf "in main: pc=%#lx\n", $pc
initmm-symbols KERNEL_ELF
break-panic
continue
GDB
sed -i "s|KERNEL_ELF|$elf|" "$cmds"
"$here/debug.sh" --batch "$cmds" "$elf" --machine virt --smp 4 workload=none 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
failed=0
check() { # check NAME REGEX
    if grep -qE -- "$2" "$out"; then echo "check $1 ... ok"; else echo "check $1 ... FAILED (no /$2/)"; failed=1; fi
}
check stopped_at_entry "^at entry: pc=0x40200000 "
check x0_is_the_device_tree "^at entry: pc=0x40200000 x0=0x48000000$"
check entry_named_at_its_physical_address "^_start in section \.text"
check four_cpus_as_threads "^ +4 +Thread 1\.4 "
check kernel_proper_at_its_link_address "^in main: pc=0xffffff80[0-9a-f]+$"
check symbols_from_the_running_kernel "^initmm: symbols at 0xffffff8000000000 \(MMU on\) and at 0x40200000 .*"
check panic_breakpoint_set "^Breakpoint 3 at 0xffffff80[0-9a-f]+: file src/panic.rs"
check ran_to_the_end "^console: .*4 of 4 CPUs online"
if grep -qE "(^|hit )Breakpoint 3, " "$out"; then echo "check no_panic ... FAILED"; failed=1; fi
[[ $rc == 0 ]] || { echo "check exit_status ... FAILED ($rc)"; failed=1; }
[[ $failed == 0 ]] && echo "test-gdb: ok" || { echo "test-gdb: FAILED" >&2; exit 1; }
