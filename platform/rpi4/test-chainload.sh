#!/usr/bin/env bash
# End-to-end test of the serial chainloader on QEMU raspi4b (part of `just test`):
#   platform/rpi4/test-chainload.sh CHAINLOAD.elf KERNEL.elf
# QEMU boots the chainloader with -kernel, as the firmware would load kernel8.img, with the Pi 4
# DTB; the mini UART (QEMU's second serial port) is a pty, which chainboot.py opens as it would
# open a USB-serial adapter. chainboot.py first makes two offers the loader must refuse (an
# image too big for RAM; a corrupted transfer, of the chainloader's own small Image so that it
# takes seconds, not the half minute QEMU's mini UART needs for the kernel), then sends initmm, which must come up on all
# four CPUs, run the compute workload and exit 0 (semihosting, from the command line QEMU put in
# the DTB: the chainloader hands the firmware's DTB over untouched).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
loader=${1:?usage: $0 CHAINLOAD.elf KERNEL.elf}
kernel=${2:?usage: $0 CHAINLOAD.elf KERNEL.elf}
"$here/../objcopy.sh" "$kernel" "$kernel.img" || exit 1
qlog=$(mktemp) console=$(mktemp)
trap 'rm -f "$qlog" "$console"; [[ -n "${qpid:-}" ]] && kill "$qpid" 2>/dev/null' EXIT

t0=$(date +%s.%N)
# 240 s: the Image (about 740 KB) crosses QEMU's mini UART at 8-15 KiB/s, 50-95 s on its own.
"$here/../qemu/run.sh" --board rpi4 --timeout 240 --qemu-arg -serial --qemu-arg null \
    --qemu-arg -serial --qemu-arg pty "$loader" workload=compute >"$qlog" 2>&1 &
qpid=$!
pty=""
for _ in $(seq 100); do
    pty=$(sed -n 's/.*redirected to \(\/dev\/[^ ]*\) (label serial1).*/\1/p' "$qlog")
    [[ -n "$pty" ]] && break
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$pty" ]]; then
    cat "$qlog"; echo "test-chainload: FAILED: QEMU did not give the mini UART a pty" >&2; exit 1
fi
echo "test-chainload: the Pi's mini UART is $pty"
python3 "$here/chainboot.py" --device "$pty" --image "$kernel.img" --elf "$kernel" \
    --test-refusals "${loader%.elf}.img" --ready-timeout 30 --tries 1 </dev/null 2>&1 | tee "$console"
sent=${PIPESTATUS[0]}
wait "$qpid"; rc=$?; qpid=""
t1=$(date +%s.%N)
sed 's/^/qemu: /' "$qlog"
failed=0
check() { # check WHAT TEXT: TEXT must be in the console
    if grep -qF -- "$2" <(tr -d '\r' <"$console"); then echo "check $1 ... ok"
    else echo "check $1 ... FAILED (no \"$2\")"; failed=1; fi
}
[[ $sent == 0 ]] || { echo "check chainboot ... FAILED (status $sent)"; failed=1; }
[[ $rc == 0 ]] || { echo "check kernel exit status ... FAILED ($rc)"; failed=1; }
check oversize_refused "chainload: refused: an image of 1099511627776 bytes does not fit in RAM"
check corrupt_refused "chainload: refused: checksum"
check loaded "chainload: loaded"
# The first 2 MiB-aligned slot clear of the loader (at 2 MiB) and of the DTB.
check loaded_above_the_loader "chainload: loaded $(stat -c %s "$kernel.img") bytes at 0x400000"
check device_tree_passed "board: Raspberry Pi 4 Model B"
check all_cpus "4 of 4 CPUs online"
check workload "1 passed, 0 failed"
# The loader loaded away from its link address (older firmware loads it at 0x80000): the same
# Image with text_offset 0x80000, which QEMU loads at 2 MiB + 0x80000. Its entry code must copy
# it to 0x200000 and run from there (its data holds absolute addresses): it must still answer,
# and refuse both bad offers.
moved=$(mktemp) mlog=$(mktemp)
cp "${loader%.elf}.img" "$moved"
printf '\x00\x00\x08\x00\x00\x00\x00\x00' | dd of="$moved" bs=1 seek=8 conv=notrunc status=none
timeout 60 qemu-system-aarch64 -M raspi4b -cpu cortex-a72 -smp 4 -m 2G -nographic -monitor none \
    -nic none -serial null -serial pty -dtb "$here/../../tests/data/bcm2711-rpi-4-b.dtb" \
    -kernel "$moved" </dev/null >"$mlog" 2>&1 &
mpid=$!
pty=""
for _ in $(seq 100); do
    pty=$(sed -n 's/.*redirected to \(\/dev\/[^ ]*\) (label serial1).*/\1/p' "$mlog")
    [[ -n "$pty" ]] && break
    sleep 0.1
done
if [[ -n "$pty" ]] && python3 "$here/chainboot.py" --device "$pty" --image "$kernel.img" --elf "$kernel" \
    --test-refusals "${loader%.elf}.img" --refusals-only --ready-timeout 20 </dev/null >"$console" 2>&1 &&
    grep -q "chainload: ready" "$console"; then
    echo "check loader_moves_itself_from_0x280000_to_0x200000 ... ok"
else
    cat "$mlog" "$console"; echo "check loader_moves_itself_from_0x280000_to_0x200000 ... FAILED"; failed=1
fi
kill "$mpid" 2>/dev/null; wait "$mpid" 2>/dev/null
rm -f "$moved" "$mlog"

awk -v a="$t0" -v b="$t1" 'BEGIN { printf "test-chainload: %.1f s in all\n", b - a }'
[[ $failed == 0 ]] && echo "test-chainload: ok" || { echo "test-chainload: FAILED" >&2; exit 1; }
