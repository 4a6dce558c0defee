#!/usr/bin/env bash
# Host checks of the Raspberry Pi 4 boot files (part of `just test`):
#   - platform/rpi4/config.txt: every setting has a comment line above it, the settings initmm
#     needs are there, and none is repeated;
#   - target/rpi4/sdcard.img (made by `just sdcard` just before): an MBR with one FAT32 LBA
#     partition at 1 MiB whose root holds exactly the expected files, with kernel8.img identical
#     to KERNEL.img (the Image `just run` boots, or the chainloader's) and config.txt identical to
#     platform/rpi4/config.txt (plus the JTAG setting with --jtag).
#   platform/rpi4/check.sh KERNEL.img [--jtag]
# Prints one line per check and the closing "N passed, N failed"; exits 1 if any failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kernel=${1:?usage: $0 KERNEL.img [--jtag]}
jtag=${2:-}
config=$here/config.txt
img=$repo/target/rpi4/sdcard.img
passed=0 failed=0
check() { # check NAME COMMAND...: run COMMAND, report
    local name=$1; shift
    local why
    if why=$("$@" 2>&1); then
        echo "check $name ... ok"; passed=$((passed + 1))
    else
        echo "check $name ... FAILED"; [[ -n "$why" ]] && sed 's/^/    /' <<<"$why"
        failed=$((failed + 1))
    fi
}

config_every_setting_commented() {
    local prev="" n=0 bad=0 line
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        if [[ -n "$line" && "$line" != \#* ]]; then
            if [[ "$prev" != \#* ]]; then echo "line $n: \"$line\" has no comment above it"; bad=1; fi
            if [[ "$line" == *\#* ]]; then echo "line $n: the firmware does not strip trailing comments"; bad=1; fi
            [[ "$line" == *=* ]] || { echo "line $n: \"$line\" is not key=value"; bad=1; }
        fi
        prev=$line
    done <"$config"
    return $bad
}

config_required_settings() {
    local bad=0 want
    for want in arm_64bit=1 enable_gic=1 enable_uart=1 kernel=kernel8.img core_freq_min=500 \
        device_tree=bcm2711-rpi-4-b.dtb; do
        grep -qx -- "$want" "$config" || { echo "missing: $want"; bad=1; }
    done
    local dup
    dup=$(grep -v '^#' "$config" | grep = | cut -d= -f1 | sort | uniq -d)
    [[ -z "$dup" ]] || { echo "set twice: $dup"; bad=1; }
    return $bad
}

sdcard_mbr_has_one_fat32_lba_partition() {
    [[ -f "$img" ]] || { echo "$img is missing (run just sdcard)"; return 1; }
    local sig type start
    sig=$(od -An -tx1 -j510 -N2 "$img" | tr -d ' ')
    type=$(od -An -tx1 -j450 -N1 "$img" | tr -d ' ')
    start=$(od -An -tu4 -j454 -N4 --endian=little "$img" | tr -d ' ')
    [[ "$sig" == 55aa ]] || { echo "MBR signature $sig"; return 1; }
    [[ "$type" == 0c ]] || { echo "partition type $type, not 0c (FAT32 LBA)"; return 1; }
    [[ "$start" == 2048 ]] || { echo "partition starts at sector $start"; return 1; }
    local others
    others=$(od -v -An -tx1 -j462 -N48 "$img" | tr -d ' \n' | tr -d 0)
    [[ -z "$others" ]] || { echo "partition entries 2-4 are not empty"; return 1; }
    local fs
    fs=$(dd if="$img" bs=1 skip=$((2048 * 512 + 82)) count=8 status=none)
    [[ "$fs" == "FAT32   " ]] || { echo "file system type \"$fs\", not FAT32"; return 1; }
}

sdcard_lists_exactly_the_boot_files() {
    local got want
    got=$(mdir -i "$img@@1M" -b :: | sed 's|^::/||' | sort)
    want=$(printf '%s\n' bcm2711-rpi-4-b.dtb config.txt fixup4.dat kernel8.img start4.elf | sort)
    [[ "$got" == "$want" ]] || { diff <(echo "$want") <(echo "$got"); return 1; }
}

sdcard_files_match_their_sources() {
    local tmp bad=0
    tmp=$(mktemp -d)
    mcopy -i "$img@@1M" -n ::kernel8.img ::config.txt ::bcm2711-rpi-4-b.dtb ::start4.elf "$tmp/" || return 1
    cmp -s "$tmp/kernel8.img" "$kernel" || { echo "kernel8.img differs from $kernel"; bad=1; }
    if [[ "$jtag" == --jtag ]]; then
        cmp -s <(head -c "$(stat -c %s "$config")" "$tmp/config.txt") "$config" ||
            { echo "config.txt does not start with $config"; bad=1; }
        [[ "$(grep -v '^#' "$tmp/config.txt" | grep -c .)" == "$(($(grep -v '^#' "$config" | grep -c .) + 1))" ]] &&
            grep -qx enable_jtag_gpio=1 "$tmp/config.txt" ||
            { echo "config.txt lacks enable_jtag_gpio=1, or has more than it"; bad=1; }
    else
        cmp -s "$tmp/config.txt" "$config" || { echo "config.txt differs from $config"; bad=1; }
    fi
    cmp -s "$tmp/bcm2711-rpi-4-b.dtb" "$repo/tests/data/bcm2711-rpi-4-b.dtb" || { echo "the DTB differs"; bad=1; }
    # start4.elf is a VideoCore ELF (machine 0x89, not Arm): a cut or HTML error page is not.
    [[ "$(od -An -c -N4 "$tmp/start4.elf" | tr -d ' ')" == "177ELF" ]] || { echo "start4.elf is not an ELF"; bad=1; }
    rm -rf "$tmp"
    return $bad
}

check config_every_setting_commented config_every_setting_commented
check config_required_settings config_required_settings
check sdcard_mbr_has_one_fat32_lba_partition sdcard_mbr_has_one_fat32_lba_partition
check sdcard_lists_exactly_the_boot_files sdcard_lists_exactly_the_boot_files
check sdcard_files_match_their_sources sdcard_files_match_their_sources
echo "rpi4 boot files: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
