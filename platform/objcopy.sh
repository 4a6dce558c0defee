#!/usr/bin/env bash
# ELF -> flat binary (the arm64 Image, also an EFI application) with the rust-objcopy that ships
# with the toolchain, plus the kernel's symbol table (platform/kallsyms.py); then its headers are
# finished and checked (platform/pe.py).
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

# The PE/COFF data section's file size, now that the symbol table is in the file, and every field
# of the arm64 Image header and the PE/COFF header checked (see src/arch/aarch64/image.rs, efi.rs).
python3 "$(dirname "$0")/pe.py" "$1" "$2"
