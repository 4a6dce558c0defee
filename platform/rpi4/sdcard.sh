#!/usr/bin/env bash
# Build a bootable Raspberry Pi 4 SD card for initmm.
#
#   platform/rpi4/sdcard.sh KERNEL.img [--chainload LOADER.img] [--jtag]      (`just sdcard [FLAGS]`)
#
# --chainload LOADER.img: kernel8.img is the serial chainloader instead of KERNEL.img: every boot
#   then waits for a kernel from `just chainboot` (platform/rpi4/chainload/).
# --jtag: config.txt also says enable_jtag_gpio=1: the four cores' JTAG on GPIO 22-27
#   (`just openocd`, platform/rpi4/README.md, "Working on a real Pi 4").
#
# Makes target/rpi4/boot/ with the boot partition's files:
#   kernel8.img           the flat arm64 Image (the same initmm.img that `just run` boots)
#   config.txt            platform/rpi4/config.txt
#   start4.elf fixup4.dat the Pi 4 firmware, from Debian's raspi-firmware (non-free-firmware)
#   bcm2711-rpi-4-b.dtb   the Pi 4 device tree (tests/data, from Debian's arm64 kernel package)
# and target/rpi4/sdcard.img: an MBR disk with one FAT32 (LBA, type 0x0c) partition at 1 MiB
# holding them, ready for `dd` (`just flash DEVICE`).
#
# The firmware package is fetched once with apt-get from Debian's archive (a private apt
# configuration under target/rpi4/cache/apt: the system's sources and dpkg state are not touched,
# and no root is needed) and cached in target/rpi4/cache/. Needs dpkg-deb and mtools.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
say() { printf 'sdcard: %s\n' "$*"; }
die() { printf 'sdcard: error: %s\n' "$*" >&2; exit 1; }

usage="usage: $0 KERNEL.img [--chainload LOADER.img] [--jtag]"
kernel="" loader="" jtag=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --chainload) [[ $# -ge 2 ]] || die "$usage"; loader=$2; shift 2 ;;
        --jtag) jtag=1; shift ;;
        -*) die "unknown option $1; $usage" ;;
        *) [[ -z "$kernel" ]] || die "$usage"; kernel=$1; shift ;;
    esac
done
[[ -n "$kernel" ]] || die "$usage"
[[ -f "$kernel" ]] || die "$kernel not found (run 'just image')"
[[ -z "$loader" || -f "$loader" ]] || die "$loader not found"
out=$repo/target/rpi4
cache=${INITMM_RPI4_CACHE:-$out/cache}
dtb=$repo/tests/data/bcm2711-rpi-4-b.dtb
suite=${INITMM_RPI4_SUITE:-bookworm}
mirror=${INITMM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
for t in dpkg-deb mformat mcopy mdir; do
    command -v "$t" >/dev/null || die "$t is missing (just setup installs mtools; dpkg-deb comes with dpkg)"
done
[[ -f "$dtb" ]] || die "$dtb is missing"
mkdir -p "$cache"

# 1. The firmware package, cached.
fetch_firmware() {
    local apt=$cache/apt
    mkdir -p "$apt/lists/partial" "$apt/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite non-free-firmware" \
        >"$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o "Dir::Cache::archives=$apt/archives"
        -o Dir::State::status=/dev/null -o APT::Architecture=arm64 -o APT::Architectures::=arm64
        -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" -q)
    say "fetching Debian's raspi-firmware ($suite, non-free-firmware) into $cache"
    if ! apt-get "${opts[@]}" update >"$apt/update.log" 2>&1 ||
        ! (cd "$cache" && apt-get "${opts[@]}" download raspi-firmware >"$apt/download.log" 2>&1); then
        cat "$apt/update.log" "$apt/download.log" 2>/dev/null | tail -5 >&2
        die "cannot download raspi-firmware from $mirror ($suite non-free-firmware): no network or no mirror?
  Put raspi-firmware_*.deb into $cache/ by hand (apt-get download raspi-firmware on a machine with
  non-free-firmware in its sources) and run 'just sdcard' again."
    fi
}
deb=$(ls "$cache"/raspi-firmware_*.deb 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$deb" ]]; then
    fetch_firmware
    deb=$(ls "$cache"/raspi-firmware_*.deb 2>/dev/null | sort -V | tail -1 || true)
    [[ -n "$deb" ]] || die "apt-get reported success but left no raspi-firmware_*.deb in $cache"
fi
say "firmware: $(basename "$deb")"
fw=$cache/raspi-firmware
rm -rf "$fw"
mkdir -p "$fw"
dpkg-deb -x "$deb" "$fw"

# 2. The boot partition's files.
boot=$out/boot
rm -rf "$boot"
mkdir -p "$boot"
if [[ -n "$loader" ]]; then
    cp "$loader" "$boot/kernel8.img"
    say "kernel8.img: the serial chainloader ($(basename "$loader")); send kernels with: just chainboot"
else
    cp "$kernel" "$boot/kernel8.img"
fi
cp "$here/config.txt" "$boot/config.txt"
if [[ $jtag == 1 ]]; then
    cat >>"$boot/config.txt" <<'JTAG'

# (just sdcard --jtag) Route the ARM cores' JTAG to the 40-pin header: GPIO 22 TRST, 23 RTCK,
# 24 TDO, 25 TCK, 26 TDI, 27 TMS (ALT4). platform/rpi4/openocd.cfg drives it (just openocd).
enable_jtag_gpio=1
JTAG
    say "config.txt: enable_jtag_gpio=1 (JTAG on GPIO 22-27)"
fi
for f in start4.elf fixup4.dat; do
    cp "$fw/usr/lib/raspi-firmware/$f" "$boot/$f" || die "$f is not in $(basename "$deb")"
done
cp "$dtb" "$boot/bcm2711-rpi-4-b.dtb"

# 3. The disk image: MBR + one FAT32 partition from sector 2048 to the end (64 MiB in all: FAT32
#    wants at least 65525 clusters, which 1-sector clusters give from about 33 MiB).
img=$out/sdcard.img
total_sectors=$((64 * 2048))
start=2048
sectors=$((total_sectors - start))
rm -f "$img"
truncate -s $((total_sectors * 512)) "$img"
le32() { # the 4 little-endian bytes of $1, as printf escapes
    printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255))
}
# Partition entry 1 at offset 446: not active, CHS fields saturated (LBA is what counts), type
# 0x0c (FAT32 with LBA), first sector, sector count; then the 0x55aa signature at 510.
entry="\\x00\\xfe\\xff\\xff\\x0c\\xfe\\xff\\xff$(le32 $start)$(le32 $sectors)"
printf "$entry" | dd of="$img" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$img" bs=1 seek=510 conv=notrunc status=none
part="$img@@$((start * 512))"
mformat -i "$part" -F -T "$sectors" -H "$start" -h 64 -s 32 -c 1 -v INITMM ::
mcopy -i "$part" "$boot"/* ::
say "boot files: $boot"
say "image: $img ($((total_sectors / 2048)) MiB); write it with: just flash /dev/sdX"
