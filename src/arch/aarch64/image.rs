//! The 64-byte header of a Linux arm64 `Image` (Documentation/arch/arm64/booting.rst), which boot
//! loaders (QEMU `-kernel`, the Raspberry Pi firmware, U-Boot's `booti`) read to place the kernel
//! and to decide to pass x0 = the device tree. `boot.rs` emits it from these constants; the tests
//! here decode what it emits.
//!
//! The same file is a PE/COFF EFI application, as Linux's Image is: its first instruction
//! encodes "MZ", the DOS signature, and the header's last word (`res5`) holds the PE header's
//! offset, where a DOS header keeps it (`e_lfanew`, 0x3c). `efi.rs` emits that PE header from the
//! `PE_*` constants here; `platform/pe.py` checks both headers of every Image it builds.

use core::fmt;

/// Bytes of the header.
pub const HEADER_SIZE: usize = 64;
/// "ARM\x64", little-endian, at offset 0x38.
pub const MAGIC: u32 = 0x644d_5241;
/// Load at a 2 MiB-aligned base + 0.
pub const TEXT_OFFSET: u64 = 0;
/// Bit 0: big-endian (0 = little). Bits 1-2: page size (1 = 4 KiB). Bit 3: the image may be placed
/// anywhere in physical memory (1), not necessarily near the base of DRAM.
pub const FLAGS: u64 = (1 << 1) | (1 << 3);

/// `ccmp x18, #0, #0xd, pl`: the first instruction (code0). A no-op for the flat-Image protocol
/// (it only sets the flags, which nothing reads before they are set again), and little-endian
/// its first two bytes are "MZ", the signature EFI loaders look for at a PE file's start.
pub const CODE0_MZ: u32 = 0xfa40_5a4d;

/// Where the PE header's offset is, in both headers: the arm64 header's `res5`, the DOS header's
/// `e_lfanew`.
pub const PE_OFFSET_FIELD: usize = 0x3c;
/// The PE signature, "PE\0\0".
pub const PE_SIGNATURE: u32 = 0x0000_4550;
/// COFF `Machine`: `IMAGE_FILE_MACHINE_ARM64`.
pub const PE_MACHINE_ARM64: u16 = 0xaa64;
/// COFF `Characteristics`: an executable image (0x2) with no line numbers (0x4) or debug symbols
/// (0x200) in the COFF sense: the ELF keeps the DWARF.
pub const PE_CHARACTERISTICS: u16 = 0x0002 | 0x0004 | 0x0200;
/// Optional header `Magic`: PE32+, the 64-bit format.
pub const PE_OPT_MAGIC_PE32PLUS: u16 = 0x020b;
/// `Subsystem`: an EFI application (started once, returns or exits boot services).
pub const PE_SUBSYSTEM_EFI_APPLICATION: u16 = 10;
/// `SectionAlignment`: a page. EFI loaders place the image at a multiple of it, which is all the
/// kernel needs (its entry code addresses itself with `adrp`, page-relative).
pub const PE_SECTION_ALIGNMENT: u32 = 4096;
/// `FileAlignment`: where section data may start in the file, and what its sizes are multiples of.
pub const PE_FILE_ALIGNMENT: u32 = 512;
/// Section `Characteristics` of the text section: code, readable, executable.
pub const PE_SCN_TEXT: u32 = 0x0000_0020 | 0x2000_0000 | 0x4000_0000;
/// Section `Characteristics` of the data section: initialised data, readable, writable.
pub const PE_SCN_DATA: u32 = 0x0000_0040 | 0x4000_0000 | 0x8000_0000;

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// The first instruction, which loaders jump to: [`CODE0_MZ`] in the kernel (the chainloader
    /// branches from here).
    pub code0: u32,
    /// The second instruction: the kernel's branch past the headers.
    pub code1: u32,
    /// Where the image wants loading, in bytes above a 2 MiB-aligned base.
    pub text_offset: u64,
    /// Bytes the loader must reserve from the load address, .bss included.
    pub image_size: u64,
    /// Endianness, page size and placement bits (see [`FLAGS`]).
    pub flags: u64,
}

/// Why [`ImageHeader::parse`] refused a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The file, of this many bytes, cannot hold the header.
    TooShort(usize),
    /// The word at 0x38 (given) is not [`MAGIC`].
    BadMagic(u32),
    /// The file holds more than the header says the image occupies.
    SizeTooSmall {
        /// The header's `image_size`, in bytes.
        image_size: u64,
        /// The file's length in bytes.
        file: usize,
    },
    /// `image_size` 0 means "old kernel, guess": loaders then ignore text_offset.
    NoSize,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => {
                write!(f, "{n} bytes: shorter than the 64-byte arm64 Image header")
            }
            Self::BadMagic(m) => write!(
                f,
                "magic {m:#010x} at 0x38, not \"ARM\\x64\" ({MAGIC:#010x})"
            ),
            Self::SizeTooSmall { image_size, file } => {
                write!(
                    f,
                    "header image_size {image_size} is smaller than the file ({file} bytes)"
                )
            }
            Self::NoSize => f.write_str("image_size is 0: loaders would ignore text_offset"),
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

