//! The ACPI table reader and everything the kernel takes from what it yields
//! (`platform::acpi::describe`, through `platform::acpi::synth::fuzz_one`): from raw bytes as the
//! memory the RSDP is in, or from QEMU virt's tables with bytes changed (and, if the input asks,
//! their checksums fixed, so that the fuzzer reaches past them). Properties checked besides "no
//! panic": every error is a message that names ACPI, and a machine it describes has the boot CPU
//! once, each CPU once, a GIC, a timer PPI, and no console in RAM (`synth::check`).
#![no_main]

use initmm::platform::acpi::synth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(outcome) = synth::fuzz_one(data) {
        synth::check(&outcome, u64::from(data[0] >> 7));
    }
});
