//! The EFI stub: the Image is also a PE/COFF EFI application, which UEFI firmware (EDK2, U-Boot's
//! `bootefi`) starts as it would Linux's arm64 Image. It does what Linux's stub does, and no more:
//! it finds the device tree or the ACPI RSDP in the configuration table (and with neither stops
//! there, saying so on the firmware's console and returning to it), takes the command line
//! from the loaded image's load options, gets the memory map, exits boot services (again with a
//! fresh map when the firmware says the map key went stale), and continues at the ordinary entry,
//! `primary_entry`, with the MMU and the data cache off and x0 = the device tree (0 when there is
//! none), as a flat-Image loader would have. What the flat protocol has no register for (the
//! memory map, the RSDP, the command line) it leaves in `HANDOVER` and two holes in the image
//! (`linker.ld`), which the kernel reads once its MMU is on ([`handover`]).
//!
//! Not done, as in Linux when it can avoid it: no relocation (the image runs where the loader put
//! it: any page-aligned address suits the entry code), no `SetVirtualAddressMap` (the kernel never
//! calls runtime services), no copy of the device tree (the kernel reads it in place and keeps it
//! reserved).
//!
//! # Running under the firmware
//!
//! The stub runs at the image's load address, with the firmware's identity map and caches on, not
//! at the address the kernel is linked at. So, like `early.rs`, its Rust code must be
//! position-independent: it reaches statics and linker symbols only PC-relatively (`adrp`, which
//! is how the kernel's code model addresses them), follows only pointers the firmware gave it, has
//! no data holding addresses (no `&str` tables, no trait objects, no `core::fmt`), and avoids
//! every panic path (a panic's location is an absolute pointer): arithmetic wraps or is checked,
//! slices are walked with iterators. Strings for the firmware's console are UCS-2 arrays built at
//! compile time (`ucs2!`).
//!
//! # Caches (point 1 of `arch::aarch64`'s list, for this entry)
//!
//! `efi_enter_kernel` follows Linux 5.10's `efi_enter_kernel` (arch/arm64/kernel/efi-entry.S),
//! which turned the MMU off before the ordinary entry; later Linux kernels enter `primary_entry`
//! with the MMU on and clean from there, which this kernel's entry does not expect. With every
//! exception masked it cleans and invalidates, by VA to the point of coherency, the whole image
//! (what the entry code reads with the MMU off: its own code, `.data` with `HANDOVER`, the
//! hand-over holes) and the device tree (whose header `early::early_map_kernel` reads with the
//! MMU off), invalidates the instruction cache, then clears SCTLR_ELx.M and .C at the current
//! exception level (`isb` before, as Linux's `pre_disable_mmu_workaround`, and after) and branches
//! to `primary_entry`. Everything else the kernel reads later (the memory map, ACPI tables) it
//! reads with its MMU on through cacheable mappings, as the firmware wrote it.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, Ordering};

use uefi_raw::protocol::console::SimpleTextOutputProtocol;
use uefi_raw::protocol::loaded_image::LoadedImageProtocol;
use uefi_raw::table::boot::MemoryDescriptor;
use uefi_raw::table::configuration::ConfigurationTable;
use uefi_raw::table::system::SystemTable;
use uefi_raw::{Guid, Handle, Status, guid};

use super::image::{
    PE_CHARACTERISTICS, PE_FILE_ALIGNMENT, PE_MACHINE_ARM64, PE_OPT_MAGIC_PE32PLUS, PE_SCN_DATA,
    PE_SCN_TEXT, PE_SECTION_ALIGNMENT, PE_SUBSYSTEM_EFI_APPLICATION,
};
use crate::platform::uefi::{self as fw, LoadOptions};

/// The configuration table's ACPI 2.0 (and later) RSDP entry.
const ACPI_20_TABLE_GUID: Guid = guid!("8868e871-e4f1-11d3-bc22-0080c73c8881");
/// The configuration table's flattened device tree entry.
const DEVICE_TREE_GUID: Guid = guid!("b1b621d5-f19c-41a5-830b-d9152c69aae0");

/// "initmmEF": [`Handover::magic`] when the stub wrote the hand-over.
const MAGIC: u64 = u64::from_le_bytes(*b"initmmEF");

/// The largest device tree the stub cleans whole (as `early` maps at most that much of it).
const MAX_FDT_SIZE: u64 = super::early::MAX_FDT_SIZE;

