//! What the chainloader decides without touching hardware, host-tested: the framing of a
//! transfer, its checksum, and where a received arm64 Image may go.
//!
//! The conversation on the serial line (platform/rpi4/chainboot.py is the host half):
//! 1. The loader prints `chainload: ready ...` when it starts and after every refusal; the host may
//!    send [`ENQ`] at any time to have it said again (the host may open the line late).
//! 2. The host sends an offer: [`MAGIC`], the file size and its CRC-32 (both u32, little-endian),
//!    then the file's first 64 bytes: the Image header ([`OFFER_LEN`] bytes in all).
//! 3. The loader checks the offer ([`check_offer`]) and answers `chainload: receiving ...` or
//!    `chainload: refused: ...` (then back to 1).
//! 4. The host sends the rest of the file; the loader writes it in place as it arrives, and checks
//!    the CRC-32 of the whole file at the end: `chainload: loaded ...` and it jumps to the kernel,
//!    or `chainload: refused: ...` and back to 1. A line that goes quiet for [`STALL_SECONDS`]
//!    in the middle of a transfer ends it the same way.

use core::fmt;

use crate::image::{HEADER_SIZE, ImageError, ImageHeader};

/// The start of an offer.
pub const MAGIC: [u8; 4] = *b"IMLD";
/// Sent alone by the host: "say whether you are ready".
pub const ENQ: u8 = 0x05;
/// Magic, size, CRC-32, Image header.
pub const OFFER_LEN: usize = 4 + 4 + 4 + HEADER_SIZE;
/// A transfer that stops for this long is abandoned.
pub const STALL_SECONDS: u64 = 3;
/// The arm64 boot protocol: an Image goes `text_offset` bytes above a 2 MiB-aligned base.
pub const IMAGE_ALIGN: u64 = 2 << 20;

/// A physical address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: u64,
    pub size: u64,
}

impl Range {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// Why an offer or a transfer was refused (printed after `chainload: refused: `).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The size cannot even hold the 64-byte header.
    TooSmall(u32),
    NotAnImage(ImageError),
    BigEndian,
    /// The file is larger than the memory its header asks for.
    LargerThanImage {
        size: u32,
        image_size: u64,
    },
    /// No 2 MiB-aligned place in RAM holds `image_size` bytes clear of the loader and the DTB.
    NoRoom {
        image_size: u64,
        ram: Range,
    },
    Checksum {
        computed: u32,
        sent: u32,
    },
    Stalled {
        got: u32,
        size: u32,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooSmall(n) => write!(f, "size {n} cannot hold an arm64 Image header"),
            Self::NotAnImage(e) => write!(f, "not an arm64 Image: {e}"),
            Self::BigEndian => f.write_str("a big-endian Image"),
            Self::LargerThanImage { size, image_size } => write!(
                f,
                "{size} bytes sent but the header's image_size is {image_size}"
            ),
            Self::NoRoom { image_size, ram } => write!(
                f,
                "an image of {image_size} bytes does not fit in RAM {:#x}-{:#x} beside the loader and the device tree",
                ram.base,
                ram.end()
            ),
            Self::Checksum { computed, sent } => write!(
                f,
                "checksum {computed:#010x} but the host sent {sent:#010x}: the transfer was corrupted"
            ),
            Self::Stalled { got, size } => {
                write!(
                    f,
                    "the line went quiet after {got} of {size} bytes ({STALL_SECONDS} s)"
                )
            }
        }
    }
}

/// An accepted offer: where the Image goes and what to check at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub load: u64,
    pub size: u32,
    pub crc: u32,
    pub image_size: u64,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Check an offer (the [`OFFER_LEN`] bytes after and including [`MAGIC`]) against the RAM the
/// loader runs in and the ranges it must not overwrite (itself, the DTB, reserved memory).
pub fn check_offer(offer: &[u8; OFFER_LEN], ram: Range, keep: &[Range]) -> Result<Plan, Refusal> {
    let (size, crc) = (le32(&offer[4..8]), le32(&offer[8..12]));
    if (size as usize) < HEADER_SIZE {
        return Err(Refusal::TooSmall(size));
    }
    let header = ImageHeader::parse(&offer[12..]).map_err(Refusal::NotAnImage)?;
    if !header.little_endian() {
        return Err(Refusal::BigEndian);
    }
    if u64::from(size) > header.image_size {
        return Err(Refusal::LargerThanImage {
            size,
            image_size: header.image_size,
        });
    }
    let load = place(header.text_offset, header.image_size, ram, keep).ok_or(Refusal::NoRoom {
        image_size: header.image_size,
        ram,
    })?;
    Ok(Plan {
        load,
        size,
        crc,
        image_size: header.image_size,
    })
}

