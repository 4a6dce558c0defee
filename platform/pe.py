#!/usr/bin/env python3
"""Finish and check the headers of an arm64 Image that is also a PE/COFF EFI application.

    platform/pe.py KERNEL.elf KERNEL.img        (objcopy.sh runs it on every Image)

The kernel's Image carries two headers (src/arch/aarch64/image.rs, efi.rs): the Linux arm64
Image header that flat-Image loaders (QEMU -kernel, the Raspberry Pi firmware, U-Boot's booti)
read, and a PE/COFF header that EFI loaders (EDK2, U-Boot's bootefi) read. The linker fills in
everything it knows; only the file size of the PE data section is unknown until the symbol table
(platform/kallsyms.py) is in the file, so this script sets it (and pads the file to the PE file
alignment), then checks every field of both headers against the ELF's symbols, and exits 1,
naming the field, when one is wrong. An Image whose header names no PE header (the chainloader)
gets only the arm64 header's checks.

It also checks the rule the EFI stub lives by (src/arch/aarch64/efi.rs): it runs under the
firmware at its load address, where following an absolute address is fatal, so no code reachable
from `efi_main` by direct branches (the stub, and on through the entry code) may reach a panic or
`core::fmt`, which use them. The branches are decoded from the ELF's text. Release builds only
(cargo's `release` directory): a build with debug assertions adds an overflow or alignment check,
with its panic, to every addition and raw-pointer read, which the firmware's (aligned, valid)
values never trip, in the early entry code as in the stub.

Standard library only.
"""

import bisect
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "qemu"))
import symbolize  # noqa: E402  (its ELF reader)

ARM64_MAGIC = 0x644D5241          # "ARM\x64" at 0x38
CODE0_MZ = 0xFA405A4D             # ccmp x18, #0, #0xd, pl: "MZ"
PE_MACHINE_ARM64 = 0xAA64
PE_OPT_PE32PLUS = 0x20B
PE_SUBSYSTEM_EFI_APPLICATION = 10
PE_SCN_TEXT = 0x60000020          # code, execute, read
PE_SCN_DATA = 0xC0000040          # initialised data, read, write
SECTION_ALIGNMENT = 4096
FILE_ALIGNMENT = 512


