#!/usr/bin/env bash
# Boot an initmm kernel ELF in QEMU and return the kernel's exit status.
#
#   platform/qemu/run.sh [options] KERNEL.elf [kernel command-line words...]
#
# Used as the cargo runner (`cargo run`, `cargo test`), by `just run` and by the tests. The ELF is
# turned into a flat arm64 Image next to it (KERNEL.img) and QEMU boots that, so x0 carries the
# device tree as on real hardware.
#
# Options (or environment):
#   --machine M   (INITMM_MACHINE, default "virt")   QEMU -M value, e.g. virt,gic-version=3
#   --smp N       (INITMM_SMP, default 4)            --mem SIZE (INITMM_MEM, default 1G)
#   --cpu NAME    (INITMM_CPU, default cortex-a72: the Pi 4's core, Armv8.0; "max" has every
#                 extension QEMU models, e.g. to exercise the EL2 set-up of FGT and HCX)
#   --timeout S   (INITMM_TIMEOUT, default 120)      kill QEMU after S seconds and fail
#   --qemu-arg A  (INITMM_QEMU_ARGS)                 extra QEMU argument (repeatable)
#   --icount S    (INITMM_ICOUNT)  count instructions: -icount shift=S,sleep=off, one guest
#                 instruction per 2^S ns of virtual time (the guest's counter too), one vCPU
#                 thread, deterministic; without it, virtual time is the host's time
#   --board rpi4  (INITMM_BOARD)   the Raspberry Pi 4: -M raspi4b -m 2G -smp 4 and the real Pi DTB
#                 (tests/data/bcm2711-rpi-4-b.dtb, else target/rpi4/boot/'s) when there is one;
#                 options after it override it
#   --dtb FILE    (INITMM_DTB)     pass FILE with -dtb; "none" passes none (the loader then hands
#                 the kernel an ATAG list, as QEMU raspi4b does without -dtb)
#   --no-symbolize (INITMM_SYMBOLIZE=0)  the console as it comes, without symbolize.py
#   --qemu-log FILE (INITMM_QEMU_LOG)  also log exceptions and MMU faults (-d int,mmu) and keep
#                 the log in FILE; the guest-error check below still applies, to its other lines
#   --accel kvm|hvf (INITMM_ACCEL)  on an Arm host (Linux with KVM, macOS on Apple silicon):
#                 -accel ACCEL -cpu host, GICv3 on virt, and no semihosting (as below)
#   --no-semihosting (INITMM_SEMIHOSTING=0)  boot without semihosting, as on a board: the kernel
#                 powers off by PSCI and prints "[powering off with status N]", which the runner
#                 returns as the exit status
#   --firmware F  (INITMM_FIRMWARE)  boot through firmware on virt instead of QEMU's own loader:
#                 edk2           Debian's EDK2 (qemu-efi-aarch64) starts the Image as an EFI
#                                application given with -kernel; the command line is its load
#                                options; ACPI tables unless the machine says acpi=off
#                 edk2-esp       the same firmware finds the Image as \EFI\BOOT\BOOTAA64.EFI on a
#                                FAT drive (a directory QEMU presents as one); its boot manager
#                                passes no command line, so the kernel runs as booted bare, and
#                                its status comes by PSCI as with --no-semihosting
#                 uboot-booti    Debian's U-Boot (u-boot-qemu, qemu_arm64) loads the -kernel
#                                Image from QEMU's fw_cfg and starts it with booti (a flat Image,
#                                its device tree, the command line as bootargs)
#                 uboot-bootefi  U-Boot runs a boot script from a FAT drive that sets bootargs,
#                                loads the Image (\EFI\BOOT\BOOTAA64.EFI) and starts it with
#                                bootefi (an EFI application, the command line as load options)
#
# virtio devices (virt only), on the transport --transport picks:
#   --transport mmio|pci (INITMM_TRANSPORT, default mmio)  virtio-mmio slots (-device virtio-*-device)
#                 or PCIe functions on the generic host bridge (-device virtio-*-pci)
#   --virtio-modern (INITMM_VIRTIO_MODERN=1)  virtio-mmio version 2 instead of QEMU's default,
#                 legacy version 1 (-global virtio-mmio.force-legacy=false)
#   --disk FILE   (INITMM_DISK)  a virtio-blk disk on FILE (raw); "temp:SIZE" makes a zeroed
#                 temporary image of SIZE (e.g. temp:16M), deleted after the run
#   --rng         (INITMM_RNG=1)  a virtio-rng device (entropy from the host's /dev/urandom)
#   --net PORT    (INITMM_NET)  a virtio-net device on QEMU's user network, isolated from the host
#                 and the outside (restrict=on): the guest is 10.0.2.15/24 and only
#                 127.0.0.1:PORT on the host is forwarded, to the guest's port 80
#   --console2 FILE (INITMM_CONSOLE2)  a virtio console (virtio-serial + virtconsole) whose output
#                 goes to FILE
#
# On raspi4b the PL011 is QEMU's serial port 0 and the mini UART port 1; the Pi 4's DTB (and the
# kernel's built-in Pi 4 description) pick the mini UART, so port 1 goes to the terminal
# (-serial null -serial mon:stdio) unless --qemu-arg gives -serial itself.
#
# Test kernels: when KERNEL is the build of tests/NAME.rs, every `//! initmm-qemu: ARGS [-- WORDS]`
# line in that file is one QEMU configuration to boot it in (ARGS are runner options, WORDS extra
# kernel command-line words); the test passes only if every configuration passes.
#
# A `//! initmm-expect: exit=N output=TEXT` line makes a configuration pass only when the kernel
# exits with status N and prints TEXT (for kernels that must fail, e.g. a deliberate panic);
# each `//! initmm-expect-once: TEXT` line must then appear exactly once in the output.
#
# The kernel names its backtrace frames itself (its symbol table, src/kallsyms.rs); the output
# also goes through platform/qemu/symbolize.py (when python3 is there), which adds file:line
# from the ELF's DWARF when llvm-symbolizer or addr2line can read it. --no-symbolize
# (INITMM_SYMBOLIZE=0) shows the console exactly as a serial line would.
#
# QEMU logs guest errors (accesses its device models call invalid: a register that does not
# exist, a write to a read-only one) and notes on unimplemented registers to a file for every run
# (-d guest_errors,unimp); a run that caused any fails, with the lines shown. The exceptions:
# QEMU's mini UART (bcm2835_aux) models no modem or line control, so its "AUX_MU_*_REG
# unsupported" notes for the registers our driver sets up are expected; and its VideoCore
# property interface does not model the board model and serial tags the kernel asks for at boot
# ("get board model NYI", "get board serial NYI"). A test kernel that provokes
# an error on purpose (a PSCI call that must fail) names each line it expects with
# `//! initmm-allow-guest-error: TEXT` (the whole line, exactly).
#
# Exit status: the kernel's (semihosting SYS_EXIT, or the status it printed), 124 when the timeout
# fired. INITMM_DRY_RUN=1 prints the QEMU command and runs nothing.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

