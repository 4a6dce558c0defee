#!/usr/bin/env bash
# Checks of the runner's own options (part of `just test`), on the release kernel:
#   --accel kvm: the QEMU command it would run on an Arm host (this machine may have no KVM);
#   --no-semihosting: the kernel powers off by PSCI and the runner returns the status it printed,
#     0 for a clean run and 1 for a failed one (what --accel relies on);
#   --qemu-log FILE: exceptions land in FILE, and the guest-error check still passes the run;
#   --icount 0: the QEMU option it adds, and that two boots' consoles then show the same times.
#   platform/qemu/test-runner.sh KERNEL.elf
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
elf=${1:?usage: $0 KERNEL.elf}
run=$here/run.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "check $1 ... ok"; passed=$((passed + 1)); }
bad() { echo "check $1 ... FAILED: $2"; failed=$((failed + 1)); }

cmd=$(INITMM_DRY_RUN=1 "$run" --accel kvm "$elf" workload=compute)
if [[ "$cmd" == *"-M virt,gic-version=3 -accel kvm -cpu host "* && "$cmd" != *semihosting* &&
    "$cmd" == *'-append "workload=compute"'* ]]; then ok accel_kvm_command; else bad accel_kvm_command "$cmd"; fi
cmd=$(INITMM_DRY_RUN=1 "$run" --accel hvf --machine virt,gic-version=2 "$elf")
if [[ "$cmd" == *"-M virt,gic-version=2 -accel hvf -cpu host "* ]]; then ok accel_keeps_an_explicit_gic
else bad accel_keeps_an_explicit_gic "$cmd"; fi

cmd=$(INITMM_DRY_RUN=1 "$run" --icount 0 "$elf")
if [[ "$cmd" == *" -icount shift=0,sleep=off "* ]]; then ok icount_command; else bad icount_command "$cmd"; fi
# Under -icount the guest's clock counts instructions: two boots print the same timestamps.
for i in 1 2; do
    "$run" --smp 1 --timeout 60 --icount 0 "$elf" workload=none 2>&1 | grep '^\[ *[0-9]' >"$tmp/icount$i"
done
if [[ -s "$tmp/icount1" ]] && cmp -s "$tmp/icount1" "$tmp/icount2"; then ok icount_deterministic
else bad icount_deterministic "the two boots' consoles differ"; diff "$tmp/icount1" "$tmp/icount2" | head; fi

"$run" --smp 2 --timeout 60 --no-semihosting "$elf" workload=none >"$tmp/clean" 2>&1
rc=$?
if [[ $rc == 0 ]] && grep -q '^\[powering off with status 0\]' <(tr -d '\r' <"$tmp/clean"); then
    ok no_semihosting_clean_exit; else bad no_semihosting_clean_exit "status $rc"; cat "$tmp/clean"; fi
"$run" --smp 2 --timeout 60 --no-semihosting "$elf" workload=no-such-workload >"$tmp/fail" 2>&1
rc=$?
if [[ $rc == 1 ]]; then ok no_semihosting_failure_status; else bad no_semihosting_failure_status "status $rc"; cat "$tmp/fail"; fi

"$run" --smp 2 --timeout 60 --qemu-log "$tmp/qemu.log" "$elf" workload=none >"$tmp/logged" 2>&1
rc=$?
if [[ $rc == 0 ]] && grep -q '^Taking exception ' "$tmp/qemu.log"; then ok qemu_log_kept_and_run_passes
else bad qemu_log_kept_and_run_passes "status $rc"; cat "$tmp/logged"; fi
echo "runner options: $passed passed, $failed failed"
[[ $failed == 0 ]]
