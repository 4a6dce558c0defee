#!/usr/bin/env bash
# Install what initmm needs on a Debian/Ubuntu machine, and nothing that is already there.
#   - QEMU >= 9 (qemu-system-aarch64; raspi4b needs 9). Debian 12 ships 7.2, so there it comes
#     from bookworm-backports.
#   - the Rust toolchain pinned in rust-toolchain.toml, with the aarch64-unknown-none target
#     (RUSTUP_AUTO_INSTALL=0 machines install nothing on their own).
#   - device-tree-compiler (dtc, for inspecting DTBs) and mtools (SD-card image checks).
#   - gdb-multiarch (`just debug`, and its test) and openocd (`just openocd`: JTAG on a Pi 4;
#     `just test` checks platform/rpi4/openocd.cfg against its BCM2711 scripts).
#   - qemu-efi-aarch64 (EDK2) and u-boot-qemu (U-Boot's qemu_arm64): the firmware that
#     `run.sh --firmware` boots the Image through (tests/uefi.rs, `just test-image`).
# Needs root or sudo for apt-get; says so and stops if neither is available.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

SUDO=""
need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then SUDO=sudo; else
            say "need root or sudo to install: $*"; exit 1
        fi
    fi
}

qemu_ok() {
    command -v qemu-system-aarch64 >/dev/null || return 1
    local v
    v=$(qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
    [[ -n "$v" && "$v" -ge 9 ]]
}

apt_updated=0
apt_install() {
    need_root "$*"
    if [[ $apt_updated -eq 0 ]]; then $SUDO apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

if ! qemu_ok; then
    . /etc/os-release
    if [[ "${VERSION_CODENAME:-}" == bookworm ]]; then
        say "installing qemu-system-arm >= 9 from bookworm-backports (Debian 12 ships 7.2)"
        need_root "qemu"
        if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
            $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        fi
        apt_install -t bookworm-backports qemu-system-arm
    else
        say "installing qemu-system-arm from ${PRETTY_NAME:-this distribution}"
        apt_install qemu-system-arm
    fi
    qemu_ok || { say "qemu-system-aarch64 >= 9 is still missing: install it by hand"; exit 1; }
fi

missing=()
command -v dtc >/dev/null || missing+=(device-tree-compiler)
command -v mdir >/dev/null || missing+=(mtools)
command -v gdb-multiarch >/dev/null || missing+=(gdb-multiarch)
command -v openocd >/dev/null || missing+=(openocd)
[[ -f /usr/share/qemu-efi-aarch64/QEMU_EFI.fd ]] || missing+=(qemu-efi-aarch64)
[[ -f /usr/lib/u-boot/qemu_arm64/u-boot.bin ]] || missing+=(u-boot-qemu)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

if ! command -v rustup >/dev/null; then
    say "rustup is missing: install it from https://rustup.rs, then run 'just setup' again"; exit 1
fi
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$channel"; then
    say "installing Rust $channel"
    rustup toolchain install "$channel" --profile minimal --component clippy,rustfmt
fi
if ! rustup target list --installed --toolchain "$channel" | grep -q aarch64-unknown-none; then
    say "adding the aarch64-unknown-none target to Rust $channel"
    rustup target add --toolchain "$channel" aarch64-unknown-none
fi
for c in clippy rustfmt; do
    rustup component list --installed --toolchain "$channel" | grep -q "^$c" ||
        rustup component add --toolchain "$channel" "$c"
done
