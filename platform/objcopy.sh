#!/usr/bin/env bash
# ELF -> flat binary (the arm64 Image) with the rust-objcopy that ships with the toolchain, plus
# the kernel's symbol table (platform/kallsyms.py).
#   platform/objcopy.sh KERNEL.elf OUT.img
# rust-objcopy looks for libLLVM next to itself (RUNPATH $ORIGIN/../lib), but a toolchain without
# the llvm-tools component keeps it in the sysroot's lib/: point the loader there.
set -euo pipefail
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
LD_LIBRARY_PATH="$sysroot/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$sysroot/lib/rustlib/$host/bin/rust-objcopy" -O binary "$1" "$2"

# The kernel's own symbol table (src/kallsyms.rs), built from this ELF, into the hole linker.ld
# leaves for it.
python3 "$(dirname "$0")/kallsyms.py" "$1" "$2"

# Check the arm64 Image header the loader will read (see src/arch/aarch64/image.rs).
magic=$(od -An -t x4 -j 56 -N 4 "$2" | tr -d ' ')
size=$(od -An -t u8 -j 16 -N 8 "$2" | tr -d ' ')
file=$(stat -c %s "$2")
if [[ "$magic" != 644d5241 ]]; then
    echo "objcopy: $2 has no arm64 Image header (magic $magic at 0x38)" >&2; exit 1
fi
if (( size < file )); then
    echo "objcopy: $2: header image_size $size is smaller than the file ($file bytes)" >&2; exit 1
fi
