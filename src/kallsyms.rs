//! The kernel's own symbol table, so that a backtrace names its frames on any console, with no
//! host tool: `#3  0xffffff8000012345 initmm::mm::vm::ioremap+0x58`.
//!
//! Like Linux's kallsyms, the table is built from the linked ELF at image time
//! (platform/kallsyms.py, which documents the format) and placed in a hole the linker script
//! leaves before .bss (`__kallsyms_start`), so the image carries it without a second link. Names
//! are demangled and compressed into `::`-separated tokens; addresses are 32-bit offsets from the
//! image start, sorted, for a binary search.
//!
//! Every read is bounds-checked against the table's own sizes: a kernel booted from its ELF (no
//! table), or a damaged table, yields no names rather than a fault in the middle of a panic report.

use core::fmt;

const MAGIC: &[u8; 4] = b"KSYM";
const VERSION: u32 = 1;
const HEADER: usize = 44;

/// A table in memory, checked once by [`Table::parse`].
#[derive(Clone, Copy)]
pub struct Table<'a> {
    bytes: &'a [u8],
    count: usize,
    tokens: usize,
    addrs: usize,
    sizes: usize,
    names: usize,
    stream: usize,
    token_starts: usize,
    token_bytes: usize,
}

/// A code address resolved to a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    index: usize,
    /// The symbol's address as an offset from the image start.
    pub start: u32,
    /// How far into the symbol the address is.
    pub offset: u32,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let w = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

impl<'a> Table<'a> {
    /// Check the header and that every array it names lies inside `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC || u32_at(bytes, 4)? != VERSION {
            return None;
        }
        let field = |i: usize| u32_at(bytes, 8 + 4 * i).map(|v| v as usize);
        let (count, tokens) = (field(0)?, field(1)?);
        let t = Self {
            bytes: bytes.get(..field(8)?)?,
            count,
            tokens,
            addrs: field(2)?,
            sizes: field(3)?,
            names: field(4)?,
            stream: field(5)?,
            token_starts: field(6)?,
            token_bytes: field(7)?,
        };
        let fits = |off: usize, words: usize| {
            words
                .checked_mul(4)
                .and_then(|n| n.checked_add(off))
                .is_some_and(|end| end <= t.bytes.len())
        };
        let ok = fits(t.addrs, count)
            && fits(t.sizes, count)
            && fits(t.names, count.checked_add(1)?)
            && fits(t.token_starts, tokens.checked_add(1)?)
            && t.stream <= t.bytes.len()
            && t.token_bytes <= t.bytes.len();
        ok.then_some(t)
    }

    /// How many symbols the table holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the table holds no symbol.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn addr(&self, i: usize) -> u32 {
        u32_at(self.bytes, self.addrs + 4 * i).unwrap_or(u32::MAX)
    }

    fn size(&self, i: usize) -> u32 {
        u32_at(self.bytes, self.sizes + 4 * i).unwrap_or(0)
    }

    /// The symbol containing `offset` (from the image start): the nearest one at or below it,
    /// skipping sized symbols that end before it (a gap, or a label inside an assembly block
    /// after a sized function) back to an unsized label. The same rule as the host symboliser.
    pub fn lookup(&self, offset: u32) -> Option<Found> {
        // The number of symbols that start at or below `offset`.
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.addr(mid) <= offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo.saturating_sub(8)..lo).rev().find_map(|i| {
            let (start, size) = (self.addr(i), self.size(i));
            let into = offset.checked_sub(start)?;
            (size == 0 || into < size).then_some(Found {
                index: i,
                start,
                offset: into,
            })
        })
    }

    /// The name of a symbol [`lookup`](Self::lookup) found; `Display` writes it.
    pub fn name(&self, found: Found) -> Name<'a> {
        let at = |i: usize| u32_at(self.bytes, self.names + 4 * i).map(|v| v as usize);
        let stream = match (at(found.index), at(found.index + 1)) {
            (Some(s), Some(e)) => self
                .bytes
                .get(self.stream.saturating_add(s)..self.stream.saturating_add(e))
                .unwrap_or(&[]),
            _ => &[],
        };
        Name {
            table: *self,
            stream,
        }
    }

    fn token(&self, i: usize) -> &'a str {
        let at = |i: usize| u32_at(self.bytes, self.token_starts + 4 * i).map(|v| v as usize);
        let (Some(s), Some(e)) = (at(i), at(i + 1)) else {
            return "?";
        };
        self.bytes
            .get(self.token_bytes.saturating_add(s)..self.token_bytes.saturating_add(e))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("?")
    }
}

/// A symbol's name: its tokens joined with `::`.
pub struct Name<'a> {
    table: Table<'a>,
    stream: &'a [u8],
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut value, mut shift, mut first) = (0usize, 0u32, true);
        for &b in self.stream {
            if shift < usize::BITS {
                value |= usize::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 != 0 {
                continue;
            }
            if !first {
                f.write_str("::")?;
            }
            let token = if value < self.table.tokens {
                self.table.token(value)
            } else {
                "?"
            };
            f.write_str(token)?;
            (value, shift, first) = (0, 0, false);
        }
        Ok(())
    }
}

/// ` name+0xoff` (with its leading space) for a code address, or nothing when no table or no
/// symbol covers it; `<` and `>` around it when `angled` (after an `ELR 0x...`).
pub struct Symbolic {
    /// The code address to name.
    pub addr: u64,
    /// Whether to print `<name+0xoff>` rather than `name+0xoff`.
    pub angled: bool,
}

impl fmt::Display for Symbolic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match resolve(self.addr) {
            Some((name, off)) if self.angled => write!(f, " <{name}+{off:#x}>"),
            Some((name, off)) => write!(f, " {name}+{off:#x}"),
            None => Ok(()),
        }
    }
}

/// The symbol containing the kernel address `addr`, and the offset into it.
#[cfg(target_os = "none")]
pub fn resolve(addr: u64) -> Option<(Name<'static>, u32)> {
    let t = table()?;
    let image = crate::kimage::image_layout().start;
    let off = u32::try_from(addr.checked_sub(image)?).ok()?;
    let found = t.lookup(off)?;
    Some((t.name(found), found.offset))
}

/// On the host there is no kernel image to look in: never a symbol.
#[cfg(not(target_os = "none"))]
pub fn resolve(_addr: u64) -> Option<(Name<'static>, u32)> {
    None
}

/// The table the image carries, if it carries one.
#[cfg(target_os = "none")]
pub fn table() -> Option<Table<'static>> {
    unsafe extern "C" {
        static __kallsyms_start: u8;
        static __kallsyms_end: u8;
    }
    let start = &raw const __kallsyms_start;
    let len = &raw const __kallsyms_end as usize - start as usize;
    // SAFETY: the linker script reserves `[__kallsyms_start, __kallsyms_end)` inside the image,
    // mapped as kernel data for the kernel's life. Nothing writes it after the loader: it holds
    // the table, or whatever the loader left there when the image came without one (then the
    // magic does not match and `parse` refuses it).
    let bytes = unsafe { core::slice::from_raw_parts(start, len) };
    Table::parse(bytes)
}

#[cfg(test)]
mod tests;
