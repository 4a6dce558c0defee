# initmm: `just run` boots it, `just test` checks everything. `just --list` shows all recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

target := "aarch64-unknown-none"
host := "host-tuple"
kernel := "target/" + target + "/release/initmm"
chainload := "target/" + target + "/release/chainload"

# Boot initmm on QEMU virt (4 CPUs, 1 GiB); ARGS are kernel command-line words.
run *ARGS: _ensure image
    platform/qemu/run.sh {{kernel}} {{ARGS}}

# Host unit tests, the loom model check, every in-QEMU test kernel in tests/, the real Image (on
# virt, the Pi 4, through EDK2 and U-Boot), the devices end to end, an application built outside
# the tree, the runner's options, the Pi 4's SD card and chainloader, the gdb script, a quick bench.
test: _ensure test-host test-loom test-qemu test-image test-devices test-app test-runner test-rpi4-files test-chainload test-gdb (bench "quick")

# Pure-logic unit tests on this machine: initmm-mm (page tables, virtual areas, vmalloc, the lazy
# purge: built with no kernel and no machine, and once more with its profiler), the kernel's
# (device tree, fault decoding, ...), the pre-patch baseline's and the chainloader's; the doc
# tests; every crate's docs building without a warning (broken links).
test-host:
    cargo test -p initmm-mm --lib --target {{host}}
    cargo test -p initmm-mm --doc --target {{host}}
    cargo test -p initmm-mm --lib --target {{host}} --features profile
    cargo test -p initmm --lib --target {{host}}
    cargo test -p initmm --doc --target {{host}}
    cargo test -p initmm-bench --lib --target {{host}}
    cargo test -p initmm-chainload --bin chainload --target {{host}}
    RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps --workspace
    RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps -p initmm-mm -p initmm --target {{host}}

# Model-check the table allocators' install protocol in every interleaving (loom).
test-loom:
    RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p initmm-mm --lib --release --target {{host}} pgalloc::loom_tests

# Each tests/*.rs is a small kernel booted in QEMU (configurations in its `//! initmm-qemu:` lines).
test-qemu:
    cargo test -p initmm --tests --no-fail-fast

# The Image `just run` boots (not a test kernel), booted as is on QEMU virt and on raspi4b with
# the Pi 4 DTB and without one: all 4 CPUs up, a short workload passes, exit status 0. Then through
# firmware: EDK2 finds it as \EFI\BOOT\BOOTAA64.EFI on a FAT drive and boots it by ACPI (no command
# line: every workload runs, the status comes by PSCI), and U-Boot starts it with bootefi.
test-image: image
    #!/usr/bin/env bash
    set -euo pipefail
    log=$(mktemp); trap 'rm -f "$log"' EXIT
    check() { # $1: what booted it; $2: the closing line; $3: what the banner must say
        grep -q "4 of 4 CPUs online" "$log" || { echo "test-image: FAILED on $1: not every CPU came up" >&2; exit 1; }
        grep -qx "$2" <(tr -d '\r' <"$log") || { echo "test-image: FAILED on $1" >&2; exit 1; }
        grep -q "$3" "$log" || { echo "test-image: FAILED on $1: the banner does not say \"$3\"" >&2; exit 1; }
    }
    for board in "--machine virt" "--board rpi4" "--board rpi4 --dtb none"; do
        echo "== test-image: {{kernel}}.img on $board"
        platform/qemu/run.sh $board --timeout 60 {{kernel}} workload=compute 2>&1 | tee "$log"
        check "$board" "1 passed, 0 failed" "entered at EL"
    done
    echo "== test-image: {{kernel}}.img from a FAT drive by EDK2, ACPI, GICv3"
    platform/qemu/run.sh --firmware edk2-esp --machine virt,gic-version=3 --timeout 90 {{kernel}} 2>&1 | tee "$log"
    check "EDK2" "3 passed, 0 failed" "from UEFI; ACPI tables"
    echo "== test-image: {{kernel}}.img by U-Boot's bootefi"
    platform/qemu/run.sh --firmware uboot-bootefi --timeout 60 {{kernel}} workload=compute 2>&1 | tee "$log"
    check "U-Boot bootefi" "1 passed, 0 failed" "from UEFI; device tree"