machine=${INITMM_MACHINE:-virt}
cpu=${INITMM_CPU:-cortex-a72}
smp=${INITMM_SMP:-4}
mem=${INITMM_MEM:-1G}
timeout_s=${INITMM_TIMEOUT:-120}
dtb=${INITMM_DTB:-}
symbolize_on=${INITMM_SYMBOLIZE:-1}
qemu_log=${INITMM_QEMU_LOG:-}
accel=${INITMM_ACCEL:-}
semihosting=${INITMM_SEMIHOSTING:-1}
firmware=${INITMM_FIRMWARE:-}
[[ "$firmware" != edk2-esp ]] || semihosting=0
EDK2_FW=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd
UBOOT_FW=/usr/lib/u-boot/qemu_arm64/u-boot.bin
icount=${INITMM_ICOUNT:-}
transport=${INITMM_TRANSPORT:-mmio}
virtio_modern=${INITMM_VIRTIO_MODERN:-0}
disk=${INITMM_DISK:-}
rng=${INITMM_RNG:-0}
net=${INITMM_NET:-}
console2=${INITMM_CONSOLE2:-}
read -r -a extra <<<"${INITMM_QEMU_ARGS:-}"

set_board() {
    case "$1" in
        rpi4)
            machine=raspi4b; mem=2G; smp=4
            if [[ -z "$dtb" ]]; then
                dtb=none
                for f in "$repo/tests/data/bcm2711-rpi-4-b.dtb" "$repo/target/rpi4/boot/bcm2711-rpi-4-b.dtb"; do
                    if [[ -f "$f" ]]; then dtb=$f; break; fi
                done
            fi
            ;;
        *) echo "runner: unknown board \"$1\" (known: rpi4)" >&2; exit 2 ;;
    esac
}

