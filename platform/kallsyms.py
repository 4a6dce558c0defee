#!/usr/bin/env python3
"""Build the kernel's own symbol table from its ELF and put it into the flat Image.

    platform/kallsyms.py KERNEL.elf KERNEL.img      (objcopy.sh runs it on every Image)

The linker script leaves a hole between the end of .data (where the flat Image file ends) and
.bss: `__kallsyms_start`..`__kallsyms_end`. This script pads the Image up to `__kallsyms_start`
and appends the table, so the loader loads it with the rest of the image and the .bss clearing
never touches it. The kernel reads it there (src/kallsyms.rs) to name backtrace frames itself.

The table holds every code symbol of the ELF's .symtab in an executable section, sorted by
address, with its demangled name (platform/qemu/symbolize.py's demangler) compressed into tokens:
names are split at `::`, each distinct piece is stored once, and a name is the list of its pieces'
indices. Little-endian, every array 4-byte aligned:

    0   magic "KSYM"    4  version (u32, 1)     8  count (u32)       12 token count (u32)
    16  addrs: offset of [u32; count], each symbol's address - __image_start, ascending
    20  sizes: offset of [u32; count], each symbol's size (0: an assembly label)
    24  names: offset of [u32; count + 1], where each symbol's token list starts in the stream
    28  stream: offset of the token indices, LEB128 (7 bits a byte, high bit = more)
    32  tokens: offset of [u32; token count + 1], where each token starts in the token bytes
    36  token bytes: offset of the UTF-8 pieces, back to back
    40  total size in bytes

Standard library only. Exits 1 (leaving the Image as objcopy made it) if the table does not fit;
an ELF without `__kallsyms_start` (a program with no room for a table) is left alone.
"""

import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "qemu"))
import symbolize  # noqa: E402  (the ELF reader and demangler the runner uses)

MAGIC = b"KSYM"
VERSION = 1
HEADER = 44


def code_symbols(syms):
    """(address, size, name) of every code symbol, one per address, sorted."""
    best = {}
    for value, size, is_func, name in syms.entries:
        if not any(lo <= value < hi for lo, hi in syms.text):
            continue
        # One name per address: a sized function beats an assembly label at the same place
        # (entries are sorted so that the function comes last).
        best[value] = (value, size, symbolize.demangle(name))
    return [best[a] for a in sorted(best)]


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def build(symbols, base):
    tokens, index = [], {}
    stream, starts = bytearray(), []
    for _, _, name in symbols:
        starts.append(len(stream))
        for piece in name.split("::"):
            if piece not in index:
                index[piece] = len(tokens)
                tokens.append(piece.encode("utf-8"))
            stream += leb128(index[piece])
    starts.append(len(stream))
    tok_starts, tok_bytes = [], bytearray()
    for t in tokens:
        tok_starts.append(len(tok_bytes))
        tok_bytes += t
    tok_starts.append(len(tok_bytes))

    def align4(b):
        return b + b"\0" * (-len(b) % 4)

    n = len(symbols)
    parts = [
        struct.pack(f"<{n}I", *[a - base for a, _, _ in symbols]),
        struct.pack(f"<{n}I", *[s for _, s, _ in symbols]),
        struct.pack(f"<{n + 1}I", *starts),
        align4(bytes(stream)),
        struct.pack(f"<{len(tok_starts)}I", *tok_starts),
        align4(bytes(tok_bytes)),
    ]
    offsets, off = [], HEADER
    for p in parts:
        offsets.append(off)
        off += len(p)
    header = MAGIC + struct.pack("<IIIIIIIIII", VERSION, n, len(tokens), *offsets, off)
    assert len(header) == HEADER
    return header + b"".join(parts)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: kallsyms.py KERNEL.elf KERNEL.img")
    elf, img = sys.argv[1:]
    syms = symbolize.Symbols(elf)
    marks = syms.marks
    need = ("__image_start", "__kallsyms_start", "__kallsyms_end")
    if "__kallsyms_start" not in marks:
        return  # a program whose linker script leaves no room for a table (the chainloader)
    if not all(m in marks for m in need):
        sys.exit(f"kallsyms: {elf} lacks one of {'/'.join(need)}")
    base, start, end = (marks[m] for m in need)
    table = build(code_symbols(syms), base)
    room = end - start
    if len(table) > room:
        sys.exit(f"kallsyms: the table is {len(table)} bytes but linker.ld leaves {room}: make the hole bigger")
    file_size = os.path.getsize(img)
    if file_size > start - base:
        sys.exit(f"kallsyms: {img} ({file_size} bytes) already reaches past __kallsyms_start")
    with open(img, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"\0" * (start - base - file_size))
        f.write(table)


if __name__ == "__main__":
    main()
