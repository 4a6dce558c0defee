//! What firmware says about the machine.
//!
//! `fdt_front` checks the blob firmware hands us token by token as it walks it (and can write a
//! clean copy); `devicetree` reads a `Machine` (RAM, reservations, console, GIC, timer, PSCI,
//! CPUs) out of that one walk. `uefi` reads what UEFI firmware hands over (the memory map, the
//! command line, which description to use) and `acpi` builds the same `Machine` from ACPI
//! tables. Board defaults and boot glue build on these; none of these modules touches hardware.

pub mod acpi;
pub mod devicetree;
pub mod fdt_front;
pub mod rpi4;
pub mod uefi;

use devicetree::Machine;

/// A machine described in code rather than by a device tree.
pub struct Builtin {
    /// The board's name, for the banner.
    pub name: &'static str,
    /// One line saying what is assumed (RAM, console, ...), for the boot log.
    pub summary: &'static str,
    /// The machine, as a device tree would have described it.
    pub machine: Machine,
}

/// The description to boot with when the loader passed no device tree. `loader_data` is what
/// x0 points at (empty if unreadable): a board may find a command line there.
///
/// The only board whose loaders do that to an arm64 kernel is the Raspberry Pi 4 (QEMU raspi4b
/// without `-dtb` passes an ATAG list); the caller checks that the description's RAM holds the
/// image it is running, so a wrong guess stops the boot instead of poking absent devices.
pub fn builtin_machine(loader_data: &[u8]) -> Builtin {
    Builtin {
        name: rpi4::NAME,
        summary: rpi4::summary(),
        machine: rpi4::machine(loader_data),
    }
}