parse_opts() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --machine) machine=$2; shift 2 ;;
            --smp) smp=$2; shift 2 ;;
            --cpu) cpu=$2; shift 2 ;;
            --mem) mem=$2; shift 2 ;;
            --timeout) timeout_s=$2; shift 2 ;;
            --qemu-arg) extra+=("$2"); shift 2 ;;
            --icount) icount=$2; shift 2 ;;
            --board) set_board "$2"; shift 2 ;;
            --dtb) dtb=$2; shift 2 ;;
            --no-symbolize) symbolize_on=0; shift ;;
            --qemu-log) qemu_log=$2; shift 2 ;;
            --accel) accel=$2; semihosting=0; shift 2 ;;
            --no-semihosting) semihosting=0; shift ;;
            --firmware) firmware=$2; [[ "$firmware" != edk2-esp ]] || semihosting=0; shift 2 ;;
            --transport) transport=$2; shift 2 ;;
            --virtio-modern) virtio_modern=1; shift ;;
            --disk) disk=$2; shift 2 ;;
            --rng) rng=1; shift ;;
            --net) net=$2; shift 2 ;;
            --console2) console2=$2; shift 2 ;;
            *) rest+=("$1"); shift ;;
        esac
    done
}

[[ -z "${INITMM_BOARD:-}" ]] || set_board "$INITMM_BOARD"
rest=()
parse_opts "$@"
set -- "${rest[@]}"
[[ $# -ge 1 ]] || { echo "usage: $0 [options] KERNEL.elf [kernel args...]" >&2; exit 2; }
elf=$1; shift
kargs=("$@")

img="${elf%.elf}.img"
"$here/../objcopy.sh" "$elf" "$img" || { echo "runner: objcopy of $elf failed" >&2; exit 2; }

# QEMU's stdout, with backtrace addresses and ELRs named from the kernel ELF (symbolize.py).
symbolize() {
    if [[ "$symbolize_on" != 0 ]] && command -v python3 >/dev/null; then
        python3 -u "$here/symbolize.py" "$elf"
    else
        cat
    fi
}

# The QEMU arguments of the virtio devices asked for (into the array `devices`); a temporary
# disk image's path goes into `tmp_disk`, for the caller to delete.
virtio_devices() {
    devices=() tmp_disk=""
    local sfx
    case "$transport" in
        mmio) sfx=device ;;
        pci) sfx=pci ;;
        *) echo "runner: --transport $transport: mmio or pci" >&2; return 2 ;;
    esac
    [[ "$virtio_modern" == 0 ]] || devices+=(-global virtio-mmio.force-legacy=false)
    if [[ -n "$disk" ]]; then
        local file=$disk
        if [[ "$disk" == temp:* ]]; then
            tmp_disk=$(mktemp -t initmm-disk.XXXXXX)
            truncate -s "${disk#temp:}" "$tmp_disk" || return 2
            file=$tmp_disk
        fi
        [[ -f "$file" ]] || { echo "runner: disk image $file not found" >&2; return 2; }
        devices+=(-drive "if=none,id=disk0,format=raw,file=$file" -device "virtio-blk-$sfx,drive=disk0")
    fi
    [[ "$rng" == 0 ]] || devices+=(-device "virtio-rng-$sfx")
    if [[ -n "$net" ]]; then
        [[ "$net" =~ ^[0-9]+$ ]] || { echo "runner: --net $net: a TCP port number" >&2; return 2; }
        # restrict=on: the guest reaches neither the host nor the outside; the one forward is
        # bound to the host's loopback address only.
        # romfile=: a PCI NIC would otherwise want an iPXE boot ROM a fresh machine lacks.
        local rom=""
        [[ "$sfx" == device ]] || rom=,romfile=
        devices+=(-netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$net-:80"
            -device "virtio-net-$sfx,netdev=net0$rom")
    fi
    if [[ -n "$console2" ]]; then
        devices+=(-chardev "file,id=con2,path=$console2" -device "virtio-serial-$sfx"
            -device "virtconsole,chardev=con2")
    fi
}