/// What the stub leaves for the kernel, in `.data` (the entry's `.bss` clearing would erase it).
/// Only the stub writes it, before the kernel runs; the kernel reads it once, through [`handover`].
#[repr(C)]
struct Handover {
    /// [`MAGIC`] once the stub filled the rest; 0 in the Image file, so a flat-Image boot reads 0.
    magic: AtomicU64,
    /// The configuration table's device tree, 0 if none.
    dtb: AtomicU64,
    /// The configuration table's ACPI 2.0 RSDP, 0 if none.
    rsdp: AtomicU64,
    /// Bytes of memory map in the `__efi_mmap_start` hole, each descriptor `desc_size` bytes.
    mmap_size: AtomicU64,
    desc_size: AtomicU64,
    desc_version: AtomicU64,
    /// Bytes of command line in the `__efi_cmdline_start` hole (ASCII), or one of the `OPTIONS_*`
    /// values when the load options held none.
    cmdline: AtomicU64,
    /// The load options' size in bytes, as the loaded image protocol gave it.
    options_size: AtomicU64,
    /// The loaded image protocol's `image_base`, which should be where the image runs.
    image_base: AtomicU64,
    /// How many `ExitBootServices` calls it took (more than 1: the map key went stale).
    exit_attempts: AtomicU64,
}

/// [`Handover::cmdline`] when the load options are not text (`LoadOptions::NotText`).
const OPTIONS_NOT_TEXT: u64 = 1 << 63;
/// [`Handover::cmdline`] when the text is longer than the hole (it holds the beginning).
const OPTIONS_TRUNCATED: u64 = 1 << 62;

#[unsafe(link_section = ".data.efi_handover")]
static HANDOVER: Handover = Handover {
    magic: AtomicU64::new(0),
    dtb: AtomicU64::new(0),
    rsdp: AtomicU64::new(0),
    mmap_size: AtomicU64::new(0),
    desc_size: AtomicU64::new(0),
    desc_version: AtomicU64::new(0),
    cmdline: AtomicU64::new(0),
    options_size: AtomicU64::new(0),
    image_base: AtomicU64::new(0),
    exit_attempts: AtomicU64::new(0),
};

unsafe extern "C" {
    static __image_start: u8;
    static __efi_mmap_start: u8;
    static __efi_mmap_end: u8;
    static __efi_cmdline_start: u8;
    static __efi_cmdline_end: u8;
    /// Cleans the image and the device tree to the point of coherency, turns the MMU and the
    /// data cache off and continues at `primary_entry` with x0 = `dtb` (see the module
    /// documentation).
    fn efi_enter_kernel(dtb: u64, dtb_size: u64) -> !;
}

/// `[start, end)` of a linker hole, as the code runs: physical under the firmware, virtual in the
/// kernel (both PC-relative).
fn hole(start: *const u8, end: *const u8) -> (*mut u8, usize) {
    (
        start.cast_mut(),
        (end as usize).wrapping_sub(start as usize),
    )
}

fn mmap_hole() -> (*mut u8, usize) {
    hole(&raw const __efi_mmap_start, &raw const __efi_mmap_end)
}

fn cmdline_hole() -> (*mut u8, usize) {
    hole(&raw const __efi_cmdline_start, &raw const __efi_cmdline_end)
}

/// A NUL-terminated UCS-2 copy of an ASCII string literal, made at compile time: what the
/// firmware's console prints. An array, with no pointers in it, so the stub can use it.
macro_rules! ucs2 {
    ($s:literal) => {{
        const S: &[u8] = $s.as_bytes();
        const W: [u16; S.len() + 1] = {
            let mut w = [0u16; S.len() + 1];
            let mut i = 0;
            while i < S.len() {
                w[i] = S[i] as u16;
                i += 1;
            }
            w
        };
        &W
    }};
}

/// The firmware's console, if it has one.
struct Console(*mut SimpleTextOutputProtocol);

impl Console {
    /// Print the NUL-terminated UCS-2 string `s`.
    fn print(&self, s: &[u16]) {
        if self.0.is_null() || s.last() != Some(&0) {
            return;
        }
        // SAFETY: the system table's console output protocol, called before ExitBootServices
        // with a NUL-terminated string; the firmware's own status is of no use here.
        let _ = unsafe { ((*self.0).output_string)(self.0, s.as_ptr()) };
    }