impl ImageHeader {
    /// Decode and check the header at the start of an Image file of `image.len()` bytes.
    ///
    /// # Errors
    ///
    /// [`ImageError`]: the file is too short, has no magic, or its `image_size` is 0 or smaller
    /// than the file.
    pub fn parse(image: &[u8]) -> Result<Self, ImageError> {
        if image.len() < HEADER_SIZE {
            return Err(ImageError::TooShort(image.len()));
        }
        let magic = u32_at(image, 0x38);
        if magic != MAGIC {
            return Err(ImageError::BadMagic(magic));
        }
        let h = Self {
            code0: u32_at(image, 0),
            code1: u32_at(image, 4),
            text_offset: u64_at(image, 0x08),
            image_size: u64_at(image, 0x10),
            flags: u64_at(image, 0x18),
        };
        if h.image_size == 0 {
            return Err(ImageError::NoSize);
        }
        if h.image_size < image.len() as u64 {
            return Err(ImageError::SizeTooSmall {
                image_size: h.image_size,
                file: image.len(),
            });
        }
        Ok(h)
    }

    /// Whether the kernel is little-endian (flags bit 0 clear).
    pub fn little_endian(&self) -> bool {
        self.flags & 1 == 0
    }

    /// Page size the kernel expects, in bytes (0 = unspecified).
    pub fn page_size(&self) -> u64 {
        match (self.flags >> 1) & 3 {
            1 => 4096,
            2 => 16384,
            3 => 65536,
            _ => 0,
        }
    }

    /// Whether the image may be loaded anywhere in physical memory (flags bit 3), not only near
    /// the base of DRAM.
    pub fn place_anywhere(&self) -> bool {
        self.flags & (1 << 3) != 0
    }

    /// Where execution goes from the entry, as a byte offset into the image: the target of code0
    /// when it is a `b`, or of code1 when code0 is the [`CODE0_MZ`] no-op; `None` for anything
    /// else (forward branches only: the entry code follows the header).
    pub fn branch_target(&self) -> Option<u64> {
        let b = |insn: u32, at: u64| {
            (insn >> 26 == 0b000101).then(|| at + u64::from(insn & 0x01ff_ffff) * 4)
        };
        match self.code0 {
            CODE0_MZ => b(self.code1, 4),
            insn => b(insn, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as boot.rs lays it out: "MZ", a `b` 4 KiB on (past the PE header's page), then
    /// the fields.
    fn header(image_size: u64, magic: u32) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        let b_page = 0x1400_0000u32 | ((4096 - 4) / 4);
        h[0..4].copy_from_slice(&CODE0_MZ.to_le_bytes());
        h[4..8].copy_from_slice(&b_page.to_le_bytes());
        h[0x08..0x10].copy_from_slice(&TEXT_OFFSET.to_le_bytes());
        h[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&FLAGS.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&magic.to_le_bytes());
        h
    }

    #[test]
    fn flags_say_little_endian_4k_anywhere() {
        let h = ImageHeader::parse(&header(1 << 20, MAGIC)).unwrap();
        assert!(h.little_endian());
        assert_eq!(h.page_size(), 4096);
        assert!(h.place_anywhere());
        assert_eq!(h.text_offset, 0);
        assert_eq!(
            h.branch_target(),
            Some(4096),
            "code1 branches past the headers"
        );
        // The chainloader's header: code0 is the branch.
        let chain = ImageHeader {
            code0: 0x1400_0000 | 16,
            ..h
        };
        assert_eq!(chain.branch_target(), Some(64));
        assert_eq!(&MAGIC.to_le_bytes(), b"ARM\x64");
    }

    #[test]
    fn code0_spells_mz() {
        assert_eq!(&CODE0_MZ.to_le_bytes()[..2], b"MZ");
        // CCMP (immediate), 64-bit: sf, op, S set, then 0b11010010; Rn = x18, cond = pl (0b0101),
        // nzcv = 0b1101.
        let ccmp =
            (0b111u32 << 29) | (0b1101_0010 << 21) | (0b0101 << 12) | (1 << 11) | (18 << 5) | 0xd;
        assert_eq!(CODE0_MZ, ccmp);
        assert_eq!(&PE_SIGNATURE.to_le_bytes(), b"PE\0\0");
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(ImageHeader::parse(&[0; 10]), Err(ImageError::TooShort(10)));
        assert_eq!(
            ImageHeader::parse(&header(1 << 20, 0x1234)),
            Err(ImageError::BadMagic(0x1234))
        );
        assert_eq!(
            ImageHeader::parse(&header(0, MAGIC)),
            Err(ImageError::NoSize)
        );
        assert_eq!(
            ImageHeader::parse(&header(32, MAGIC)),
            Err(ImageError::SizeTooSmall {
                image_size: 32,
                file: 64
            })
        );
        assert!(ImageError::BadMagic(0).to_string().contains("ARM"));
    }
}