# The devices end to end (platform/devices/check.py): virt with a virtio disk, rng and network on
# virtio-mmio and on PCIe, GICv2 and GICv3; blk, entropy and net run, concurrent host clients
# check every HTTP answer (127.0.0.1 only), the disk image is checked from the host, and a second
# boot verifies what the first wrote.
test-devices: image
    python3 platform/devices/check.py {{kernel}} --transport mmio --machine virt
    python3 platform/devices/check.py {{kernel}} --transport pci --machine virt,gic-version=3
    python3 platform/devices/check.py {{kernel}} --transport mmio --machine virt,gic-version=3 --no-verify
    python3 platform/devices/check.py {{kernel}} --transport pci --machine virt --no-verify

# Boot on QEMU virt with a disk image (target/disk.img, 64 MiB, made once) and a network: the
# HTTP server (workload=net) answers on http://127.0.0.1:PORT/ of this machine only (QEMU's
# user network, restrict=on). ARGS: kernel words (default: workload=net seconds=600).
run-net PORT="8080" *ARGS: _ensure image
    @[ -f target/disk.img ] || truncate -s 64M target/disk.img
    @echo "run-net: the HTTP server will be at http://127.0.0.1:{{PORT}}/ (try /bytes/1000; /quit ends it); disk target/disk.img"
    platform/qemu/run.sh --timeout 700 --disk target/disk.img --rng --net {{PORT}} {{kernel}} {{ if ARGS == "" { "workload=net seconds=600" } else { ARGS } }}

# A new application made from the template, in a directory outside this repository (DIR must not
# exist): its Cargo.toml depends on this checkout; `cd DIR && cargo run` boots it in QEMU.
new-app DIR:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -e "{{DIR}}" ]; then echo "new-app: {{DIR}} exists already" >&2; exit 1; fi
    cp -r "{{justfile_directory()}}/platform/app-template" "{{DIR}}"
    sed -i 's|^initmm = { path = "../.." }|initmm = { path = "{{justfile_directory()}}" }|' "{{DIR}}/Cargo.toml"
    echo "new-app: {{DIR}}: cd there and 'cargo run' (virt, 4 CPUs), 'INITMM_BOARD=rpi4 cargo run' (Pi 4)"

# An application built outside the tree: `just new-app` in a temporary directory, built against
# this checkout, booted on virt and raspi4b: every CPU says hello, and its exit status (0, or 1
# from a copy that expects a wrong sum) reaches the shell. First, that README.md shows the
# template's src/main.rs as it is.
test-app: _ensure
    #!/usr/bin/env bash
    set -euo pipefail
    # README.md's "Your own application" shows the template's src/main.rs whole, byte for byte, in a
    # ```rust block; a template changed without its README copy (or the reverse) fails here.
    readme=$(<"{{justfile_directory()}}/README.md")
    main=$(<"{{justfile_directory()}}/platform/app-template/src/main.rs")
    if [[ "$readme" != *'```rust'$'\n'"$main"$'\n''```'* ]]; then
        echo "test-app: FAILED: README.md does not show platform/app-template/src/main.rs as it is:" \
            "its \"Your own application\" section must hold the whole file, byte for byte, in a" \
            "rust code block; copy the file there (or change both)" >&2
        exit 1
    fi
    echo "test-app: README.md shows platform/app-template/src/main.rs as it is"
    dir=$(mktemp -d); log=$(mktemp); trap 'rm -rf "$dir" "$log"' EXIT
    {{just_executable()}} new-app "$dir/hello"
    cd "$dir/hello"
    export CARGO_TARGET_DIR="{{justfile_directory()}}/target/app"
    for board in "" rpi4; do
        echo "== test-app: $dir/hello on ${board:-virt}"
        INITMM_BOARD=$board INITMM_TIMEOUT=90 cargo run --release 2>&1 | tee "$log"
        grep -q "4 of 4 CPUs said hello" "$log" || { echo "test-app: FAILED on ${board:-virt}: not every CPU said hello" >&2; exit 1; }
    done
    # A failing application's status must reach the shell too, not only a passing one's 0.
    echo "== test-app: the same application expecting a wrong sum must exit with 1"
    sed -i 's/333_833_500/333_833_501/' src/main.rs
    grep -q 333_833_501 src/main.rs || { echo "test-app: FAILED: the template no longer checks its sum against 333_833_500; change this test with it" >&2; exit 1; }
    status=0; INITMM_TIMEOUT=90 cargo run --release >"$log" 2>&1 || status=$?
    if [ "$status" != 1 ]; then
        cat "$log"; echo "test-app: FAILED: an application that exits with 1 gave the shell $status" >&2; exit 1
    fi
    echo "test-app: a failing application's status (1) reached the shell"