    /// Print `v` as 0x and 16 hexadecimal digits.
    fn hex(&self, v: u64) {
        let mut s = [0u16; 19];
        s[0] = u16::from(b'0');
        s[1] = u16::from(b'x');
        for (i, c) in s[2..18].iter_mut().enumerate() {
            let d = ((v >> (60 - 4 * i)) & 0xf) as u16;
            *c = if d < 10 { 0x30 + d } else { 0x61 + d - 10 };
        }
        self.print(&s);
    }

    /// Print "initmm: EFI stub: `what` `v`\r\n".
    fn error(&self, what: &[u16], v: u64) {
        self.print(ucs2!("initmm: EFI stub: "));
        self.print(what);
        self.hex(v);
        self.print(ucs2!("\r\n"));
    }
}

/// The firmware starts the image here (`efi_pe_entry`, the PE entry point, calls this with the
/// image handle and the system table). Returns only on failure, with the status the firmware
/// gets; on success it exits boot services and continues into the kernel.
///
/// # Safety
/// Called once, by the firmware through `efi_pe_entry`, with a valid image handle and system
/// table, before ExitBootServices.
#[unsafe(no_mangle)]
unsafe extern "C" fn efi_main(image: Handle, st: *const SystemTable) -> Status {
    // SAFETY: the firmware passes a valid system table (checked by signature below before use).
    let Some(st) = (unsafe { st.as_ref() }) else {
        return Status::INVALID_PARAMETER;
    };
    if st.header.signature != SystemTable::SIGNATURE || st.boot_services.is_null() {
        return Status::INVALID_PARAMETER;
    }
    let con = Console(st.stdout);
    con.print(ucs2!("initmm: EFI stub\r\n"));
    // SAFETY: checked non-null; the boot services table stays valid until ExitBootServices.
    let bs = unsafe { &*st.boot_services };

    // The load options: the command line (Linux's efi_convert_cmdline).
    let mut li: *mut c_void = core::ptr::null_mut();
    // SAFETY: a boot service called with the firmware's image handle and a valid out-pointer.
    let s = unsafe { (bs.handle_protocol)(image, &LoadedImageProtocol::GUID, &mut li) };
    let (cmdline, options_size, image_base) = match (s, li.cast::<LoadedImageProtocol>()) {
        (Status::SUCCESS, li) if !li.is_null() => {
            // SAFETY: the firmware's loaded image protocol for this image, valid while boot
            // services are.
            let li = unsafe { &*li };
            let size = li.load_options_size as usize;
            let options: &[u8] = if li.load_options.is_null() {
                &[]
            } else {
                // SAFETY: the firmware's load options: `load_options_size` bytes at
                // `load_options`, valid while boot services are.
                unsafe { core::slice::from_raw_parts(li.load_options.cast::<u8>(), size) }
            };
            let (buf, cap) = cmdline_hole();
            // SAFETY: the command-line hole is part of this image (`linker.ld`), writable, and
            // nothing else uses it before the kernel reads it.
            let out = unsafe { core::slice::from_raw_parts_mut(buf, cap) };
            let cmdline = match fw::load_options_to_ascii(options, out) {
                LoadOptions::Text { len, truncated } => {
                    len as u64 | if truncated { OPTIONS_TRUNCATED } else { 0 }
                }
                LoadOptions::NotText => OPTIONS_NOT_TEXT,
            };
            (cmdline, size as u64, li.image_base as u64)
        }
        _ => {
            con.error(
                ucs2!("no loaded image protocol, no command line: status "),
                s.0 as u64,
            );
            (0, 0, 0)
        }
    };
    if image_base != &raw const __image_start as u64 {
        // Linux's "FIRMWARE BUG: efi_loaded_image_t::image_base has bogus value": harmless
        // here, the kernel finds itself PC-relatively.
        con.error(
            ucs2!("FIRMWARE BUG: the loaded image's image_base is "),
            image_base,
        );
    }

    // The configuration table: the device tree and the ACPI RSDP (Linux's get_fdt and the
    // kernel's efi_config_parse_tables, for these two).
    let (mut dtb, mut rsdp) = (0u64, 0u64);
    if !st.configuration_table.is_null() {
        // SAFETY: the firmware's configuration table: that many entries, valid while boot
        // services are.
        let tables: &[ConfigurationTable] = unsafe {
            core::slice::from_raw_parts(
                st.configuration_table,
                st.number_of_configuration_table_entries,
            )
        };
        for t in tables {
            if t.vendor_guid == DEVICE_TREE_GUID {
                dtb = t.vendor_table as u64;
            } else if t.vendor_guid == ACPI_20_TABLE_GUID {
                rsdp = t.vendor_table as u64;
            }
        }
    }
    if dtb == 0 && rsdp == 0 {
        // Said here, where the firmware's console still works: nothing would describe the
        // machine to the kernel (which checks again, in `platform::uefi::choose`).
        con.error(
            ucs2!(
                "the configuration table has neither a device tree nor an ACPI 2.0 RSDP; entries: "
            ),
            st.number_of_configuration_table_entries as u64,
        );
        return Status::UNSUPPORTED;
    }
    let dtb_size = fdt_size(dtb);

    // The memory map, straight into the image's hole, then ExitBootServices: when the firmware
    // answers INVALID_PARAMETER the map changed since it was read (an event ran); read it again,
    // without allocating or printing, and retry (Linux's efi_exit_boot_services, which retries
    // once; here up to 4 times in all).
    let (map, cap) = mmap_hole();
    let mut size: usize;
    let (mut key, mut desc_size, mut desc_version) = (0usize, 0usize, 0u32);
    let mut attempts = 0u64;
    let status = loop {
        size = cap;
        // SAFETY: a boot service with valid out-pointers and a buffer of `cap` bytes, the
        // memory-map hole of this image (8-byte aligned, `linker.ld`), that nothing else uses.
        let s = unsafe {
            (bs.get_memory_map)(
                &mut size,
                map.cast::<MemoryDescriptor>(),
                &mut key,
                &mut desc_size,
                &mut desc_version,
            )
        };
        if s != Status::SUCCESS {
            if attempts == 0 {
                con.error(
                    ucs2!(
                        "GetMemoryMap failed (the image holds 64 KiB of map; needed, or status): "
                    ),
                    if s == Status::BUFFER_TOO_SMALL {
                        size as u64
                    } else {
                        s.0 as u64
                    },
                );
            }
            break s;
        }
        attempts += 1;
        // SAFETY: a boot service, called with this image's handle and the key of the map just
        // read; after it succeeds the stub calls no boot service again.
        let s = unsafe { (bs.exit_boot_services)(image, key) };
        if s != Status::INVALID_PARAMETER || attempts == 4 {
            break s;
        }
    };
    if status != Status::SUCCESS {
        con.error(ucs2!("ExitBootServices failed: status "), status.0 as u64);
        return status;
    }

    let h = &HANDOVER;
    h.dtb.store(dtb, Ordering::Relaxed);
    h.rsdp.store(rsdp, Ordering::Relaxed);
    h.mmap_size.store(size as u64, Ordering::Relaxed);
    h.desc_size.store(desc_size as u64, Ordering::Relaxed);
    h.desc_version
        .store(u64::from(desc_version), Ordering::Relaxed);
    h.cmdline.store(cmdline, Ordering::Relaxed);
    h.options_size.store(options_size, Ordering::Relaxed);
    h.image_base.store(image_base, Ordering::Relaxed);
    h.exit_attempts.store(attempts, Ordering::Relaxed);
    h.magic.store(MAGIC, Ordering::Relaxed);
    // SAFETY: boot services are gone; `efi_enter_kernel` cleans what the kernel's entry reads
    // with the MMU off (the image, this hand-over included, and the device tree) and enters it.
    unsafe { efi_enter_kernel(dtb, dtb_size) }
}