/// The lowest load address `base + text_offset`, `base` 2 MiB-aligned, at which `image_size`
/// bytes lie inside `ram` and overlap none of `keep`.
pub fn place(text_offset: u64, image_size: u64, ram: Range, keep: &[Range]) -> Option<u64> {
    let mut base = ram.base.checked_add(IMAGE_ALIGN - 1)? & !(IMAGE_ALIGN - 1);
    loop {
        let image = Range::new(base.checked_add(text_offset)?, image_size);
        if image.base.checked_add(image_size)? > ram.end() {
            return None;
        }
        if !keep.iter().any(|k| k.overlaps(&image)) {
            return Some(image.base);
        }
        base = base.checked_add(IMAGE_ALIGN)?;
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`), one byte at a time as the data arrives:
/// start from [`CRC_INIT`], finish with [`crc32_finish`].
pub const CRC_INIT: u32 = 0xffff_ffff;

static CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

pub fn crc32_update(crc: u32, byte: u8) -> u32 {
    CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
}

pub fn crc32_finish(crc: u32) -> u32 {
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{FLAGS, MAGIC as IMAGE_MAGIC};

    fn crc32(data: &[u8]) -> u32 {
        crc32_finish(data.iter().fold(CRC_INIT, |c, &b| crc32_update(c, b)))
    }

    fn offer(
        size: u32,
        crc: u32,
        text_offset: u64,
        image_size: u64,
        flags: u64,
    ) -> [u8; OFFER_LEN] {
        let mut o = [0u8; OFFER_LEN];
        o[..4].copy_from_slice(&MAGIC);
        o[4..8].copy_from_slice(&size.to_le_bytes());
        o[8..12].copy_from_slice(&crc.to_le_bytes());
        let h = &mut o[12..];
        h[0..4].copy_from_slice(&(0x1400_0000u32 | 16).to_le_bytes());
        h[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        h[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        o
    }

    /// The Pi 4 under the firmware: 960 MiB at 0, the spin-table page, the loader at 2 MiB, the
    /// DTB where the firmware puts it.
    const RAM: Range = Range::new(0, 0x3c00_0000);
    const KEEP: [Range; 3] = [
        Range::new(0, 0x1000),
        Range::new(0x20_0000, 0x9000),
        Range::new(0x2eff_2000, 0xd000),
    ];

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926, "the standard check value");
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(&[0u8; 64]), 0x758d_6336);
    }

    #[test]
    fn an_image_goes_to_the_first_free_2mib_slot() {
        let plan = check_offer(&offer(340_000, 7, 0, 3 << 20, FLAGS), RAM, &KEEP).unwrap();
        // 0 holds the spin table, 2 MiB the loader itself: the next slot is 4 MiB.
        assert_eq!(plan.load, 0x40_0000);
        assert_eq!(
            (plan.size, plan.crc, plan.image_size),
            (340_000, 7, 3 << 20)
        );
        // text_offset counts from the 2 MiB base (an old kernel's 0x80000): 1 MiB fits below
        // the loader, 2 MiB does not and goes 0x80000 above the next base.
        assert_eq!(place(0x8_0000, 1 << 20, RAM, &KEEP), Some(0x8_0000));
        assert_eq!(place(0x8_0000, 2 << 20, RAM, &KEEP), Some(0x28_0000));
    }

    #[test]
    fn the_image_never_covers_the_loader_or_the_dtb() {
        // A DTB in the slot after the loader's pushes the image past it.
        let keep = [
            Range::new(0, 0x1000),
            Range::new(0x20_0000, 0x9000),
            Range::new(0x5f_0000, 0x2_0000),
        ];
        assert_eq!(place(0, 2 << 20, RAM, &keep), Some(0x80_0000));
        let ram = Range::new(0x20_0000, 0x40_0000);
        assert_eq!(place(0, 2 << 20, ram, &keep[..2]), Some(0x40_0000));
        assert_eq!(place(0, 2 << 20, ram, &keep), None, "nowhere left");
        // A RAM base that is not 2 MiB-aligned starts at the next aligned base.
        assert_eq!(
            place(0, 1 << 20, Range::new(0x1000, 0x60_0000), &[]),
            Some(0x20_0000)
        );
    }

    #[test]
    fn offers_that_cannot_be_loaded_are_refused() {
        let o = offer(340_000, 7, 0, 1 << 30, FLAGS);
        assert_eq!(
            check_offer(&o, RAM, &KEEP),
            Err(Refusal::NoRoom {
                image_size: 1 << 30,
                ram: RAM
            }),
            "1 GiB does not fit in 960 MiB"
        );
        let huge = offer(340_000, 7, u64::MAX - 4096, 1 << 20, FLAGS);
        assert!(matches!(
            check_offer(&huge, RAM, &KEEP),
            Err(Refusal::NoRoom { .. })
        ));
        assert_eq!(
            check_offer(&offer(63, 7, 0, 1 << 20, FLAGS), RAM, &KEEP),
            Err(Refusal::TooSmall(63))
        );
        assert_eq!(
            check_offer(&offer(5 << 20, 7, 0, 4 << 20, FLAGS), RAM, &KEEP),
            Err(Refusal::LargerThanImage {
                size: 5 << 20,
                image_size: 4 << 20
            })
        );
        assert_eq!(
            check_offer(&offer(4096, 7, 0, 1 << 20, FLAGS | 1), RAM, &KEEP),
            Err(Refusal::BigEndian)
        );
        let mut bad = offer(4096, 7, 0, 1 << 20, FLAGS);
        bad[12 + 0x38] = b'X';
        assert!(matches!(
            check_offer(&bad, RAM, &KEEP),
            Err(Refusal::NotAnImage(ImageError::BadMagic(_)))
        ));
        assert!(
            Refusal::Checksum {
                computed: 1,
                sent: 2
            }
            .to_string()
            .contains("corrupted"),
            "the message says what happened"
        );
    }
}