boot() { # boot one configuration; $@ = extra kernel words
    local board=() devices tmp_disk
    virtio_devices || return 2
    if [[ -n "$dtb" && "$dtb" != none ]]; then
        [[ -f "$dtb" ]] || { echo "runner: device tree $dtb not found" >&2; return 2; }
        board+=(-dtb "$dtb")
    fi
    if [[ "$machine" == raspi4b* && " ${extra[*]} " != *" -serial "* ]]; then
        board+=(-serial null -serial mon:stdio)
    fi
    local qlog
    qlog=$(mktemp -t initmm-qemu-log.XXXXXX)
    # --qemu-log adds exceptions and MMU faults to the same log (QEMU has one -D file), and keeps it.
    local dflags=guest_errors,unimp
    [[ -z "$qemu_log" ]] || dflags+=,int,mmu
    # Under a hardware accelerator: the host's CPU and GICv3 (KVM and HVF hosts have no GICv2
    # to give). Without semihosting (--accel: its HLT instruction is not trapped there) the kernel
    # ends with PSCI SYSTEM_OFF and says its status on the console, which stands for the exit
    # status below.
    local cpuargs=(-cpu "$cpu") mach=$machine semi=() word=""
    if [[ -n "$accel" ]]; then
        cpuargs=(-accel "$accel" -cpu host)
        [[ "$mach" == virt* && "$mach" != *gic-version* ]] && mach+=,gic-version=3
    fi
    if [[ "$semihosting" != 0 ]]; then semi=(-semihosting-config enable=on,target=native); word=semihosting; fi
    local append
    append=$(printf '%s ' $word "${kargs[@]}" "$@" | tr -s ' ' | sed 's/^ //; s/ $//')
    # Firmware (--firmware): -bios, and for the FAT-drive variants a directory holding the Image
    # as \EFI\BOOT\BOOTAA64.EFI (and U-Boot's boot script) in place of -kernel.
    local fw=() kernel=(-kernel "$img" -append "$append") esp=""
    case "$firmware" in
        "") ;;
        # EDK2 waits 5 s for a key to open its boot menu unless QEMU says how long to wait.
        edk2 | edk2-esp) fw=(-bios "$EDK2_FW" -boot menu=on,splash-time=0) ;;
        uboot-booti | uboot-bootefi) fw=(-bios "$UBOOT_FW") ;;
        *) echo "runner: unknown firmware \"$firmware\" (known: edk2, edk2-esp, uboot-booti, uboot-bootefi)" >&2; rm -f "$qlog" "$tmp_disk"; return 2 ;;
    esac
    if [[ -n "$firmware" && ! -f "${fw[1]}" ]]; then
        echo "runner: ${fw[1]} is missing: just setup (it installs qemu-efi-aarch64 and u-boot-qemu)" >&2
        rm -f "$qlog" "$tmp_disk"; return 2
    fi
    if [[ "$firmware" == edk2-esp || "$firmware" == uboot-bootefi ]]; then
        if [[ "$firmware" == edk2-esp && -n "$append" ]]; then
            echo "runner: --firmware edk2-esp passes the kernel no command line: \"$append\" cannot reach it" >&2
            rm -f "$qlog" "$tmp_disk"; return 2
        fi
        esp=$(mktemp -d -t initmm-esp.XXXXXX)
        mkdir -p "$esp/EFI/BOOT"
        cp "$img" "$esp/EFI/BOOT/BOOTAA64.EFI"
        if [[ "$firmware" == uboot-bootefi ]]; then
            python3 "$here/uboot-script.py" "$esp/boot.scr" \
                "setenv bootargs '$append'" \
                'load virtio 0:1 ${kernel_addr_r} efi/boot/bootaa64.efi' \
                'bootefi ${kernel_addr_r} ${fdtcontroladdr}'
        fi
        fw+=(-drive "if=none,id=esp,format=raw,readonly=on,file=fat:$esp" -device virtio-blk-device,drive=esp)
        # U-Boot's virtio driver writes feature words only the virtio 1.0 transport has; EDK2's
        # writes a register only the legacy one has (QEMU's default): each gets its own.
        [[ "$firmware" != uboot-bootefi ]] || fw+=(-global virtio-mmio.force-legacy=false)
        kernel=()
    fi
    # Virtual time from the instruction count: sleep=off jumps an idle vCPU's clock to the next
    # timer instead of letting it run with the host's, so that nothing in the run depends on it.
    local count=()
    [[ -z "$icount" ]] || count=(-icount "shift=$icount,sleep=off")
    local base=(qemu-system-aarch64 -M "$mach" "${cpuargs[@]}" -smp "$smp" -m "$mem"
        -nographic -nic none "${semi[@]}"
        -d "$dflags" -D "$qlog"
        "${fw[@]}" "${board[@]}" "${count[@]}" "${devices[@]}" "${extra[@]}")
    local shown="${base[*]}"
    [[ -z "${kernel[*]}" ]] || shown+=" -kernel $img -append \"$append\""
    [[ -z "$esp" ]] || shown+=" (FAT drive $esp: EFI/BOOT/BOOTAA64.EFI${append:+, boot.scr with bootargs \"$append\"})"
    echo "runner: $shown (timeout ${timeout_s}s)"
    if [[ -n "${INITMM_DRY_RUN:-}" ]]; then rm -f "$qlog" "$tmp_disk"; [[ -z "$esp" ]] || rm -rf "$esp"; return 0; fi
    local out=/dev/null
    [[ "$semihosting" != 0 ]] || out=$(mktemp -t initmm-console.XXXXXX)
    timeout --foreground -k 5 "$timeout_s" "${base[@]}" "${kernel[@]}" </dev/null | symbolize | tee -a "$out"
    local rc=${PIPESTATUS[0]}
    [[ -z "$esp" ]] || rm -rf "$esp"
    [[ -z "$tmp_disk" ]] || rm -f "$tmp_disk"
    if [[ "$semihosting" == 0 ]]; then
        # PSCI SYSTEM_OFF ends QEMU with 0 whatever the kernel's status: take the one it printed.
        local said
        said=$(tr -d '\r' <"$out" | sed -n 's/^\[powering off with status \([0-9]*\)\]$/\1/p' | tail -1)
        rm -f "$out"
        if [[ $rc -eq 0 ]]; then
            if [[ -n "$said" ]]; then rc=$said; else
                echo "runner: FAILED: QEMU ended without the kernel's \"[powering off with status N]\"" >&2; rc=1
            fi
        fi
    fi
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "runner: FAILED: QEMU was killed after ${timeout_s}s: the kernel hung or ran too long" >&2
        return 124
    fi
    if [[ $rc -ne 0 ]]; then
        echo "runner: kernel exited with status $rc" >&2
    fi
    # What the firmware itself provokes before the kernel runs: EDK2 tries to write its variable
    # store into the flash that -bios made read-only.
    local fw_lines='^$.'
    [[ "$firmware" != edk2* ]] || fw_lines='^pflash_write: Unimplemented flash cmd sequence'
    local errors
    errors=$(grep -vE '^bcm2835_aux_(read|write): AUX_MU_[A-Z]+_REG unsupported$' "$qlog" |
        grep -vE "$fw_lines" |
        grep -vE '^bcm2835_property: 0x000100(01|04) get board (model|serial) NYI$' |
        grep -vE "$qemu_log_lines" |
        grep -vxF -f <(printf '%s\n' "${allowed_errors[@]}") || true)
    if [[ -n "$qemu_log" ]]; then
        cp "$qlog" "$qemu_log"
        echo "runner: QEMU's log (-d $dflags): $qemu_log ($(wc -l <"$qlog") lines)" >&2
    fi
    rm -f "$qlog"
    if [[ -n "$errors" ]]; then
        echo "runner: FAILED: QEMU reported $(wc -l <<<"$errors") guest error(s) (-d guest_errors,unimp):" >&2
        head -n 20 <<<"$errors" | sed 's/^/runner:   /' >&2
        [[ $rc -ne 0 ]] || rc=1
    fi
    return $rc
}