# The runner's options: --accel's QEMU command, --no-semihosting's exit status, --qemu-log.
test-runner: image
    platform/qemu/test-runner.sh {{kernel}}

# config.txt, the SD-card image (built here: needs Debian's mirror once), the chainload + JTAG
# card, and flash.sh's refusals.
test-rpi4-files: sdcard
    platform/rpi4/check.sh {{kernel}}.img
    {{just_executable()}} sdcard --chainload --jtag
    platform/rpi4/check.sh {{chainload}}.img --jtag
    {{just_executable()}} sdcard
    platform/rpi4/test-flash.sh
    @if ! command -v openocd >/dev/null; then echo "check openocd.cfg ... skipped (no openocd)"; \
    elif out=$(openocd -c "adapter driver dummy" -f platform/rpi4/openocd.cfg -c shutdown 2>&1); then \
        echo "check openocd.cfg loads Debian's BCM2711 scripts ... ok"; \
    else echo "$out"; echo "check openocd.cfg ... FAILED"; exit 1; fi

# The serial chainloader end to end on QEMU raspi4b: it refuses an image too big for RAM and a
# corrupted transfer, then receives initmm from platform/rpi4/chainboot.py over a pty and starts
# it on all 4 CPUs with the firmware's device tree; compute runs and the kernel exits 0.
test-chainload: image _pyserial
    platform/rpi4/test-chainload.sh {{chainload}} {{kernel}}

_pyserial:
    @python3 -c 'import serial' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyserial

# Boot initmm on QEMU raspi4b (the Raspberry Pi 4: 4 CPUs, 2 GiB, the real Pi DTB when present;
# `--dtb none` as the first ARG boots the built-in description); ARGS are kernel command-line words.
run-rpi4 *ARGS: _ensure image
    platform/qemu/run.sh --board rpi4 {{kernel}} {{ARGS}}

# A bootable Raspberry Pi 4 SD card: target/rpi4/boot/ and target/rpi4/sdcard.img. FLAGS:
# --chainload (kernel8.img is the serial chainloader: boot kernels with `just chainboot`),
# --jtag (config.txt routes the cores' JTAG to GPIO 22-27: `just openocd`).
sdcard *FLAGS: image
    #!/usr/bin/env bash
    set -euo pipefail
    args=()
    for f in {{FLAGS}}; do
        case "$f" in
            --chainload)
                platform/objcopy.sh {{chainload}} {{chainload}}.img
                args+=(--chainload {{chainload}}.img) ;;
            *) args+=("$f") ;;
        esac
    done
    platform/rpi4/sdcard.sh {{kernel}}.img "${args[@]}"

