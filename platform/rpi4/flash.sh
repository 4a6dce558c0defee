#!/usr/bin/env bash
# Write the initmm SD-card image to a card.
#
#   platform/rpi4/flash.sh DEVICE [--force] [--dry-run]      (what `just flash DEVICE` runs)
#
# DEVICE is a whole disk (/dev/sdX, /dev/mmcblkN). Before anything is written it refuses:
#   - anything that is not a block device (a file, a typo), or a partition (/dev/sdX1);
#   - a device any of whose partitions is mounted (always: unmount it first);
#   - without --force: a disk the kernel says is not removable (/sys/block/X/removable = 0; an
#     SD slot, mmcblk*, counts as removable), or one larger than 256 GiB (no SD card for a Pi is).
# It then shows the device (lsblk) and asks you to type its name to confirm, then runs
# dd conv=fsync status=progress. --dry-run does every check and shows the dd command, writes nothing.
#
# INITMM_SDCARD_IMG overrides the image (default target/rpi4/sdcard.img).
# For tests, INITMM_FLASH_ROOT=DIR reads DIR/sys/block and DIR/proc/mounts instead of the real
# ones, accepts a regular file DIR/dev/NAME as the device and implies --dry-run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
refuse() { printf 'flash: refused: %s\n' "$*" >&2; exit 1; }

dev="" force=0 dry=0
for a in "$@"; do
    case "$a" in
        --force) force=1 ;;
        --dry-run) dry=1 ;;
        -*) echo "flash: unknown option $a" >&2; exit 2 ;;
        *) [[ -z "$dev" ]] || { echo "flash: one device only" >&2; exit 2; }; dev=$a ;;
    esac
done
[[ -n "$dev" ]] || { echo "usage: $0 DEVICE [--force] [--dry-run]" >&2; exit 2; }
img=${INITMM_SDCARD_IMG:-$repo/target/rpi4/sdcard.img}
[[ -f "$img" ]] || { echo "flash: $img is missing: run 'just sdcard' first" >&2; exit 1; }

root=${INITMM_FLASH_ROOT:-}
if [[ -n "$root" ]]; then
    dry=1
    [[ -e "$dev" ]] || refuse "$dev does not exist"
    [[ "$(dirname "$(realpath "$dev")")" == "$(realpath "$root")/dev" ]] || refuse "$dev is not a block device"
    name=$(basename "$dev")
else
    [[ -e "$dev" ]] || refuse "$dev does not exist"
    [[ -b "$dev" ]] || refuse "$dev is not a block device"
    name=$(basename "$(realpath "$dev")")
fi
sys=$root/sys/block/$name
if [[ ! -d "$sys" ]]; then
    refuse "$dev is not a whole disk (a partition? give the disk, e.g. /dev/sdb, not /dev/sdb1)"
fi

# Mounted: the disk itself or any partition of it (sdb1, mmcblk0p1) in /proc/mounts.
mounted=""
while read -r src mnt _; do
    s=$(basename "$src")
    if [[ "$src" == /dev/* && ( "$s" == "$name" || ( "$s" == "$name"* && -d "$sys/$s" ) ) ]]; then
        mounted+="$src on $mnt; "
    fi
done <"$root/proc/mounts"
[[ -z "$mounted" ]] || refuse "$dev is mounted (${mounted%; }): unmount it first"

removable=$(cat "$sys/removable" 2>/dev/null || echo 0)
[[ "$name" == mmcblk* ]] && removable=1
bytes=$(($(cat "$sys/size") * 512))
limit=$((256 << 30))
if [[ $removable != 1 ]]; then
    [[ $force == 1 ]] || refuse "$dev is not a removable disk (is it your system disk?); --force if you are sure"
    echo "flash: warning: $dev is not removable (--force)"
fi
if ((bytes > limit)); then
    [[ $force == 1 ]] || refuse "$dev is $((bytes >> 30)) GiB, larger than 256 GiB: not an SD card? --force if you are sure"
    echo "flash: warning: $dev is $((bytes >> 30)) GiB (--force)"
fi

echo "flash: this will overwrite the whole of $dev ($((bytes >> 20)) MiB) with $img:"
if [[ -z "$root" ]]; then
    lsblk -o NAME,SIZE,MODEL,TRAN,MOUNTPOINT "$dev"
fi
cmd=(dd "if=$img" "of=$dev" bs=4M conv=fsync status=progress)
if [[ $dry == 1 ]]; then
    echo "flash: dry run: would run: ${cmd[*]}"
    exit 0
fi
read -r -p "flash: type the device name ($name) to confirm: " answer || answer=""
[[ "$answer" == "$name" || "$answer" == "$dev" ]] || { echo "flash: not confirmed; nothing written" >&2; exit 1; }
"${cmd[@]}"
sync
echo "flash: done: put the card in the Pi 4, connect the serial adapter, power on"
