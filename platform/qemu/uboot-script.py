#!/usr/bin/env python3
"""Write a U-Boot boot script image (what `mkimage -A arm64 -T script` makes) from commands.

    platform/qemu/uboot-script.py OUT.scr 'command; command' ...

U-Boot's distro boot runs the first `boot.scr` it finds on a disk (before it looks for
efi/boot/bootaa64.efi): the runner (run.sh, --firmware uboot-bootefi) puts one next to the Image on
a FAT drive, so that U-Boot sets the command line and starts the Image with bootefi without anyone
typing at its prompt. Each argument is one line of the script.

The format is U-Boot's legacy image: a 64-byte big-endian header (magic 0x27051956, a CRC-32 of the
header, the data size, a CRC-32 of the data, OS Linux, architecture arm64, type script, no
compression, a name), then the data: the script's length as a big-endian word, a zero word, and
the script. Standard library only (no u-boot-tools needed).
"""

import struct
import sys
import zlib

MAGIC = 0x27051956
IH_OS_LINUX, IH_ARCH_ARM64, IH_TYPE_SCRIPT, IH_COMP_NONE = 5, 22, 6, 0


def script_image(text: bytes) -> bytes:
    data = struct.pack(">II", len(text), 0) + text
    name = b"initmm boot script"[:32].ljust(32, b"\0")

    def header(hcrc):
        return struct.pack(">IIIIIIIBBBB32s", MAGIC, hcrc, 0, len(data), 0, 0,
                           zlib.crc32(data), IH_OS_LINUX, IH_ARCH_ARM64, IH_TYPE_SCRIPT,
                           IH_COMP_NONE, name)

    return header(zlib.crc32(header(0))) + data


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: uboot-script.py OUT.scr 'command' ...")
    text = "".join(line + "\n" for line in sys.argv[2:]).encode("ascii")
    with open(sys.argv[1], "wb") as f:
        f.write(script_image(text))


if __name__ == "__main__":
    main()
