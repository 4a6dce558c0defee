#!/usr/bin/env bash
# Checks of flash.sh's refusals on a fake /sys and /proc/mounts (INITMM_FLASH_ROOT): nothing is
# ever written (that mode implies --dry-run), and no real device is needed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/dev" "$root/proc"
img=$root/sdcard.img
echo image >"$img"
export INITMM_SDCARD_IMG=$img
disk() { # disk NAME REMOVABLE SIZE_GIB [PARTITION...]
    local n=$1 r=$2 g=$3; shift 3
    mkdir -p "$root/sys/block/$n"
    echo "$r" >"$root/sys/block/$n/removable"
    echo $((g << 21)) >"$root/sys/block/$n/size"
    : >"$root/dev/$n"
    for p in "$@"; do mkdir -p "$root/sys/block/$n/$p"; : >"$root/dev/$p"; done
}
disk sdb 1 32 sdb1
disk sdc 1 32 sdc1
disk sda 0 500 sda1
disk sdd 1 512
disk sde 0 100
disk mmcblk0 0 64 mmcblk0p1
cat >"$root/proc/mounts" <<'M'
/dev/sda1 / ext4 rw 0 0
/dev/sdc1 /media/card vfat rw 0 0
proc /proc proc rw 0 0
M
passed=0 failed=0
expect() { # expect ok|refused TEXT -- ARGS: run flash.sh ARGS (with the fake root or not)
    local want=$1 text=$2; shift 3
    local out rc
    out=$("$@" 2>&1); rc=$?
    if { [[ $want == ok && $rc == 0 ]] || [[ $want == refused && $rc != 0 ]]; } && grep -qF -- "$text" <<<"$out"; then
        echo "check flash $* ... ok"; passed=$((passed + 1))
    else
        echo "check flash $* ... FAILED (rc $rc, wanted $want with \"$text\"):"; sed 's/^/    /' <<<"$out"
        failed=$((failed + 1))
    fi
}
f=$here/flash.sh
# Without the fake root: a regular file and a character device are refused for real.
expect refused "not a block device" -- env -u INITMM_FLASH_ROOT "$f" "$img"
expect refused "not a block device" -- env -u INITMM_FLASH_ROOT "$f" /dev/null
expect refused "does not exist" -- env -u INITMM_FLASH_ROOT "$f" /dev/initmm-no-such-disk
export INITMM_FLASH_ROOT=$root
expect ok "would run: dd if=$img of=$root/dev/sdb bs=4M conv=fsync status=progress" -- "$f" "$root/dev/sdb"
expect refused "is mounted (/dev/sdc1 on /media/card)" -- "$f" "$root/dev/sdc"
expect refused "is mounted" -- "$f" "$root/dev/sdc" --force
expect refused "not a whole disk" -- "$f" "$root/dev/sdb1"
expect refused "not a removable disk" -- "$f" "$root/dev/sde"
expect ok "warning: $root/dev/sde is not removable (--force)" -- "$f" "$root/dev/sde" --force
expect refused "is mounted" -- "$f" "$root/dev/sda" --force
expect refused "larger than 256 GiB" -- "$f" "$root/dev/sdd"
expect ok "warning: $root/dev/sdd is 512 GiB (--force)" -- "$f" "$root/dev/sdd" --force
expect ok "would run" -- "$f" "$root/dev/mmcblk0"
expect refused "not a block device" -- "$f" "$img"
echo "flash refusals: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