# Write a fresh SD card image to DEVICE (whole disk) after checks and a confirmation. FLAGS:
# --force, --dry-run (for flash.sh), --chainload, --jtag (for the card, as `just sdcard`).
flash DEVICE *FLAGS: image
    #!/usr/bin/env bash
    set -euo pipefail
    card=() rest=()
    for f in {{FLAGS}}; do
        case "$f" in --chainload|--jtag) card+=("$f") ;; *) rest+=("$f") ;; esac
    done
    {{just_executable()}} sdcard "${card[@]}"
    platform/rpi4/flash.sh {{DEVICE}} "${rest[@]}"

# Send the current kernel over DEVICE (a USB-serial adapter on the Pi's GPIO 14/15) to a Pi 4
# that booted `just sdcard --chainload`'s card, then stay on the line as its terminal, backtraces
# symbolised (Ctrl-] leaves). FLAGS go to platform/rpi4/chainboot.py (e.g. --baud).
chainboot DEVICE="/dev/ttyUSB0" *FLAGS: image _pyserial
    python3 platform/rpi4/chainboot.py --device {{DEVICE}} --image {{kernel}}.img --elf {{kernel}} {{FLAGS}}

# Build the kernel ELF (for gdb) and the Pi's serial chainloader.
build: _ensure
    cargo build --release --workspace

# The flat arm64 Image that boot loaders load: target/aarch64-unknown-none/release/initmm.img
image: build
    platform/objcopy.sh {{kernel}} {{kernel}}.img
    @echo "image: {{kernel}}.img ($(stat -c %s {{kernel}}.img) bytes)"

# QEMU stopped at reset waiting for gdb, and gdb-multiarch attached with platform/gdb/initmm.py:
# symbols at the physical (early boot) and link (MMU on) addresses, every CPU a thread,
# breakpoints at the entry and at panic; `continue`. ARGS: runner options (--board rpi4, --smp 2)
# and kernel words. The console goes to target/qemu-console.log.
debug *ARGS: image
    platform/qemu/debug.sh {{kernel}} {{ARGS}}

# The gdb script in batch mode on QEMU virt: attach, stop at entry, read x0, see 4 CPUs, stop in
# the kernel proper, continue to a clean exit (skipped when gdb-multiarch is not installed).
test-gdb: image
    platform/qemu/test-gdb.sh {{kernel}}

# OpenOCD for a Raspberry Pi 4 booted from a `just sdcard --jtag` card, through ADAPTER (an
# OpenOCD interface script); gdb then attaches with `just gdb-jtag`. Wiring: platform/rpi4/README.md.
openocd ADAPTER="interface/ftdi/olimex-arm-usb-tiny-h.cfg":
    @command -v openocd >/dev/null || { echo "openocd is missing: just setup (or apt-get install openocd)"; exit 1; }
    openocd -f {{ADAPTER}} -f platform/rpi4/openocd.cfg

# gdb-multiarch on the Pi 4 through OpenOCD (`just openocd` running): the four cores as threads,
# the current kernel's symbols where the running kernel says it was loaded (or at PHYS: 0x200000
# as the firmware loads it, 0x400000 after the chainloader, before the kernel has started).
gdb-jtag PHYS="":
    gdb-multiarch -nx -x platform/gdb/initmm.py -ex 'target extended-remote 127.0.0.1:3333' -ex 'initmm-symbols {{kernel}} {{PHYS}}'

# Lints, warnings are errors, for the kernel and the host build of the library.
clippy:
    cargo clippy --workspace --lib --bins --tests -- -D warnings
    cargo clippy -p initmm-bench --features profile --target-dir target/profile-kernel -- -D warnings
    cargo clippy -p initmm-mm -p initmm -p initmm-bench --lib --target {{host}} --profile test -- -D warnings
    cargo clippy -p initmm-mm --lib --target {{host}} --profile test --features profile -- -D warnings
    cargo clippy -p initmm-chainload --bin chainload --target {{host}} --profile test -- -D warnings

