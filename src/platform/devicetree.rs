//! The machine as the device tree describes it: RAM, reservations, console, GIC, timer, PSCI and
//! CPUs, with bus addresses already translated to CPU physical addresses.
//!
//! [`parse`] reads the blob in one pass of the front door ([`fdt_front::walk`]), which checks
//! every token before handing it on, so it accepts any bytes without panicking. From that pass
//! it keeps a flat index of the tree (each node's name, parent and properties, pointing into the
//! blob): every lookup after it reads the index, never the blob again. Cells are decoded here,
//! with the parent's `#address-cells`/`#size-cells` and checked lengths.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use core::ops::Range;

use super::fdt_front::{self, FdtError, Token};
use crate::mm::region::Region;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `/model`, or the first root `compatible` string, or "unknown".
    pub model: String,
    pub compatible: Vec<String>,
    /// Every `device_type = "memory"` range: sorted, empty ones dropped, overlaps merged. Like
    /// `reserved`, every region is non-empty and ends at or below `u64::MAX` (`base + size` never
    /// overflows; a range reaching the top of the address space loses its last byte), so that
    /// readers may add `base + size` without checks.
    pub ram: Vec<Region>,
    /// `/memreserve/` entries and `/reserved-memory` children with a `reg`, sorted.
    pub reserved: Vec<Region>,
    /// The `/reserved-memory` children that also say `no-map`, sorted (a subset of
    /// `reserved`): RAM the kernel must not map at all, not even in the linear map (a secure
    /// carve-out, a co-processor's memory), since the CPU may fetch speculatively from anything
    /// mapped cacheable.
    pub no_map: Vec<Region>,
    pub console: Option<Console>,
    pub gic: Option<Gic>,
    pub timer: Option<Timer>,
    pub psci: Option<Psci>,
    /// Available `/cpus` children with `device_type = "cpu"`, in device-tree order.
    pub cpus: Vec<Cpu>,
    pub bootargs: String,
    /// What was odd and ignored, for the boot log.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Console {
    /// The node's full path, after alias resolution.
    pub path: String,
    pub kind: UartKind,
    /// CPU physical address, after every parent bus's `ranges`.
    pub base: u64,
    pub size: u64,
    /// What followed ':' in `stdout-path`, e.g. "115200n8".
    pub options: Option<String>,
    /// The UART's `clock-frequency`, or that of the fixed clock its `clocks` points at.
    pub clock_hz: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UartKind {
    Pl011,
    /// The Raspberry Pi's mini UART ("brcm,bcm2835-aux-uart").
    Bcm2835Aux,
    /// First compatible string of a UART we have no driver for.
    Unknown(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    pub version: GicVersion,
    /// The distributor (GICD).
    pub dist: Region,
    /// GICC for a GICv2, the redistributor range (GICR) for a GICv3.
    pub cpu_or_redist: Region,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// The architected timer's interrupts as GIC INTIDs (PPI n is INTID 16 + n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    pub virt_irq: Option<u32>,
    pub phys_irq: Option<u32>,
    /// `clock-frequency`, present only where firmware fails to program CNTFRQ_EL0.
    pub frequency: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psci {
    pub method: PsciMethod,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    Hvc,
    Smc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The MPIDR affinity fields, as in `reg`.
    pub mpidr: u64,
    pub enable_method: EnableMethod,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnableMethod {
    Psci,
    SpinTable { release_addr: u64 },
    Other(String),
    Missing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The front door refused the blob.
    Fdt(FdtError),
    NoMemory,
    NoCpus,
    CpuWithoutReg {
        path: String,
    },
    CellsTooLarge {
        path: String,
        address_cells: u32,
        size_cells: u32,
    },
    /// `path` has a `property` (`reg`, `ranges`) but `parent` declares zero cells for it, so
    /// not one number can be read out of it.
    ZeroCells {
        path: String,
        property: &'static str,
        parent: String,
    },
    BadProperty {
        path: String,
        property: &'static str,
        len: usize,
    },
}

impl From<FdtError> for DtError {
    fn from(e: FdtError) -> Self {
        DtError::Fdt(e)
    }
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtError::Fdt(e) => write!(f, "{e}"),
            DtError::NoMemory => write!(
                f,
                "device tree: no RAM: no root child with device_type = \"memory\" (/memory@...) has a non-empty reg"
            ),
            DtError::NoCpus => write!(
                f,
                "device tree: no CPU: /cpus is missing or has no available child with device_type = \"cpu\""
            ),
            DtError::CpuWithoutReg { path } => write!(f, "device tree: CPU node {path} has no reg"),
            DtError::CellsTooLarge {
                path,
                address_cells,
                size_cells,
            } => write!(
                f,
                "device tree: {path} has #address-cells = {address_cells}, #size-cells = {size_cells}; at most 2 are supported"
            ),
            DtError::ZeroCells {
                path,
                property,
                parent,
            } => write!(
                f,
                "device tree: {path}: property {property} cannot be read: {parent} has #address-cells = 0 and #size-cells = 0"
            ),
            DtError::BadProperty {
                path,
                property,
                len,
            } => {
                write!(
                    f,
                    "device tree: {path}: property {property} has a malformed length of {len} bytes"
                )
            }
        }
    }
}

/// Parse `blob` (any bytes: the front door checks it as it goes) into a [`Machine`].
pub fn parse(blob: &[u8]) -> Result<Machine, DtError> {
    let mut tree = Tree {
        nodes: Vec::new(),
        props: Vec::new(),
        notes: Vec::new(),
    };
    // The node the walk is in: tokens come depth-first, so FDT_END_NODE returns to its parent.
    let mut open: Option<usize> = None;
    let checked = fdt_front::walk(blob, |t| tree.add(t, &mut open))?;

    let compatible = tree.strlist(ROOT, "compatible");
    let model = tree
        .string(ROOT, "model")
        .or_else(|| compatible.first().cloned())
        .unwrap_or_else(|| "unknown".to_owned());
    let ram = tree.ram()?;
    let (mut reserved, no_map) = tree.reserved(checked.reservations())?;
    let mut cpus = tree.cpus()?;
    tree.check_release_addrs(&ram, &mut reserved, &mut cpus);
    let chosen = tree.resolve_path("/chosen");
    let bootargs = chosen
        .and_then(|c| tree.string(c, "bootargs"))
        .unwrap_or_default();
    let console = match chosen {
        Some(c) => tree.console(c)?,
        None => {
            tree.note("no /chosen node: no console (output stays in the early buffer)".to_owned());
            None
        }
    };
    let gic = tree.gic()?;
    let timer = tree.timer();
    let psci = tree.psci();
    Ok(Machine {
        model,
        compatible,
        ram,
        reserved,
        no_map,
        console,
        gic,
        timer,
        psci,
        cpus,
        bootargs,
        notes: tree.notes,
    })
}

const ROOT: usize = 0;
const GICV2_COMPATIBLE: [&str; 3] = ["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a7-gic"];
const GICV3_COMPATIBLE: &str = "arm,gic-v3";

struct Node<'b> {
    /// "" for the root.
    name: &'b str,
    parent: Option<usize>,
    /// Its properties, in blob order: a range of `Tree::props` (the front door lets no property
    /// follow a child node, so a node's properties are contiguous).
    props: Range<usize>,
}