class Bad(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Bad(what)


def branch_target(insn, at):
    """Where a `b` at byte offset `at` goes, or None."""
    if insn >> 26 != 0b000101:
        return None
    imm = insn & 0x03FFFFFF
    if imm & 0x02000000:
        imm -= 1 << 26
    return at + imm * 4


def arm64_header(img, marks, base):
    check(len(img) >= 64, f"{len(img)} bytes: shorter than the 64-byte arm64 Image header")
    code0, code1 = struct.unpack_from("<II", img, 0)
    text_offset, image_size, flags = struct.unpack_from("<QQQ", img, 8)
    magic, res5 = struct.unpack_from("<II", img, 0x38)
    check(magic == ARM64_MAGIC, f"arm64 header: magic {magic:#010x} at 0x38, not \"ARM\\x64\"")
    check(image_size != 0, "arm64 header: image_size is 0 (loaders would ignore text_offset)")
    check(image_size >= len(img), f"arm64 header: image_size {image_size} is smaller than the file ({len(img)} bytes)")
    check(flags & 1 == 0, "arm64 header: flags say big-endian")
    entry = marks.get("primary_entry")
    if code0 == CODE0_MZ:
        target = branch_target(code1, 4)
        check(entry is None or target == entry - base,
              f"arm64 header: code1 branches to {target}, not primary_entry ({entry - base if entry else '?'})")
    else:
        check(res5 == 0, "arm64 header: a PE header offset, but code0 is not the \"MZ\" instruction")
    if "__image_size" in marks:
        check(image_size == marks["__image_size"], "arm64 header: image_size is not the ELF's __image_size")
    return code0 == CODE0_MZ, res5, image_size


def pe_header(img, pe, marks, base, image_size, fix):
    """Check the PE header at `pe`; with `fix`, set the data section's file size first."""
    check(img[:2] == b"MZ", "PE: the file does not start with \"MZ\"")
    check(pe % 8 == 0 and pe + 24 <= len(img), f"PE: header offset {pe:#x} (at 0x3c) is misaligned or past the file")
    check(img[pe:pe + 4] == b"PE\0\0", f"PE: no \"PE\\0\\0\" signature at {pe:#x}")
    machine, nsect, _, _, _, opt_size, chars = struct.unpack_from("<HHIIIHH", img, pe + 4)
    check(machine == PE_MACHINE_ARM64, f"PE: Machine {machine:#x}, not Arm64 ({PE_MACHINE_ARM64:#x})")
    check(nsect == 2, f"PE: NumberOfSections {nsect}, not 2 (text, data)")
    check(chars & 0x2, "PE: Characteristics lack IMAGE_FILE_EXECUTABLE_IMAGE")
    check(chars & 0x1 == 0, "PE: Characteristics say relocations stripped (loaders would insist on ImageBase)")
    opt = pe + 24
    (magic, _, _, code_size, init_size, _, entry, base_of_code) = struct.unpack_from("<HBBIIIII", img, opt)
    check(magic == PE_OPT_PE32PLUS, f"PE: optional header Magic {magic:#x}, not PE32+")
    (image_base, sect_align, file_align) = struct.unpack_from("<QII", img, opt + 24)
    (size_of_image, size_of_headers, _, subsystem) = struct.unpack_from("<IIIH", img, opt + 56)
    (nrva,) = struct.unpack_from("<I", img, opt + 108)
    check(opt_size == 112 + 8 * nrva, f"PE: SizeOfOptionalHeader {opt_size} does not hold {nrva} data directories")
    check(all(b == 0 for b in img[opt + 112:opt + 112 + 8 * nrva]), "PE: a data directory is not empty (no relocations, imports, ...)")
    check(subsystem == PE_SUBSYSTEM_EFI_APPLICATION, f"PE: Subsystem {subsystem}, not an EFI application")
    check(image_base == 0, f"PE: ImageBase {image_base:#x}, not 0")
    check(sect_align == SECTION_ALIGNMENT, f"PE: SectionAlignment {sect_align}")
    check(file_align == FILE_ALIGNMENT, f"PE: FileAlignment {file_align}")
    check(size_of_image == image_size, f"PE: SizeOfImage {size_of_image:#x} is not the arm64 header's image_size {image_size:#x}")
    check(size_of_image % sect_align == 0, "PE: SizeOfImage is not a multiple of SectionAlignment")
    check(size_of_headers % file_align == 0 and size_of_headers % sect_align == 0,
          f"PE: SizeOfHeaders {size_of_headers:#x} is not aligned")
    if "efi_pe_entry" in marks:
        check(entry == marks["efi_pe_entry"] - base, f"PE: AddressOfEntryPoint {entry:#x} is not efi_pe_entry")
    table = opt + opt_size
    sections = []
    for i in range(nsect):
        s = table + 40 * i
        name = img[s:s + 8].rstrip(b"\0").decode("ascii", "replace")
        vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<IIII", img, s + 8)
        (flags,) = struct.unpack_from("<I", img, s + 36)
        sections.append([name, vsize, vaddr, raw_size, raw_ptr, flags, s])
    text, data = sections
    check(text[0] == ".text" and text[5] == PE_SCN_TEXT, f"PE: section 0 is {text[0]} {text[5]:#x}, not .text (code, read, execute)")
    check(data[0] == ".data" and data[5] == PE_SCN_DATA, f"PE: section 1 is {data[0]} {data[5]:#x}, not .data (data, read, write)")
    check(text[2] == size_of_headers == base_of_code, "PE: .text does not start right after the headers (SizeOfHeaders, BaseOfCode)")
    check(text[2] + text[1] == data[2], "PE: .data does not start where .text ends")
    check(data[2] + data[1] == size_of_image, "PE: .data does not end at SizeOfImage (.bss included)")
    check(code_size == text[1] and init_size == data[1], "PE: SizeOfCode or SizeOfInitializedData disagree with the sections")
    if "__rodata_end" in marks:
        check(data[2] == marks["__rodata_end"] - base, "PE: .data does not start at __rodata_end")
    for name, vsize, vaddr, _, _, _, _ in sections:
        check(vaddr % sect_align == 0, f"PE: {name} VirtualAddress {vaddr:#x} is not SectionAlignment-aligned")
    check(text[3] == text[1] and text[4] == text[2], "PE: .text's file data is not its memory image")
    if fix:
        raw = len(img) - data[4]
        raw += -raw % file_align
        check(0 < raw <= data[1], f"PE: the file holds {raw:#x} bytes of .data, more than its VirtualSize")
        img.extend(b"\0" * (data[4] + raw - len(img)))
        struct.pack_into("<I", img, data[6] + 16, raw)
        data[3] = raw
    check(data[4] == data[2], "PE: .data's file offset is not its VirtualAddress")
    check(data[3] % file_align == 0 and data[4] % file_align == 0, "PE: .data's file size or offset is not FileAlignment-aligned")
    check(data[4] + data[3] == len(img), f"PE: .data's file data ends at {data[4] + data[3]:#x}, the file at {len(img):#x}")


B_MASK, B_OP, BL_OP = 0xFC000000, 0x14000000, 0x94000000
FORBIDDEN = ("panic", "core::fmt", "rust_begin_unwind")


def elf_text(path):
    """(address, bytes) of every executable section of the ELF."""
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    out = []
    for i in range(shnum):
        _, kind, flags, addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        if flags & symbolize.SHF_EXECINSTR and kind == 1 and size:  # SHT_PROGBITS
            out.append((addr, data[off:off + size]))
    return out


def stub_reaches(elf, start="efi_main"):
    """Every function reachable from `start` by B and BL, with the path to it."""
    syms = symbolize.Symbols(elf)
    text = elf_text(elf)
    starts = syms.starts

    def extent(addr):
        i = bisect.bisect_right(starts, addr) - 1
        value, size, _, name = syms.entries[i]
        end = value + size if size else next((a for a in starts[i + 1:] if a > value), value + 4)
        return value, end, symbolize.demangle(name)

    def word(addr):
        for base, b in text:
            if base <= addr < base + len(b) - 3:
                return struct.unpack_from("<I", b, addr - base)[0]
        return None

    entry = syms.marks.get(start)
    if entry is None:
        return {}
    seen, todo = {}, [(entry, [])]
    while todo:
        addr, path = todo.pop()
        lo, hi, name = extent(addr)
        if lo in seen:
            continue
        seen[lo] = path + [name]
        if any(f in name for f in FORBIDDEN):
            continue
        for a in range(lo, hi, 4):
            insn = word(a)
            if insn is None or insn & B_MASK not in (B_OP, BL_OP):
                continue
            imm = insn & 0x03FFFFFF
            if imm & 0x02000000:
                imm -= 1 << 26
            target = a + imm * 4
            if not lo <= target < hi:
                todo.append((target, seen[lo]))
    return seen


def efi_stub(elf):
    for path in stub_reaches(elf).values():
        if any(f in path[-1] for f in FORBIDDEN):
            raise Bad("the EFI stub can reach " + " -> ".join(path) +
                      ": it runs where absolute addresses are wrong (src/arch/aarch64/efi.rs)")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    check_only = "--check" in sys.argv
    if len(args) != 2:
        sys.exit("usage: pe.py [--check] KERNEL.elf KERNEL.img")
    elf, path = args
    marks = symbolize.Symbols(elf).marks
    base = marks.get("__image_start", marks.get("_start", 0))
    with open(path, "rb") as f:
        img = bytearray(f.read())
    try:
        is_pe, pe, image_size = arm64_header(img, marks, base)
        if is_pe:
            pe_header(img, pe, marks, base, image_size, fix=not check_only)
            if "/release/" in os.path.abspath(elf):
                efi_stub(elf)
    except Bad as e:
        sys.exit(f"pe.py: {path}: {e}")
    if not check_only:
        with open(path, "wb") as f:
            f.write(img)


if __name__ == "__main__":
    main()
