//! The boot CPU's path when UEFI started the kernel as an EFI application: what the EFI stub
//! handed over (`arch::aarch64::efi`) becomes the [`Machine`], from the device tree or the ACPI
//! tables, with its memory from the UEFI memory map and its command line from the load options.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::aarch64::cpu;
use crate::arch::aarch64::efi::EfiBoot;
use crate::cmdline::Cmdline;
use crate::mm::addr::PhysAddr;
use crate::mm::layout::phys_to_virt;
use crate::mm::region::{self, Region};
use crate::platform::acpi::{self, AcpiError, AcpiInfo};
use crate::platform::devicetree::Machine;
use crate::platform::uefi::{Description, EfiMemory, LoadOptions, choose};

use super::{DtbError, read_device_tree};

/// How UEFI started the kernel, for [`super::BootInfo`].
#[derive(Clone, Debug)]
pub struct Uefi {
    /// What describes the machine.
    pub description: Description,
    /// The ACPI RSDP, when the firmware gave one (used or not).
    pub rsdp: Option<u64>,
    /// What the ACPI tables said beyond the machine, when they described it.
    pub acpi: Option<AcpiInfo>,
    /// `ExitBootServices` calls the stub made (more than 1: the memory map changed under it).
    pub exit_attempts: u64,
    /// What was odd in the hand-over (the load options, the memory map), for the boot log.
    pub notes: Vec<String>,
}

/// The machine as far as it is known before `init_mm` exists: all of it from a device tree; from
/// ACPI only the memory and the command line (the tables are read through the linear map, by
/// [`describe_acpi`], once it exists).
pub(super) struct Start {
    pub machine: Machine,
    /// The device tree's bytes, reserved; empty without one.
    pub dtb: Region,
    pub uefi: Uefi,
}

/// Read the hand-over. `dtb_pa` is x0 at entry: the stub passes the configuration table's device
/// tree there, so the early window maps it as on a flat-Image boot.
pub(super) fn start(efi: &EfiBoot, dtb_pa: u64) -> Result<Start, String> {
    let memory = EfiMemory::parse(efi.memory_map, efi.desc_size).map_err(|e| format!("{e}"))?;
    let mut notes = memory.notes.clone();
    if efi.desc_version != 1 {
        notes.push(format!(
            "UEFI memory map: descriptor version {} (expected 1); read as version 1",
            efi.desc_version
        ));
    }
    let cmdline = match efi.load_options {
        LoadOptions::Text { len, truncated } => {
            if truncated {
                notes.push(format!(
                    "UEFI load options: the command line is cut after {len} bytes"
                ));
            }
            Some(efi.cmdline)
        }
        LoadOptions::NotText => {
            notes.push(format!(
                "UEFI load options ({} bytes) are not text (a boot manager's own data): no command line from them",
                efi.options_size
            ));
            None
        }
    };
    if efi.exit_attempts > 1 {
        notes.push(format!(
            "UEFI: ExitBootServices took {} calls (the memory map changed under the first)",
            efi.exit_attempts
        ));
    }
    let image = crate::mm::layout::kimage_phys();
    if efi.image_base != image {
        notes.push(format!(
            "UEFI: the loaded image protocol says the image is at {:#x}, but it runs at {image:#x}",
            efi.image_base
        ));
    }
    let (description, note) = choose(
        efi.dtb.is_some(),
        efi.rsdp.is_some(),
        Cmdline(cmdline.unwrap_or("")),
    )
    .map_err(|e| format!("{e}"))?;
    notes.extend(note.map(String::from));

    let (mut machine, dtb) = match description {
        Description::DeviceTree => {
            debug_assert_eq!(efi.dtb, Some(dtb_pa));
            let (mut m, dtb) = read_device_tree(dtb_pa).map_err(|e| match e {
                DtbError::Absent(why) => format!("the device tree UEFI handed over: {why}"),
                DtbError::Broken(why) => format!("the device tree UEFI handed over: {why}"),
            })?;
            // The load options are the command line, as Linux's stub puts them in /chosen.
            if let Some(c) = cmdline.filter(|c| !c.is_empty()) {
                m.bootargs = String::from(c);
            }
            (m, dtb)
        }
        Description::Acpi => (
            Machine {
                model: String::from("ACPI"),
                bootargs: String::from(cmdline.unwrap_or("")),
                // Everything else comes from the tables (`describe_acpi`), once they are mapped.
                // Devices the DSDT describes (virtio-mmio slots, a PCIe bridge's windows and
                // INTx routing) are AML, which initmm does not interpret: none is known.
                ..Machine::default()
            },
            Region::new(0, 0),
        ),
    };
    // The UEFI memory map, not the device tree's /memory, says what RAM is; its ACPI regions
    // are reserved and read-only. A device tree's /reserved-memory still counts.
    machine.ram = memory.ram;
    let mut reserved = machine.reserved.clone();
    reserved.extend_from_slice(&memory.tables);
    machine.reserved = region::union(&reserved);
    machine.read_only = memory.tables;
    Ok(Start {
        machine,
        dtb,
        uefi: Uefi {
            description,
            rsdp: efi.rsdp,
            acpi: None,
            exit_attempts: efi.exit_attempts,
            notes,
        },
    })
}

/// The ACPI tables, read through the linear map: only the UEFI memory map's ACPI regions
/// (`Machine::read_only`), which `mm::boot` mapped read-only. Never `ioremap`: they are RAM.
struct LinearMap<'a>(&'a [Region]);

impl acpi::Memory for LinearMap<'_> {
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
        if len == 0 || !region::covers(self.0, Region::new(pa, len as u64)) {
            return None;
        }
        // SAFETY: `[pa, pa + len)` lies in the ACPI regions, which the linear map maps read-only
        // for the kernel's lifetime (`mm::boot`, `PhysLayout::with_firmware_tables`); nothing
        // writes them.
        Some(unsafe { core::slice::from_raw_parts(phys_to_virt(PhysAddr(pa)).as_ptr::<u8>(), len) })
    }
}

/// Fill in the machine from the ACPI tables at `rsdp` (its memory and command line are there).
/// When they cannot describe it, `m.console` is still the SPCR's if that can be read, so that the
/// reason reaches a console.
pub(super) fn describe_acpi(rsdp: u64, m: &mut Machine) -> Result<AcpiInfo, AcpiError> {
    let regions = m.read_only.clone();
    let mem = LinearMap(&regions);
    acpi::describe(&mem, rsdp, cpu::mpidr(), m).inspect_err(|_| {
        m.console = acpi::console(&mem, rsdp, &m.ram);
    })
}