fmt:
    cargo fmt

# Install what is missing (QEMU >= 9, the Rust target, dtc, mtools, gdb-multiarch, openocd, and
# the EDK2 and U-Boot firmware the UEFI tests boot through).
# Needs root or sudo for apt.
setup:
    platform/setup.sh

_ensure:
    @{ command -v qemu-system-aarch64 >/dev/null && rustup target list --installed | grep -q {{target}} && \
        [ -f /usr/share/qemu-efi-aarch64/QEMU_EFI.fd ] && [ -f /usr/lib/u-boot/qemu_arm64/u-boot.bin ]; } || platform/setup.sh

# Benchmarks on QEMU virt: instructions per operation under -icount (deterministic), throughput
# in pairs of -smp 1/-smp 2 boots (and -smp 4, oversubscribed, reported apart), the seed design
# against the pre-patch baseline with confidence intervals, where the time goes per operation
# (the profiled kernel), a projection to 128 CPUs, the floor of a map+unmap, growth, boot, the
# targets. `just bench quick` (part of `just test`) runs each briefly: its throughput means
# nothing, its instruction counts are the real ones. ARGS: `--baseline FILE` (another commit's
# instructions per operation, for the load-c target; default platform/bench/baseline-8936a7f.json),
# `--write-baseline FILE`. Writes target/bench/results.json, throughput.svg and projection.svg.
bench MODE="full" *ARGS: _ensure image
    #!/usr/bin/env bash
    set -euo pipefail
    python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check matplotlib
    # Both kernels at once: the bench kernel's one codegen unit keeps one core busy. The profiled
    # kernel's instruction counts are never compared, so it is an ordinary release build.
    cargo build --quiet --profile bench-kernel -p initmm-bench --target-dir target/bench-kernel &
    bench=$!
    cargo build --quiet --release -p initmm-bench --features profile --target-dir target/profile-kernel
    wait $bench
    python3 platform/bench/bench.py target/bench-kernel/{{target}}/bench-kernel/initmm-bench {{MODE}} {{kernel}}.img \
        --profile-elf target/profile-kernel/{{target}}/release/initmm-bench {{ARGS}}

# Fuzz the device-tree front door and every reader of what it yields (plus the no-DT ATAG path),
# then the ACPI table reader (from raw memory, or QEMU virt's tables corrupted), with libFuzzer for
# SECONDS each. TARGETS: `dt`, `acpi` or both. Needs the nightly toolchain; installs cargo-fuzz
# when missing. New inputs go to tests/fuzz/corpus-generated/TARGET/ (git-ignored), crashes to
# tests/fuzz/artifacts/; a crash input belongs in tests/fuzz/regressions/ (ACPI ones named acpi-*)
# and in a host unit test. No sanitizer: the code under test is safe Rust, and debug assertions
# (overflow checks) catch more than ASan would.
fuzz SECONDS="600" TARGETS="dt acpi":
    @cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
    for t in {{TARGETS}}; do \
        mkdir -p tests/fuzz/corpus-generated/$t; \
        cargo +nightly fuzz run --fuzz-dir tests/fuzz --sanitizer none --debug-assertions $t \
            tests/fuzz/corpus-generated/$t tests/fuzz/corpus/$t tests/fuzz/regressions -- \
            -max_len=65536 -rss_limit_mb=512 -timeout=10 -max_total_time={{SECONDS}} -print_final_stats=1; \
    done

# The soak: ioremap-storm, vmalloc-stress and compute together on all 4 CPUs with fault
# injection (default fail=frames:1/50,areas:1/50,seed=7; pass fail=... or fail=none in ARGS),
# frames and areas checked back at baseline every second. 10 minutes unless SECONDS says.
soak SECONDS="600" *ARGS: _ensure image
    platform/qemu/run.sh --timeout $(({{SECONDS}} + 120)) {{kernel}} workload=soak seconds={{SECONDS}} {{ARGS}}