# What -d int,mmu writes (exception entry and return, MMU faults): not guest errors.
qemu_log_lines='^(Taking exception |\.\.\.|Exception return from |arm_cpu_do_|Page table walk)'


name=$(basename "$elf"); name=${name%-*}
src="$repo/tests/$name.rs"
allowed_errors=("")
if [[ "$elf" == */deps/* && -f "$src" ]]; then
    while IFS= read -r line; do allowed_errors+=("$line"); done \
        < <(sed -n 's/^\/\/! initmm-allow-guest-error: //p' "$src")
fi
if [[ "$elf" == */deps/* && -f "$src" ]] && grep -q '^//! initmm-qemu:' "$src"; then
    status=0; n=0
    expect=$(grep -m1 '^//! initmm-expect:' "$src" | sed 's/^\/\/! initmm-expect: *//' || true)
    while IFS= read -r line; do
        n=$((n + 1))
        cfg=${line#*initmm-qemu:}
        words=""
        if [[ "$cfg" == *" -- "* ]]; then words=${cfg#* -- }; cfg=${cfg%% -- *}; fi
        (
            read -r -a opts <<<"$cfg"
            rest=(); parse_opts "${opts[@]}"
            read -r -a w <<<"$words"
            echo "runner: tests/$name.rs configuration $n:$cfg"
            if [[ -n "$expect" ]]; then
                want_rc=$(sed -n 's/.*exit=\([0-9]*\).*/\1/p' <<<"$expect")
                want_out=$(sed -n 's/.*output=//p' <<<"$expect")
                log=$(mktemp)
                boot "${w[@]}" 2>&1 | tee "$log"
                rc=${PIPESTATUS[0]}
                if [[ "$rc" != "$want_rc" ]]; then
                    echo "runner: FAILED: expected exit status $want_rc, got $rc" >&2; rm -f "$log"; exit 1
                fi
                if ! grep -qF -- "$want_out" "$log"; then
                    echo "runner: FAILED: the output lacks \"$want_out\"" >&2; rm -f "$log"; exit 1
                fi
                while IFS= read -r once; do
                    n_once=$(grep -cF -- "$once" "$log" || true)
                    if [[ "$n_once" != 1 ]]; then
                        echo "runner: FAILED: \"$once\" appears $n_once times, not once" >&2; rm -f "$log"; exit 1
                    fi
                done < <(grep '^//! initmm-expect-once:' "$src" | sed 's/^\/\/! initmm-expect-once: *//')
                rm -f "$log"
                echo "runner: ok: exit status $rc and \"$want_out\", as expected"
            else
                boot "${w[@]}"
            fi
        ) || status=1
    done < <(grep '^//! initmm-qemu:' "$src")
    exit $status
fi
boot
