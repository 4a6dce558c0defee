#!/usr/bin/env bash
# ELF -> flat binary (the arm64 Image) with the rust-objcopy that ships with the toolchain.
#   platform/objcopy.sh KERNEL.elf OUT.img
# rust-objcopy looks for libLLVM next to itself (RUNPATH $ORIGIN/../lib), but a toolchain without
# the llvm-tools component keeps it in the sysroot's lib/: point the loader there.
set -euo pipefail
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
LD_LIBRARY_PATH="$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$sysroot/lib/rustlib/$host/bin/rust-objcopy" -O binary "$1" "$2"