/// How much of the device tree at `dtb` to clean to the point of coherency: its `totalsize`, or
/// only its header when that is more than the kernel maps or it is no device tree at all.
fn fdt_size(dtb: u64) -> u64 {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return 0;
    }
    // SAFETY: the firmware's device tree (8-byte aligned, in memory it mapped for us), read
    // before ExitBootServices; its first two big-endian words are the magic and `totalsize`.
    let (magic, total) = unsafe {
        let p = dtb as *const u32;
        (u32::from_be(p.read()), u32::from_be(p.add(1).read()))
    };
    match u64::from(total) {
        t if magic == 0xd00d_feed && (64..=MAX_FDT_SIZE).contains(&t) => t,
        _ => 64,
    }
}

/// What the EFI stub handed over, when the firmware started the kernel as an EFI application.
#[derive(Clone, Copy, Debug)]
pub struct EfiBoot {
    /// The device tree the configuration table named, if any.
    pub dtb: Option<u64>,
    /// The ACPI 2.0 RSDP the configuration table named, if any.
    pub rsdp: Option<u64>,
    /// The memory map as the last `GetMemoryMap` wrote it, in the image.
    pub memory_map: &'static [u8],
    /// Bytes per memory-map descriptor (at least the 40 of version 1).
    pub desc_size: usize,
    /// The descriptors' version.
    pub desc_version: u32,
    /// The load options: the command line, or why there is none.
    pub load_options: LoadOptions,
    /// The command line, when the load options were text.
    pub cmdline: &'static str,
    /// The load options' size in bytes.
    pub options_size: u64,
    /// Where the loaded image protocol says the image is (the kernel runs at `kimage_phys`).
    pub image_base: u64,
    /// `ExitBootServices` calls it took.
    pub exit_attempts: u64,
}