/// The tree flattened in DT order (depth-first), with parent links. Index 0 is the root.
struct Tree<'b> {
    nodes: Vec<Node<'b>>,
    /// Every property as (name, value), node after node.
    props: Vec<(&'b str, &'b [u8])>,
    notes: Vec<String>,
}

fn be_cells(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// `bytes` as a `String`, each invalid UTF-8 sequence replaced by U+FFFD (firmware strings are
/// not trusted to be UTF-8; the usual valid string is copied without the replacement machinery).
fn lossy(bytes: &[u8]) -> String {
    match core::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn u32_of(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

impl<'b> Tree<'b> {
    /// Index one checked token of the walk; `open` is the node the walk is in.
    fn add(&mut self, t: Token<'b>, open: &mut Option<usize>) {
        match t {
            Token::BeginNode(name) => {
                let at = self.props.len();
                self.nodes.push(Node {
                    name,
                    parent: *open,
                    props: at..at,
                });
                *open = Some(self.nodes.len() - 1);
            }
            Token::Prop { name, value, .. } => {
                self.props.push((name, value));
                let end = self.props.len();
                if let Some(n) = open.and_then(|i| self.nodes.get_mut(i)) {
                    n.props.end = end;
                }
            }
            Token::EndNode => *open = open.and_then(|i| self.parent(i)),
        }
    }

    fn parent(&self, idx: usize) -> Option<usize> {
        self.nodes.get(idx)?.parent
    }

    fn name(&self, idx: usize) -> &'b str {
        self.nodes.get(idx).map_or("", |n| n.name)
    }

    /// Children come after their parent in depth-first order.
    fn children(&self, idx: usize) -> impl Iterator<Item = usize> + '_ {
        (idx + 1..self.nodes.len()).filter(move |&i| self.parent(i) == Some(idx))
    }

    /// The value of `idx`'s first property called `name`.
    #[inline(never)]
    fn prop(&self, idx: usize, name: &str) -> Option<&'b [u8]> {
        let range = self.nodes.get(idx)?.props.clone();
        let props = self.props.get(range)?;
        props.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    #[inline(never)]
    fn path(&self, idx: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if i != ROOT {
                parts.push(self.name(i));
            }
            cur = self.parent(i);
        }
        if parts.is_empty() {
            return "/".to_owned();
        }
        parts.iter().rev().fold(String::new(), |s, p| s + "/" + p)
    }

    /// The first string of a string property (lossy: firmware strings are not trusted to be UTF-8).
    #[inline(never)]
    fn string(&self, idx: usize, name: &str) -> Option<String> {
        let v = self.prop(idx, name)?;
        Some(lossy(v.split(|&b| b == 0).next().unwrap_or_default()))
    }

    /// Whether the first string of a string property is `want` (what `string` would return,
    /// compared without making it).
    #[inline(never)]
    fn first_string_is(&self, idx: usize, name: &str, want: &str) -> bool {
        self.prop(idx, name)
            .is_some_and(|v| v.split(|&b| b == 0).next() == Some(want.as_bytes()))
    }

    #[inline(never)]
    fn strlist(&self, idx: usize, name: &str) -> Vec<String> {
        self.prop(idx, name)
            .map(|v| {
                v.split(|&b| b == 0)
                    .filter(|s| !s.is_empty())
                    .map(lossy)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[inline(never)]
    fn is_compatible(&self, idx: usize, with: &[&str]) -> bool {
        self.prop(idx, "compatible").is_some_and(|v| {
            v.split(|&b| b == 0)
                .any(|s| with.iter().any(|w| w.as_bytes() == s))
        })
    }

    #[inline(never)]
    fn available(&self, idx: usize) -> bool {
        match self.prop(idx, "status") {
            None => true,
            Some(v) => matches!(v.split(|&b| b == 0).next(), Some(b"okay" | b"ok")),
        }
    }

    #[inline(never)]
    fn u32_prop(&self, idx: usize, name: &str) -> Option<u32> {
        u32_of(self.prop(idx, name)?)
    }

    /// A `#...-cells` value of `idx`, `default` when absent.
    #[inline(never)]
    fn cell_count(&self, idx: usize, name: &'static str, default: u32) -> Result<u32, DtError> {
        match self.prop(idx, name) {
            None => Ok(default),
            Some(v) => u32_of(v).ok_or_else(|| DtError::BadProperty {
                path: self.path(idx),
                property: name,
                len: v.len(),
            }),
        }
    }

    /// `(#address-cells, #size-cells)` that `idx` declares for its children (defaults 2 and 1),
    /// refused when either does not fit a `u64`.
    #[inline(never)]
    fn child_cells(&self, idx: usize) -> Result<(usize, usize), DtError> {
        let ac = self.cell_count(idx, "#address-cells", 2)?;
        let sc = self.cell_count(idx, "#size-cells", 1)?;
        if ac > 2 || sc > 2 {
            return Err(DtError::CellsTooLarge {
                path: self.path(idx),
                address_cells: ac,
                size_cells: sc,
            });
        }
        Ok((ac as usize, sc as usize))
    }

    /// Split `property` of `idx` into tuples of three numbers of `cells[0]`, `cells[1]` and
    /// `cells[2]` cells (a count of 0 reads as 0: `reg` is a (address, size, 0) tuple).
    #[inline(never)]
    fn tuples(
        &self,
        idx: usize,
        property: &'static str,
        cells: [usize; 3],
    ) -> Result<Option<Vec<[u64; 3]>>, DtError> {
        let Some(v) = self.prop(idx, property) else {
            return Ok(None);
        };
        let width: usize = cells.iter().sum::<usize>() * 4;
        if width == 0 {
            return Err(DtError::ZeroCells {
                path: self.path(idx),
                property,
                parent: self
                    .parent(idx)
                    .map_or_else(|| "/".to_owned(), |p| self.path(p)),
            });
        }
        if v.len() % width != 0 {
            return Err(DtError::BadProperty {
                path: self.path(idx),
                property,
                len: v.len(),
            });
        }
        let mut out = Vec::with_capacity(v.len() / width);
        for t in v.chunks_exact(width) {
            let (a, rest) = t.split_at(cells[0] * 4);
            let (b, c) = rest.split_at(cells[1] * 4);
            out.push([be_cells(a), be_cells(b), be_cells(c)]);
        }
        Ok(Some(out))
    }

    /// The `reg` of `idx` as (address, size) in its parent's address space.
    #[inline(never)]
    fn reg(&self, idx: usize) -> Result<Option<Vec<(u64, u64)>>, DtError> {
        let (ac, sc) = match self.parent(idx) {
            Some(p) => self.child_cells(p)?,
            None => (2, 1),
        };
        let reg = self.tuples(idx, "reg", [ac, sc, 0])?;
        Ok(reg.map(|t| t.into_iter().map(|[addr, size, _]| (addr, size)).collect()))
    }

    /// Translate `addr`, from the address space `idx`'s `reg` is in, to a CPU physical address
    /// through each ancestor bus's `ranges`. `None`: a bus without `ranges` (not memory-mapped) or
    /// an address no range covers.
    #[inline(never)]
    fn translate(&self, idx: usize, mut addr: u64) -> Result<Option<u64>, DtError> {
        let mut child = idx;
        while let Some(bus) = self.parent(child) {
            let Some(grand) = self.parent(bus) else {
                return Ok(Some(addr));
            }; // bus is the root
            let Some(ranges) = self.prop(bus, "ranges") else {
                return Ok(None);
            };
            if !ranges.is_empty() {
                let (cac, csc) = self.child_cells(bus)?;
                let (pac, _) = self.child_cells(grand)?;
                let Some(triples) = self.tuples(bus, "ranges", [cac, pac, csc])? else {
                    return Ok(None);
                };
                let hit = triples.iter().find_map(|&[c, p, size]| {
                    let off = addr.checked_sub(c).filter(|&o| o < size)?;
                    p.checked_add(off)
                });
                match hit {
                    Some(a) => addr = a,
                    None => return Ok(None),
                }
            }
            child = bus;
        }
        Ok(Some(addr)) // idx is the root itself
    }

    /// The translated `reg` ranges of a device, or `None` (with a note) when it has none or they
    /// are not CPU-addressable.
    #[inline(never)]
    fn mmio(&mut self, idx: usize) -> Result<Option<Vec<Region>>, DtError> {
        let Some(reg) = self.reg(idx)? else {
            self.note(format!("{}: no reg", self.path(idx)));
            return Ok(None);
        };
        let mut out = Vec::with_capacity(reg.len());
        for (addr, size) in reg {
            match self.translate(idx, addr)? {
                Some(base) => out.push(Region::new(base, size)),
                None => {
                    self.note(format!(
                        "{}: bus address {addr:#x} is not translatable to a CPU address",
                        self.path(idx)
                    ));
                    return Ok(None);
                }
            }
        }
        Ok(Some(out))
    }

    /// The kernel writes each spin-table CPU's entry point to its `cpu-release-addr` through
    /// the linear map, so that address must be an aligned word in RAM that the frame allocator
    /// never hands out. A CPU whose address is not in RAM or misaligned cannot be started
    /// (`Other("spin-table")`, noted); an address in RAM that firmware forgot to reserve is
    /// reserved here (noted), rather than overwritten later in some unrelated allocation.
    fn check_release_addrs(
        &mut self,
        ram: &[Region],
        reserved: &mut Vec<Region>,
        cpus: &mut [Cpu],
    ) {
        for c in cpus.iter_mut() {
            let EnableMethod::SpinTable { release_addr: a } = c.enable_method else {
                continue;
            };
            let word = Region::new(a, 8);
            let inside = |r: &Region| r.contains(a) && word.last().is_some_and(|l| r.contains(l));
            if !a.is_multiple_of(8) || !ram.iter().any(inside) {
                self.note(format!(
                    "CPU {:#x}: cpu-release-addr {a:#x} is not an aligned word in RAM, this CPU cannot be started",
                    c.mpidr
                ));
                c.enable_method = EnableMethod::Other("spin-table".to_owned());
            } else if !reserved.iter().any(inside) {
                self.note(format!(
                    "CPU {:#x}: cpu-release-addr {a:#x} is not in a reservation: reserved",
                    c.mpidr
                ));
                reserved.push(word);
            }
        }
        reserved.sort_unstable();
    }

    #[inline(never)]
    fn note(&mut self, s: String) {
        self.notes.push(s);
    }

    /// `path` with unit addresses optional ("/soc/serial" matches the first "/soc/serial@...").
    #[inline(never)]
    fn resolve_path(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix('/')?;
        let mut cur = ROOT;
        for part in rest.split('/').filter(|p| !p.is_empty()) {
            cur = self
                .children(cur)
                .find(|&c| self.name(c) == part)
                .or_else(|| {
                    if part.contains('@') {
                        return None;
                    }
                    self.children(cur)
                        .find(|&c| self.name(c).split('@').next() == Some(part))
                })?;
        }
        Some(cur)
    }

    #[inline(never)]
    fn by_phandle(&self, phandle: u32) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.u32_prop(i, "phandle") == Some(phandle)
                || self.u32_prop(i, "linux,phandle") == Some(phandle)
        })
    }

    /// Memory nodes are root children (as Linux scans them).
    fn ram(&mut self) -> Result<Vec<Region>, DtError> {
        let mut ram = Vec::new();
        let memory_nodes: Vec<usize> = self
            .children(ROOT)
            .filter(|&c| self.first_string_is(c, "device_type", "memory"))
            .collect();
        for idx in memory_nodes {
            if !self.available(idx) {
                self.note(format!("{}: disabled, ignored", self.path(idx)));
                continue;
            }
            for (base, size) in self.reg(idx)?.unwrap_or_default() {
                self.push_region(&mut ram, idx, base, size);
            }
        }
        ram.sort_unstable();
        let mut merged: Vec<Region> = Vec::with_capacity(ram.len());
        for r in ram {
            match merged.last_mut() {
                Some(prev) if prev.last().is_some_and(|l| r.base <= l) => {
                    let new_last = prev
                        .last()
                        .unwrap_or(r.base)
                        .max(r.last().unwrap_or(r.base));
                    self.notes.push(format!(
                        "memory {:#x}+{:#x} overlaps {:#x}+{:#x}: merged",
                        r.base, r.size, prev.base, prev.size
                    ));
                    // new_last >= prev.base, and new_last < u64::MAX (see `push_region`), so the
                    // merged region's end is representable too.
                    prev.size = (new_last - prev.base).saturating_add(1);
                }
                _ => merged.push(r),
            }
        }
        if merged.is_empty() {
            return Err(DtError::NoMemory);
        }
        Ok(merged)
    }

    /// Push `base+size` if non-empty, clamping a range whose end does not fit a `u64` so that
    /// `base + size` cannot overflow in any reader (the banner prints it, `mm` compares it): such
    /// a range ends at `u64::MAX`, without the last byte of the address space, where no RAM is.
    #[inline(never)]
    fn push_region(&mut self, out: &mut Vec<Region>, idx: usize, base: u64, size: u64) {
        let mut r = Region::new(base, size);
        if r.end().is_none() {
            r.size = u64::MAX - base;
            self.note(format!(
                "{}: range {base:#x}+{size:#x} wraps past 2^64; clamped to end at {:#x}",
                self.path(idx),
                u64::MAX
            ));
        }
        if r.size == 0 {
            self.note(format!(
                "{}: empty range at {base:#x} dropped",
                self.path(idx)
            ));
            return;
        }
        out.push(r);
    }

    /// The reserved regions, and those of them marked `no-map`.
    fn reserved(
        &mut self,
        memreserve: impl Iterator<Item = (u64, u64)>,
    ) -> Result<(Vec<Region>, Vec<Region>), DtError> {
        let mut out = Vec::new();
        let mut no_map = Vec::new();
        for (base, size) in memreserve {
            self.push_region(&mut out, ROOT, base, size);
        }
        if let Some(rm) = self.resolve_path("/reserved-memory") {
            let kids: Vec<usize> = self.children(rm).collect();
            for idx in kids {
                if !self.available(idx) {
                    self.note(format!("{}: disabled, not reserved", self.path(idx)));
                    continue;
                }
                match self.reg(idx)? {
                    Some(reg) => {
                        let unmapped = self.prop(idx, "no-map").is_some();
                        for (base, size) in reg {
                            let before = out.len();
                            self.push_region(&mut out, idx, base, size);
                            if unmapped && out.len() > before {
                                no_map.push(out[before]);
                            }
                        }
                    }
                    None => self.note(format!(
                        "{}: no reg (dynamically placed pool), not reserved",
                        self.path(idx)
                    )),
                }
            }
        }
        out.sort_unstable();
        no_map.sort_unstable();
        Ok((out, no_map))
    }

    fn cpus(&mut self) -> Result<Vec<Cpu>, DtError> {
        let cpus_node = self.resolve_path("/cpus").ok_or(DtError::NoCpus)?;
        let kids: Vec<usize> = self
            .children(cpus_node)
            .filter(|&c| self.first_string_is(c, "device_type", "cpu"))
            .collect();
        let mut out = Vec::new();
        for idx in kids {
            if !self.available(idx) {
                self.note(format!("{}: not available, ignored", self.path(idx)));
                continue;
            }
            let mpidr = match self.reg(idx)? {
                Some(reg) => match reg.first() {
                    Some(&(addr, _)) => addr,
                    None => {
                        return Err(DtError::BadProperty {
                            path: self.path(idx),
                            property: "reg",
                            len: 0,
                        });
                    }
                },
                None => {
                    return Err(DtError::CpuWithoutReg {
                        path: self.path(idx),
                    });
                }
            };
            let enable_method = match self.string(idx, "enable-method").as_deref() {
                None => {
                    self.note(format!(
                        "{}: no enable-method, this CPU cannot be started",
                        self.path(idx)
                    ));
                    EnableMethod::Missing
                }
                Some("psci") => EnableMethod::Psci,
                Some("spin-table") => match self.prop(idx, "cpu-release-addr") {
                    Some(v) if v.len() == 4 || v.len() == 8 => EnableMethod::SpinTable {
                        release_addr: be_cells(v),
                    },
                    _ => {
                        self.note(format!(
                            "{}: spin-table without a valid cpu-release-addr",
                            self.path(idx)
                        ));
                        EnableMethod::Other("spin-table".to_owned())
                    }
                },
                Some(other) => {
                    self.note(format!(
                        "{}: enable-method \"{other}\" is not supported, this CPU cannot be started",
                        self.path(idx)
                    ));
                    EnableMethod::Other(other.to_owned())
                }
            };
            out.push(Cpu {
                mpidr,
                enable_method,
            });
        }
        if out.is_empty() {
            return Err(DtError::NoCpus);
        }
        Ok(out)
    }

    fn console(&mut self, chosen: usize) -> Result<Option<Console>, DtError> {
        let Some(spec) = self
            .string(chosen, "stdout-path")
            .or_else(|| self.string(chosen, "linux,stdout-path"))
        else {
            self.note(format!(
                "{} has no stdout-path: no console (output stays in the early buffer)",
                self.path(chosen)
            ));
            return Ok(None);
        };
        let (name, options) = match spec.split_once(':') {
            Some((n, o)) => (n, (!o.is_empty()).then(|| o.to_owned())),
            None => (spec.as_str(), None),
        };
        let target = if name.starts_with('/') {
            Some(name.to_owned())
        } else {
            self.resolve_path("/aliases")
                .and_then(|a| self.string(a, name))
        };
        let Some(idx) = target.as_deref().and_then(|p| self.resolve_path(p)) else {
            self.note(format!("stdout-path \"{spec}\" does not resolve to a node"));
            return Ok(None);
        };
        let compatible = self.strlist(idx, "compatible");
        let kind = if compatible.iter().any(|c| c == "arm,pl011") {
            UartKind::Pl011
        } else if compatible.iter().any(|c| c == "brcm,bcm2835-aux-uart") {
            UartKind::Bcm2835Aux
        } else {
            UartKind::Unknown(compatible.first().cloned().unwrap_or_default())
        };
        let Some(&first) = self.mmio(idx)?.as_deref().and_then(|r| r.first()) else {
            self.note(format!("console {}: no usable reg", self.path(idx)));
            return Ok(None);
        };
        let clock_hz = self.u32_prop(idx, "clock-frequency").or_else(|| {
            let clk = self.prop(idx, "clocks")?.get(..4).and_then(u32_of)?;
            self.u32_prop(self.by_phandle(clk)?, "clock-frequency")
        });
        Ok(Some(Console {
            path: self.path(idx),
            kind,
            base: first.base,
            size: first.size,
            options,
            clock_hz,
        }))
    }

    fn gic_version(&self, idx: usize) -> Option<GicVersion> {
        if self.is_compatible(idx, &GICV2_COMPATIBLE) {
            Some(GicVersion::V2)
        } else if self.is_compatible(idx, &[GICV3_COMPATIBLE]) {
            Some(GicVersion::V3)
        } else {
            None
        }
    }

    /// The root `interrupt-parent`, or the first GIC by compatible when that is absent or no GIC.
    fn gic(&mut self) -> Result<Option<Gic>, DtError> {
        let by_parent = self
            .u32_prop(ROOT, "interrupt-parent")
            .and_then(|ph| self.by_phandle(ph));
        let idx = match by_parent {
            Some(i) if self.gic_version(i).is_some() => Some(i),
            other => {
                if let Some(i) = other {
                    self.note(format!(
                        "root interrupt-parent {} is not a known GIC",
                        self.path(i)
                    ));
                }
                (0..self.nodes.len()).find(|&i| self.gic_version(i).is_some() && self.available(i))
            }
        };
        let Some(idx) = idx else {
            self.note("no GICv2/GICv3 node".to_owned());
            return Ok(None);
        };
        let version = self.gic_version(idx).unwrap_or(GicVersion::V2);
        match self.mmio(idx)?.as_deref() {
            Some([dist, cpu_or_redist, ..]) => Ok(Some(Gic {
                version,
                dist: *dist,
                cpu_or_redist: *cpu_or_redist,
            })),
            _ => {
                self.note(format!("GIC {}: fewer than two reg ranges", self.path(idx)));
                Ok(None)
            }
        }
    }

    /// The interrupt controller `idx`'s `interrupts` refer to: its own or an ancestor's
    /// `interrupt-parent`.
    fn interrupt_parent(&self, idx: usize) -> Option<usize> {
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if let Some(ph) = self.u32_prop(i, "interrupt-parent") {
                return self.by_phandle(ph);
            }
            cur = self.parent(i);
        }
        None
    }

    fn timer(&mut self) -> Option<Timer> {
        let idx = (0..self.nodes.len()).find(|&i| {
            self.is_compatible(i, &["arm,armv8-timer", "arm,armv7-timer"]) && self.available(i)
        })?;
        let frequency = self.u32_prop(idx, "clock-frequency");
        let cells = self
            .interrupt_parent(idx)
            .and_then(|p| self.u32_prop(p, "#interrupt-cells"));
        let mut ppi = |n: usize| -> Option<u32> {
            let v = self.prop(idx, "interrupts")?;
            // (type, number, flags) triples: secure phys, non-secure phys, virt, hyp.
            let t = v.chunks_exact(12).nth(n)?;
            let (ty, num) = (u32_of(t.get(..4)?)?, u32_of(t.get(4..8)?)?);
            if ty != 1 {
                self.notes
                    .push(format!("timer interrupt {n} is not a PPI (type {ty})"));
                return None;
            }
            num.checked_add(16)
        };
        if cells != Some(3) {
            self.notes.push(format!(
                "timer: interrupt parent has #interrupt-cells {cells:?}, expected 3"
            ));
            return Some(Timer {
                virt_irq: None,
                phys_irq: None,
                frequency,
            });
        }
        let phys_irq = ppi(1);
        let virt_irq = ppi(2);
        Some(Timer {
            virt_irq,
            phys_irq,
            frequency,
        })
    }

    fn psci(&mut self) -> Option<Psci> {
        let idx = (0..self.nodes.len()).find(|&i| {
            self.available(i)
                && self
                    .prop(i, "compatible")
                    .is_some_and(|v| v.split(|&b| b == 0).any(|s| s.starts_with(b"arm,psci")))
        })?;
        match self.string(idx, "method").as_deref() {
            Some("hvc") => Some(Psci {
                method: PsciMethod::Hvc,
            }),
            Some("smc") => Some(Psci {
                method: PsciMethod::Smc,
            }),
            other => {
                self.note(format!("{}: unknown PSCI method {other:?}", self.path(idx)));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fdt_front::tests::{
        VIRT_EL2, VIRT_GICV2, VIRT_GICV3, begin, build, end, end_node, prop,
    };
    use crate::util::rng::Rng;
    use alloc::vec;

    const RPI4_DTB: &[u8] = include_bytes!("../../tests/data/bcm2711-rpi-4-b.dtb");
    const QEMU_RPI4_DTB: &[u8] = include_bytes!("../../tests/data/qemu-raspi4b-rpi-dtb.dtb");

    fn check_virt(m: &Machine, gic: Gic, psci: PsciMethod) {
        assert_eq!(m.model, "linux,dummy-virt");
        assert_eq!(m.compatible, vec!["linux,dummy-virt"]);
        assert_eq!(m.ram, vec![Region::new(0x4000_0000, 1 << 30)]);
        assert_eq!(m.reserved, vec![]);
        assert_eq!(m.cpus.len(), 4);
        for (i, cpu) in m.cpus.iter().enumerate() {
            assert_eq!(cpu.mpidr, i as u64);
            assert_eq!(cpu.enable_method, EnableMethod::Psci);
        }
        assert_eq!(m.psci, Some(Psci { method: psci }));
        assert_eq!(m.gic, Some(gic));
        let c = m.console.as_ref().unwrap();
        assert_eq!(
            (c.kind.clone(), c.base, c.size),
            (UartKind::Pl011, 0x0900_0000, 0x1000)
        );
        assert_eq!(c.path, "/pl011@9000000");
        assert_eq!(c.options, None);
        assert_eq!(c.clock_hz, Some(24_000_000));
        let t = m.timer.unwrap();
        assert_eq!(
            (t.virt_irq, t.phys_irq, t.frequency),
            (Some(27), Some(30), None)
        );
        assert_eq!(m.bootargs, "");
    }

    #[test]
    fn qemu_virt_gicv2() {
        let m = parse(VIRT_GICV2).unwrap();
        let gic = Gic {
            version: GicVersion::V2,
            dist: Region::new(0x0800_0000, 0x1_0000),
            cpu_or_redist: Region::new(0x0801_0000, 0x1_0000),
        };
        check_virt(&m, gic, PsciMethod::Hvc);
    }

    #[test]
    fn qemu_virt_gicv3() {
        let m = parse(VIRT_GICV3).unwrap();
        let gic = Gic {
            version: GicVersion::V3,
            dist: Region::new(0x0800_0000, 0x1_0000),
            cpu_or_redist: Region::new(0x080a_0000, 0xf6_0000),
        };
        check_virt(&m, gic, PsciMethod::Hvc);
    }

    #[test]
    fn qemu_virt_el2_uses_smc() {
        let m = parse(VIRT_EL2).unwrap();
        assert_eq!(
            m.psci,
            Some(Psci {
                method: PsciMethod::Smc
            })
        );
        let gic = m.gic.unwrap();
        check_virt(&m, gic, PsciMethod::Smc);
    }

    fn check_rpi4_common(m: &Machine) {
        assert_eq!(m.model, "Raspberry Pi 4 Model B");
        assert_eq!(m.compatible, vec!["raspberrypi,4-model-b", "brcm,bcm2711"]);
        let c = m.console.as_ref().unwrap();
        assert_eq!(c.path, "/soc/serial@7e215040");
        assert_eq!(
            (c.kind.clone(), c.base, c.size),
            (UartKind::Bcm2835Aux, 0xfe21_5040, 0x40)
        );
        assert_eq!(c.options.as_deref(), Some("115200n8"));
        assert_eq!(c.clock_hz, None);
        assert_eq!(
            m.gic,
            Some(Gic {
                version: GicVersion::V2,
                dist: Region::new(0xff84_1000, 0x1000),
                cpu_or_redist: Region::new(0xff84_2000, 0x2000),
            })
        );
        let rel: Vec<_> = m
            .cpus
            .iter()
            .map(|c| (c.mpidr, c.enable_method.clone()))
            .collect();
        assert_eq!(
            rel,
            (0..4u64)
                .map(|i| (
                    i,
                    EnableMethod::SpinTable {
                        release_addr: 0xd8 + 8 * i
                    }
                ))
                .collect::<Vec<_>>()
        );
        assert_eq!(m.psci, None);
        let t = m.timer.unwrap();
        assert_eq!((t.virt_irq, t.phys_irq), (Some(27), Some(30)));
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("linux,cma") && n.contains("no reg")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn qemu_raspi4b_blob() {
        // QEMU's copy has ~300 FDT_NOPs (fdt 0.1.5 alone panics on it) and a filled memory node.
        assert!(fdt::Fdt::new(QEMU_RPI4_DTB).is_ok());
        let m = parse(QEMU_RPI4_DTB).unwrap();
        check_rpi4_common(&m);
        assert_eq!(m.ram, vec![Region::new(0, 0x3c00_0000)]);
        // QEMU's /memreserve/ for the spin-table page.
        assert_eq!(m.reserved, vec![Region::new(0, 0x1000)]);
    }

    #[test]
    fn shipped_rpi4_blob_has_no_ram_until_firmware_fills_it() {
        assert_eq!(parse(RPI4_DTB), Err(DtError::NoMemory));
    }

    /// A tiny tree: root (2/1 cells) with /cpus and a memory node built from `extra` tokens.
    fn tiny(cpus: &[Vec<u8>], extra: &[Vec<u8>]) -> Vec<u8> {
        // Strings: 0 "#address-cells", 15 "#size-cells", 27 "reg", 31 "device_type"
        let strings = b"#address-cells\0#size-cells\0reg\0device_type\0";
        let mut s = vec![begin("")];
        s.push(begin("cpus"));
        s.push(prop(0, &1u32.to_be_bytes()));
        s.push(prop(15, &0u32.to_be_bytes()));
        s.extend_from_slice(cpus);
        s.push(end_node());
        s.extend_from_slice(extra);
        s.push(end_node());
        s.push(end());
        build(&s.concat(), strings)
    }

    fn cpu(reg: Option<&[u8]>) -> Vec<u8> {
        let mut v = vec![begin("cpu@0"), prop(31, b"cpu\0")];
        if let Some(r) = reg {
            v.push(prop(27, r));
        }
        v.push(end_node());
        v.concat()
    }

    fn memory(reg: &[u8]) -> Vec<u8> {
        [
            begin("memory@0"),
            prop(31, b"memory\0"),
            prop(27, reg),
            end_node(),
        ]
        .concat()
    }

    fn cells(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    #[test]
    fn no_map_reservations_are_kept_apart() {
        // Strings: 0 "#address-cells", 15 "#size-cells", 27 "reg", 31 "device_type", 43 "no-map"
        let strings = b"#address-cells\0#size-cells\0reg\0device_type\0no-map\0";
        let s = [
            begin(""),
            begin("cpus"),
            prop(0, &1u32.to_be_bytes()),
            prop(15, &0u32.to_be_bytes()),
            cpu(Some(&cells(&[0]))),
            end_node(),
            memory(&cells(&[0, 0x4000_0000, 0x4000_0000])),
            begin("reserved-memory"),
            prop(0, &2u32.to_be_bytes()),
            prop(15, &1u32.to_be_bytes()),
            begin("secure@48000000"),
            prop(27, &cells(&[0, 0x4800_0000, 0x20_0000])),
            prop(43, &[]),
            end_node(),
            begin("pool@50000000"),
            prop(27, &cells(&[0, 0x5000_0000, 0x10_0000])),
            end_node(),
            end_node(),
            end_node(),
            end(),
        ];
        let m = parse(&build(&s.concat(), strings)).unwrap();
        assert_eq!(
            m.reserved,
            vec![
                Region::new(0x1000, 0x2000), // the /memreserve/ entry `build` adds
                Region::new(0x4800_0000, 0x20_0000),
                Region::new(0x5000_0000, 0x10_0000)
            ]
        );
        assert_eq!(m.no_map, vec![Region::new(0x4800_0000, 0x20_0000)]);
    }

    #[test]
    fn sanity_errors() {
        let mem = memory(&cells(&[0, 0x8000_0000, 0x1000_0000]));
        let m = parse(&tiny(
            &[cpu(Some(&cells(&[0x100])))],
            core::slice::from_ref(&mem),
        ))
        .unwrap();
        assert_eq!(
            m.cpus,
            vec![Cpu {
                mpidr: 0x100,
                enable_method: EnableMethod::Missing
            }]
        );
        assert_eq!(m.model, "unknown");
        assert_eq!(m.reserved, vec![Region::new(0x1000, 0x2000)]);
        assert_eq!(
            parse(&tiny(&[cpu(Some(&cells(&[0])))], &[])),
            Err(DtError::NoMemory)
        );
        assert_eq!(
            parse(&tiny(&[], core::slice::from_ref(&mem))),
            Err(DtError::NoCpus)
        );
        assert_eq!(
            parse(&tiny(&[cpu(None)], core::slice::from_ref(&mem))),
            Err(DtError::CpuWithoutReg {
                path: "/cpus/cpu@0".into()
            })
        );
        // `reg` of 5 bytes in a 2+1-cell space.
        assert_eq!(
            parse(&tiny(
                &[cpu(Some(&cells(&[0])))],
                &[memory(b"\0\0\0\0\x01")]
            )),
            Err(DtError::BadProperty {
                path: "/memory@0".into(),
                property: "reg",
                len: 5
            })
        );
    }

    #[test]
    fn three_cell_addresses_are_refused_naming_the_node() {
        // /cpus with #address-cells = 3.
        let strings = b"#address-cells\0#size-cells\0reg\0device_type\0";
        let s = [
            begin(""),
            begin("cpus"),
            prop(0, &cells(&[3])),
            prop(15, &cells(&[0])),
            cpu(Some(&cells(&[0, 0, 0]))),
            end_node(),
            memory(&cells(&[0, 0x8000_0000, 0x1000])),
            end_node(),
            end(),
        ];
        let err = parse(&build(&s.concat(), strings)).unwrap_err();
        assert_eq!(
            err,
            DtError::CellsTooLarge {
                path: "/cpus".into(),
                address_cells: 3,
                size_cells: 0
            }
        );
        assert!(format!("{err}").contains("/cpus"));
    }

    #[test]
    fn overlapping_ram_is_merged_and_noted() {
        let mem = memory(&cells(&[
            0, 0x1000, 0x3000, 0, 0x0, 0x800, 0, 0x2000, 0x4000, 0, 0x9000, 0,
        ]));
        let m = parse(&tiny(&[cpu(Some(&cells(&[0])))], &[mem])).unwrap();
        assert_eq!(
            m.ram,
            vec![Region::new(0, 0x800), Region::new(0x1000, 0x5000)]
        );
        assert!(m.notes.iter().any(|n| n.contains("overlaps")));
        assert!(m.notes.iter().any(|n| n.contains("empty range")));
        // A range wrapping past 2^64 is clamped at the top, not wrapped to 0.
        let mem = memory(&cells(&[0xffff_ffff, 0xffff_f000, 0x2000, 0, 0, 0x1000]));
        let m = parse(&tiny(&[cpu(Some(&cells(&[0])))], &[mem])).unwrap();
        assert_eq!(
            m.ram,
            vec![
                Region::new(0, 0x1000),
                Region::new(0xffff_ffff_ffff_f000, 0xfff)
            ]
        );
        assert!(m.notes.iter().any(|n| n.contains("wraps")));
        assert!(m.ram.iter().all(|r| r.end().is_some()));
    }

    /// What `parse` made of the blob before it read the blob in one walk: the front door's
    /// compact copy, read again.
    fn parse_via_sanitized_copy(blob: &[u8]) -> Result<Machine, DtError> {
        parse(&fdt_front::sanitize(blob)?)
    }

    /// One walk of the blob itself reads exactly what a walk of its sanitized copy reads: the
    /// same machine, or the same refusal. (The copy has no NOPs, no padding, another layout.)
    #[test]
    fn parse_reads_a_blob_as_it_reads_its_sanitized_copy() {
        for blob in [VIRT_GICV2, VIRT_GICV3, VIRT_EL2, QEMU_RPI4_DTB, RPI4_DTB] {
            assert_eq!(parse(blob), parse_via_sanitized_copy(blob));
        }
    }

    #[test]
    fn corrupted_blobs_never_panic() {
        let mut rng = Rng::new(0x1234_5678_9abc_def1);
        let virt = fdt_front::sanitize(VIRT_GICV3).unwrap();
        let mut oks = 0;
        let mut errs = 0;
        // Each blob is also read through its sanitized copy: the one walk must agree.
        let mut tally = |b: &[u8]| match parse(b) {
            r if r != parse_via_sanitized_copy(b) => {
                panic!("{r:?} for a blob whose copy reads differently")
            }
            Ok(_) => oks += 1,
            Err(_) => errs += 1,
        };
        for base in [virt.as_slice(), QEMU_RPI4_DTB] {
            for _ in 0..1000 {
                let mut b = base.to_vec();
                // One to three byte changes; half of them in the header or near offsets.
                for _ in 0..=(rng.next_u64() % 3) {
                    let pos = if rng.next_u64().is_multiple_of(4) {
                        (rng.next_u64() % 48) as usize
                    } else {
                        (rng.next_u64() as usize) % b.len()
                    };
                    b[pos] = match rng.next_u64() % 4 {
                        0 => 0,
                        1 => 0xff,
                        2 => b[pos] ^ (1 << (rng.next_u64() % 8)),
                        _ => rng.next_u64() as u8,
                    };
                }
                tally(&b);
            }
            for _ in 0..100 {
                let len = (rng.next_u64() as usize) % (base.len() + 1);
                tally(&base[..len]);
            }
        }
        // Cut the structure block itself short (header kept consistent) at many lengths.
        let off = u32::from_be_bytes(virt[8..12].try_into().unwrap()) as usize;
        let strings_off = u32::from_be_bytes(virt[12..16].try_into().unwrap()) as usize;
        let structure = &virt[off..strings_off];
        for _ in 0..200 {
            let cut = (rng.next_u64() as usize) % structure.len();
            tally(&build(&structure[..cut], &virt[strings_off..]));
        }
        // Both outcomes must occur, or the test proves nothing.
        assert!(oks > 100 && errs > 100, "ok {oks}, err {errs}");
    }

    /// Strings for `nonsense`: "#address-cells" 0, "#size-cells" 15, "reg" 27, "device_type" 31,
    /// "stdout-path" 43, "enable-method" 55.
    const NONSENSE_STRINGS: &[u8] =
        b"#address-cells\0#size-cells\0reg\0device_type\0stdout-path\0enable-method\0";

    /// A tree whose root declares `root_cells` (#address-cells, #size-cells) and holds `parts`.
    fn nonsense(root_cells: (u32, u32), parts: &[Vec<u8>]) -> Vec<u8> {
        let mut s = vec![
            begin(""),
            prop(0, &cells(&[root_cells.0])),
            prop(15, &cells(&[root_cells.1])),
        ];
        s.extend_from_slice(parts);
        s.push(end_node());
        s.push(end());
        build(&s.concat(), NONSENSE_STRINGS)
    }

    fn cpus_node(cpus: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![begin("cpus"), prop(0, &cells(&[1])), prop(15, &cells(&[0]))];
        v.extend_from_slice(cpus);
        v.push(end_node());
        v.concat()
    }

    fn psci_cpu(n: u32) -> Vec<u8> {
        [
            begin(&format!("cpu@{n}")),
            prop(31, b"cpu\0"),
            prop(27, &cells(&[n])),
            prop(55, b"psci\0"),
            end_node(),
        ]
        .concat()
    }

    fn chosen(stdout: Option<&str>) -> Vec<u8> {
        let mut v = vec![begin("chosen")];
        if let Some(p) = stdout {
            v.push(prop(43, format!("{p}\0").as_bytes()));
        }
        v.push(end_node());
        v.concat()
    }

    /// Issue 7: a DTB that makes no sense yields a message naming what is wrong (the node), and
    /// parse either carries on with what it can use (and a note the banner prints) or refuses.
    #[test]
    fn nonsense_trees_are_named_precisely() {
        let mem = memory(&cells(&[0, 0x4000_0000, 0, 0x1000_0000]));
        let cpus = cpus_node(&[psci_cpu(0)]);
        let msg = |b: &[u8]| format!("{}", parse(b).unwrap_err());

        // The baseline is fine and quiet about CPUs and the console.
        let ok = parse(&nonsense(
            (2, 2),
            &[cpus.clone(), mem.clone(), chosen(Some("/memory@0"))],
        ))
        .unwrap();
        assert_eq!(ok.ram, vec![Region::new(0x4000_0000, 0x1000_0000)]);
        assert!(
            ok.notes.iter().all(|n| !n.contains("cpu@")),
            "{:?}",
            ok.notes
        );

        // No memory: refused, the message says which nodes were looked for.
        let no_mem = nonsense((2, 2), &[cpus.clone(), chosen(None)]);
        assert_eq!(parse(&no_mem), Err(DtError::NoMemory));
        assert!(msg(&no_mem).contains("device_type = \"memory\" (/memory@...)"));

        // No CPUs: neither a /cpus node nor a cpu child of it.
        for parts in [vec![mem.clone()], vec![cpus_node(&[]), mem.clone()]] {
            let b = nonsense((2, 2), &parts);
            assert_eq!(parse(&b), Err(DtError::NoCpus));
            assert!(msg(&b).contains("/cpus is missing or has no available child"));
        }

        // No console: parse succeeds with console None and a note naming /chosen.
        for (parts, note) in [
            (
                vec![cpus.clone(), mem.clone()],
                "no /chosen node: no console",
            ),
            (
                vec![cpus.clone(), mem.clone(), chosen(None)],
                "/chosen has no stdout-path: no console",
            ),
            (
                vec![cpus.clone(), mem.clone(), chosen(Some("serial0"))],
                "stdout-path \"serial0\" does not resolve to a node",
            ),
        ] {
            let m = parse(&nonsense((2, 2), &parts)).unwrap();
            assert_eq!(m.console, None);
            assert!(m.notes.iter().any(|n| n.contains(note)), "{:?}", m.notes);
        }

        // A CPU without enable-method (and one with an unknown one) is kept, noted by path.
        let odd_cpu = [
            begin("cpu@1"),
            prop(31, b"cpu\0"),
            prop(27, &cells(&[1])),
            prop(55, b"acme,kick\0"),
            end_node(),
        ]
        .concat();
        let b = nonsense(
            (2, 2),
            &[
                cpus_node(&[psci_cpu(0), odd_cpu, cpu(Some(&cells(&[2])))]),
                mem.clone(),
            ],
        );
        let m = parse(&b).unwrap();
        assert_eq!(
            m.cpus
                .iter()
                .map(|c| c.enable_method.clone())
                .collect::<Vec<_>>(),
            vec![
                EnableMethod::Psci,
                EnableMethod::Other("acme,kick".into()),
                EnableMethod::Missing
            ]
        );
        assert!(
            m.notes
                .contains(&"/cpus/cpu@0: no enable-method, this CPU cannot be started".into())
        );
        assert!(m.notes.contains(
            &"/cpus/cpu@1: enable-method \"acme,kick\" is not supported, this CPU cannot be started"
                .into()
        ));

        // Overlapping RAM banks are merged and the overlap noted (the reservation block of
        // `build` reserves 0x1000+0x2000, outside RAM: kept, `mm` ignores what is not RAM).
        let overlapping = memory(&cells(&[
            0,
            0x4000_0000,
            0,
            0x2000,
            0,
            0x4000_1000,
            0,
            0x2000,
        ]));
        let m = parse(&nonsense((2, 2), &[cpus.clone(), overlapping])).unwrap();
        assert_eq!(m.ram, vec![Region::new(0x4000_0000, 0x3000)]);
        assert!(
            m.notes
                .contains(&"memory 0x40001000+0x2000 overlaps 0x40000000+0x2000: merged".into()),
            "{:?}",
            m.notes
        );

        // Cells of unusual size: 0 and 0 leave reg unreadable; 3 and 4 do not fit a u64.
        let b = nonsense((0, 0), &[cpus.clone(), memory(&cells(&[0x4000_0000]))]);
        let err = parse(&b).unwrap_err();
        assert_eq!(
            err,
            DtError::ZeroCells {
                path: "/memory@0".into(),
                property: "reg",
                parent: "/".into()
            }
        );
        assert_eq!(
            format!("{err}"),
            "device tree: /memory@0: property reg cannot be read: / has #address-cells = 0 and #size-cells = 0"
        );
        // #address-cells = 0 with a size: the address is 0, what the tree says; usable.
        let m = parse(&nonsense(
            (0, 1),
            &[cpus.clone(), memory(&cells(&[0x1000]))],
        ))
        .unwrap();
        assert_eq!(m.ram, vec![Region::new(0, 0x1000)]);
        for (ac, sc) in [(3, 2), (2, 3), (4, 4)] {
            let reg = cells(&vec![0; (ac + sc) as usize]);
            let b = nonsense((ac, sc), &[cpus.clone(), memory(&reg)]);
            assert_eq!(
                parse(&b),
                Err(DtError::CellsTooLarge {
                    path: "/".into(),
                    address_cells: ac,
                    size_cells: sc
                })
            );
            assert!(msg(&b).starts_with(&format!(
                "device tree: / has #address-cells = {ac}, #size-cells = {sc}"
            )));
        }
    }

    #[test]
    fn spin_table_release_addresses_must_be_reserved_ram() {
        // "cpu-release-addr" is at 69 in this strings block.
        let strings = b"#address-cells\0#size-cells\0reg\0device_type\0stdout-path\0enable-method\0cpu-release-addr\0";
        let spin = |n: u32, addr: u64| {
            [
                begin(&format!("cpu@{n}")),
                prop(31, b"cpu\0"),
                prop(27, &cells(&[n])),
                prop(55, b"spin-table\0"),
                prop(69, &addr.to_be_bytes()),
                end_node(),
            ]
            .concat()
        };
        let s = [
            begin(""),
            prop(0, &cells(&[2])),
            prop(15, &cells(&[2])),
            cpus_node(&[
                spin(0, 0x1008),      // in build()'s /memreserve/ 0x1000+0x2000: fine
                spin(1, 0x8000),      // RAM, not reserved: reserved now
                spin(2, 0x8004),      // misaligned
                spin(3, 0x9000_0000), // not RAM
            ]),
            memory(&cells(&[0, 0, 0, 0x1000_0000])),
            end_node(),
            end(),
        ];
        let m = parse(&build(&s.concat(), strings)).unwrap();
        let methods: Vec<_> = m.cpus.iter().map(|c| c.enable_method.clone()).collect();
        let bad = EnableMethod::Other("spin-table".into());
        assert_eq!(
            methods,
            vec![
                EnableMethod::SpinTable {
                    release_addr: 0x1008
                },
                EnableMethod::SpinTable {
                    release_addr: 0x8000
                },
                bad.clone(),
                bad
            ]
        );
        assert_eq!(
            m.reserved,
            vec![Region::new(0x1000, 0x2000), Region::new(0x8000, 8)]
        );
        for n in [
            "CPU 0x1: cpu-release-addr 0x8000 is not in a reservation: reserved",
            "CPU 0x2: cpu-release-addr 0x8004 is not an aligned word in RAM, this CPU cannot be started",
            "CPU 0x3: cpu-release-addr 0x90000000 is not an aligned word in RAM, this CPU cannot be started",
        ] {
            assert!(m.notes.contains(&n.into()), "{n} not in {:?}", m.notes);
        }
    }

    /// Every input the fuzzer (`just fuzz`) found a bug with, through the kernel's path (one
    /// walk of the blob as the loader left it), which must read it as its sanitized copy reads.
    #[test]
    fn fuzz_regressions() {
        let boot_path = |blob: &[u8]| {
            let m = parse(blob);
            assert_eq!(m, parse_via_sanitized_copy(blob));
            m
        };

        // The seed "overlapping-regions": RAM and /memreserve/ ranges ending past 2^64 were
        // clamped to end exactly at 2^64, so the banner's `base + size` overflowed.
        let m = boot_path(include_bytes!(
            "../../tests/fuzz/regressions/region-end-overflows.dtb"
        ))
        .unwrap();
        let top = Region::new(0xffff_ffff_ffff_f000, 0xfff);
        assert_eq!(m.ram, vec![Region::new(0x4000_0000, 0x5000_0000), top]);
        assert_eq!(
            m.reserved,
            vec![
                Region::new(0x4000_0000, 0x1000),
                Region::new(0x4000_0000, 0x10_0000),
                Region::new(0x4000_0800, 0x1000),
                Region::new(0x4008_0000, 0x10_0000),
                top
            ]
        );
        for r in m.ram.iter().chain(&m.reserved) {
            assert!(r.end().is_some(), "{r:?}");
        }
    }
}