/// What the EFI stub handed over, or `None` when the kernel was started as a flat Image. Read
/// with the MMU on, through the image's mapping.
pub fn handover() -> Option<EfiBoot> {
    let h = &HANDOVER;
    if h.magic.load(Ordering::Relaxed) != MAGIC {
        return None;
    }
    let nonzero = |v: u64| (v != 0).then_some(v);
    let (map, cap) = mmap_hole();
    let size = (h.mmap_size.load(Ordering::Relaxed) as usize).min(cap);
    // SAFETY: the stub wrote `size` bytes of memory map into the hole, part of this image and
    // mapped with it; nothing writes it after the stub.
    let memory_map = unsafe { core::slice::from_raw_parts(map, size) };
    let cmdline = h.cmdline.load(Ordering::Relaxed);
    let (text, cap) = cmdline_hole();
    let (load_options, len) = if cmdline & OPTIONS_NOT_TEXT != 0 {
        (LoadOptions::NotText, 0)
    } else {
        let len = (cmdline & !OPTIONS_TRUNCATED) as usize;
        let truncated = cmdline & OPTIONS_TRUNCATED != 0;
        (LoadOptions::Text { len, truncated }, len.min(cap))
    };
    // SAFETY: the stub wrote `len` bytes of printable ASCII (`load_options_to_ascii`) into the
    // hole, part of this image and mapped with it; nothing writes it after the stub.
    let bytes = unsafe { core::slice::from_raw_parts(text.cast_const(), len) };
    Some(EfiBoot {
        dtb: nonzero(h.dtb.load(Ordering::Relaxed)),
        rsdp: nonzero(h.rsdp.load(Ordering::Relaxed)),
        memory_map,
        desc_size: h.desc_size.load(Ordering::Relaxed) as usize,
        desc_version: h.desc_version.load(Ordering::Relaxed) as u32,
        load_options,
        cmdline: core::str::from_utf8(bytes).unwrap_or(""),
        options_size: h.options_size.load(Ordering::Relaxed),
        image_base: h.image_base.load(Ordering::Relaxed),
        exit_attempts: h.exit_attempts.load(Ordering::Relaxed),
    })
}

core::arch::global_asm!(
    r#"
/*
 * The PE/COFF header (the PE32+ format of the Microsoft PE and COFF specification, as UEFI loads
 * it), right after the arm64 header, whose res5 word points here. The sizes and offsets come from
 * linker.ld (__pe_*); platform/pe.py fills in the data section's file size once the symbol table
 * is in the file, and checks every field of both headers.
 */
    .section .text.pe_header, "a"
    .balign 8
    .global pe_header
pe_header:
    .ascii  "PE\0\0"
    .short  {machine}                   /* Machine */
    .short  2                           /* NumberOfSections: text, data */
    .long   0                           /* TimeDateStamp */
    .long   0                           /* PointerToSymbolTable */
    .long   0                           /* NumberOfSymbols */
    .short  1f - 0f                     /* SizeOfOptionalHeader */
    .short  {characteristics}           /* Characteristics */
0:  /* The optional header. */
    .short  {opt_magic}                 /* Magic: PE32+ */
    .byte   0, 0                        /* linker version */
    .long   __pe_text_size              /* SizeOfCode */
    .long   __pe_data_size              /* SizeOfInitializedData */
    .long   0                           /* SizeOfUninitializedData */
    .long   __pe_entry                  /* AddressOfEntryPoint: efi_pe_entry */
    .long   __pe_text_start             /* BaseOfCode */
    .quad   0                           /* ImageBase: any (no relocations are needed) */
    .long   {section_alignment}         /* SectionAlignment */
    .long   {file_alignment}            /* FileAlignment */
    .short  0, 0                        /* operating system version */
    .short  0, 0                        /* image version */
    .short  0, 0                        /* subsystem version */
    .long   0                           /* Win32VersionValue */
    .long   __image_size                /* SizeOfImage: .bss included */
    .long   __pe_text_start             /* SizeOfHeaders: the first page */
    .long   0                           /* CheckSum */
    .short  {subsystem}                 /* Subsystem: EFI application */
    .short  0                           /* DllCharacteristics */
    .quad   0, 0, 0, 0                  /* stack and heap reserve and commit */
    .long   0                           /* LoaderFlags */
    .long   (1f - 2f) / 8               /* NumberOfRvaAndSizes */
2:  .quad   0, 0, 0, 0, 0, 0            /* export, import, resource, exception, certificate,
                                           base relocation: none */
1:  /* The section table. */
    .ascii  ".text\0\0\0"
    .long   __pe_text_size              /* VirtualSize */
    .long   __pe_text_start             /* VirtualAddress */
    .long   __pe_text_size              /* SizeOfRawData */
    .long   __pe_text_start             /* PointerToRawData */
    .long   0, 0                        /* relocations, line numbers */
    .short  0, 0
    .long   {scn_text}                  /* Characteristics: code, read, execute */

    .ascii  ".data\0\0\0"
    .long   __pe_data_size              /* VirtualSize: to the end of .bss */
    .long   __pe_data_start             /* VirtualAddress */
    .long   __pe_data_file_size         /* SizeOfRawData: platform/pe.py sets the final size */
    .long   __pe_data_start             /* PointerToRawData */
    .long   0, 0
    .short  0, 0
    .long   {scn_data}                  /* Characteristics: initialised data, read, write */

    .section .text.boot, "ax"
/*
 * The PE entry point: x0 = image handle, x1 = system table, MMU on (identity map), caches on, at
 * EL1 or EL2. efi_main returns only to hand the firmware an error status.
 */
    .global efi_pe_entry
efi_pe_entry:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    bl      efi_main
    ldp     x29, x30, [sp], #16
    ret

/*
 * efi_enter_kernel(x0 = device tree or 0, x1 = its bytes to clean): Linux 5.10's efi_enter_kernel
 * (see the module documentation). Boot services are gone; nothing here returns.
 */
    .global efi_enter_kernel
efi_enter_kernel:
    msr     daifset, #0xf                   /* the boot protocol: every exception masked */
    mov     x19, x0
    mov     x20, x1
    adrp    x0, __image_start
    add     x0, x0, :lo12:__image_start
    adrp    x1, __image_end
    add     x1, x1, :lo12:__image_end
    bl      dcache_clean_inval_range      /* the image, this code and the hand-over included */
    add     x1, x19, x20
    mov     x0, x19
    bl      dcache_clean_inval_range      /* the device tree (nothing when x20 = 0) */
    ic      iallu
    dsb     sy
    isb
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    1f
    mrs     x0, sctlr_el2
    bic     x0, x0, #(1 << 0)               /* M: MMU off */
    bic     x0, x0, #(1 << 2)               /* C: data cache off */
    isb
    msr     sctlr_el2, x0
    isb
    b       2f
1:  mrs     x0, sctlr_el1
    bic     x0, x0, #(1 << 0)
    bic     x0, x0, #(1 << 2)
    isb
    msr     sctlr_el1, x0
    isb
2:  mov     x0, x19                         /* the flat-Image protocol's registers */
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    b       primary_entry

"#,
    machine = const PE_MACHINE_ARM64,
    characteristics = const PE_CHARACTERISTICS,
    opt_magic = const PE_OPT_MAGIC_PE32PLUS,
    section_alignment = const PE_SECTION_ALIGNMENT,
    file_alignment = const PE_FILE_ALIGNMENT,
    subsystem = const PE_SUBSYSTEM_EFI_APPLICATION,
    scn_text = const PE_SCN_TEXT,
    scn_data = const PE_SCN_DATA,
);
