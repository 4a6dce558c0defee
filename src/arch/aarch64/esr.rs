//! Decoding of ESR_EL1 (Exception Syndrome Register) into words a kernel engineer reads.
//!
//! Pure logic: unit-tested on the host.

use core::fmt;

/// An exception syndrome as read from ESR_EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class, ESR\[31:26\].
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Instruction-specific syndrome, ESR\[24:0\].
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// The exception class by name.
    pub fn class_name(self) -> &'static str {
        match self.ec() {
            0x00 => "unknown reason",
            0x01 => "trapped WFI/WFE",
            0x07 => "trapped SVE/SIMD/FP access",
            0x0e => "illegal execution state",
            0x15 => "SVC from AArch64",
            0x16 => "HVC from AArch64",
            0x17 => "SMC from AArch64",
            0x18 => "trapped MSR/MRS/system instruction",
            0x19 => "trapped SVE access",
            0x20 => "instruction abort from a lower EL",
            0x21 => "instruction abort (same EL)",
            0x22 => "PC alignment fault",
            0x24 => "data abort from a lower EL",
            0x25 => "data abort (same EL)",
            0x26 => "SP alignment fault",
            0x28 | 0x2c => "trapped floating-point exception",
            0x2f => "SError",
            0x30 | 0x31 => "breakpoint",
            0x32 | 0x33 => "software step",
            0x34 | 0x35 => "watchpoint",
            0x3c => "BRK instruction",
            _ => "reserved/unhandled exception class",
        }
    }

    /// Instruction or data abort (either EL).
    pub const fn is_abort(self) -> bool {
        matches!(self.ec(), 0x20 | 0x21 | 0x24 | 0x25)
    }

    /// Data abort (either EL): a load or store faulted, not an instruction fetch.
    pub const fn is_data_abort(self) -> bool {
        matches!(self.ec(), 0x24 | 0x25)
    }

    /// For a data abort: the access was a write (ISS.WnR).
    pub const fn is_write(self) -> bool {
        self.is_data_abort() && (self.iss() & (1 << 6)) != 0
    }

    /// For aborts: the fault status code, DFSC/IFSC = ISS\[5:0\].
    pub const fn fault_status(self) -> u8 {
        (self.iss() & 0x3f) as u8
    }

    /// For aborts: is FAR_EL1 valid (ISS.FnV clear)?
    pub const fn far_valid(self) -> bool {
        self.is_abort() && (self.iss() & (1 << 10)) == 0
    }

    /// An SError interrupt (EC 0x2f): an asynchronous abort, not caused by the instruction at ELR.
    pub const fn is_serror(self) -> bool {
        self.ec() == 0x2f
    }

    /// For an SError interrupt: its syndrome, decoded (`None` for any other class).
    pub const fn serror(self) -> Option<SError> {
        if !self.is_serror() {
            return None;
        }
        let iss = self.iss();
        if iss & (1 << 24) != 0 {
            return Some(SError::ImplementationDefined(iss & 0xff_ffff));
        }
        Some(match self.fault_status() {
            0b00_0000 => SError::Uncategorized,
            0b01_0001 => SError::Asynchronous {
                aet: Aet::from_bits(((iss >> 10) & 7) as u8),
                ea: iss & (1 << 9) != 0,
                iesb: iss & (1 << 13) != 0,
            },
            dfsc => SError::Reserved(dfsc),
        })
    }

    /// For aborts: what kind of fault, by name (translation, permission, ...) and its level.
    pub fn fault_kind(self) -> FaultKind {
        let fsc = self.fault_status();
        let level = (fsc & 3) as i8;
        match fsc {
            0x00..=0x03 => FaultKind::AddressSize(level),
            0x04..=0x07 => FaultKind::Translation(level),
            0x09..=0x0b => FaultKind::AccessFlag(level),
            0x0d..=0x0f => FaultKind::Permission(level),
            0x10 => FaultKind::SyncExternal,
            0x21 => FaultKind::Alignment,
            0x30 => FaultKind::TlbConflict,
            _ => FaultKind::Other(fsc),
        }
    }
}

/// Is a data abort taken at EL1 a *spurious* translation fault, to be retried rather than
/// reported? Linux's `is_spurious_el1_translation_fault` (arch/arm64/mm/fault.c), as a pure
/// decision: `at_s1e1r` runs `at s1e1r` on the faulting address and returns `PAR_EL1`.
///
/// On a CPU without FEAT_ETS2 (the Pi 4's Cortex-A72 is Armv8.0) a table walk is not ordered
/// after an earlier Acquire load. CPU A maps a page and publishes its address; CPU B loads the
/// address with Acquire and reads the page, but its walk may still see the old, invalid
/// descriptor and take a translation fault on a mapping that exists. Walking again now answers:
/// - the walk succeeds (`PAR_EL1.F` = 0): the fault was spurious, retry the access;
/// - it fails with a translation fault: genuine, report it;
/// - it fails with another fault (permission, say): what the retry will take, so retry and let
///   that fault be reported with its own syndrome, as Linux does.
///
/// Only data aborts taken at EL1 (EC 0x25) with a valid FAR in the kernel (TTBR1) half
/// qualify: instruction aborts are excluded as in Linux (kernel text is mapped before any CPU
/// runs it), and the lower half is never mapped after boot.
pub fn is_spurious_translation_fault(
    esr: Esr,
    far: u64,
    at_s1e1r: impl FnOnce(u64) -> u64,
) -> bool {
    let kernel_half = far >> 48 == 0xffff;
    if esr.ec() != 0x25
        || !esr.far_valid()
        || !kernel_half
        || !matches!(esr.fault_kind(), FaultKind::Translation(_))
    {
        return false;
    }
    let par = at_s1e1r(far);
    if par & 1 == 0 {
        return true;
    }
    // PAR_EL1.FST, bits [6:1], uses the fault status encoding of ESR's DFSC.
    let fst = Esr(0x25 << 26 | ((par >> 1) & 0x3f));
    !matches!(fst.fault_kind(), FaultKind::Translation(_))
}

/// The decoded fault status code of an abort.
///
/// The `i8` is the translation-table level (0..=3) at which the walk faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// An output or table address was wider than the configured physical address size.
    AddressSize(i8),
    /// No valid descriptor: the address is not mapped.
    Translation(i8),
    /// The descriptor's access flag (AF) is clear.
    AccessFlag(i8),
    /// The mapping forbids this access (a write to read-only, a fetch from execute-never).
    Permission(i8),
    /// The memory system answered the access with an external abort.
    SyncExternal,
    /// An unaligned access where the memory type or instruction requires alignment.
    Alignment,
    /// Two TLB entries matched the address.
    TlbConflict,
    /// Any other fault status code, raw.
    Other(u8),
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize(l) => write!(f, "address size fault, level {l}"),
            Self::Translation(l) => write!(f, "translation fault, level {l} (not mapped)"),
            Self::AccessFlag(l) => write!(f, "access flag fault, level {l}"),
            Self::Permission(l) => write!(f, "permission fault, level {l}"),
            Self::SyncExternal => f.write_str("synchronous external abort"),
            Self::Alignment => f.write_str("alignment fault"),
            Self::TlbConflict => f.write_str("TLB conflict abort"),
            Self::Other(c) => write!(f, "fault status {c:#04x}"),
        }
    }
}

/// The syndrome of an SError interrupt: ESR_ELx's ISS for EC 0x2f as the Arm architecture
/// defines it. The classification (AET, EA, IESB) comes with the RAS extension (FEAT_RAS); a core
/// without it, such as the Pi 4's Cortex-A72, reports an uncategorized error or an
/// IMPLEMENTATION DEFINED syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SError {
    /// IDS (ISS\[24\]) set: ISS\[23:0\] is an IMPLEMENTATION DEFINED syndrome, which only the
    /// core's own manual explains.
    ImplementationDefined(u32),
    /// DFSC (ISS\[5:0\]) 0b000000: an uncategorized error; nothing more is said.
    Uncategorized,
    /// DFSC 0b010001: an asynchronous SError interrupt, classified.
    Asynchronous {
        /// AET, ISS\[12:10\]: the state the error left the CPU in.
        aet: Aet,
        /// EA, ISS\[9\]: the external abort type, an IMPLEMENTATION DEFINED classification.
        ea: bool,
        /// IESB, ISS\[13\]: an implicit error synchronization event (FEAT_IESB, at exception
        /// entry or return) synchronized the error, and it was taken at once.
        iesb: bool,
    },
    /// Any other DFSC: reserved by the architecture.
    Reserved(u8),
}

impl SError {
    /// The raw fields, as `IDS 0, DFSC 0x11, AET 0b001, EA 0, IESB 0`, for the line beside the
    /// ISS.
    pub const fn fields(self) -> SErrorFields {
        SErrorFields(self)
    }
}

/// What the syndrome means: `asynchronous SError interrupt, unrecoverable state (UEU)`.
impl fmt::Display for SError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ImplementationDefined(s) => {
                write!(f, "IMPLEMENTATION DEFINED syndrome {s:#08x}")
            }
            Self::Uncategorized => f.write_str("uncategorized error"),
            Self::Asynchronous { aet, .. } => write!(f, "asynchronous SError interrupt, {aet}"),
            Self::Reserved(dfsc) => write!(f, "reserved fault status {dfsc:#04x}"),
        }
    }
}

/// The fields of an SError's ISS by their architectural names (see [`SError::fields`]).
pub struct SErrorFields(SError);

impl fmt::Display for SErrorFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SError::ImplementationDefined(s) => write!(f, "IDS 1, syndrome {s:#08x}"),
            SError::Uncategorized => f.write_str("IDS 0, DFSC 0x00"),
            SError::Asynchronous { aet, ea, iesb } => write!(
                f,
                "IDS 0, DFSC 0x11, AET {:#05b}, EA {}, IESB {}",
                aet.bits(),
                u8::from(ea),
                u8::from(iesb)
            ),
            SError::Reserved(dfsc) => write!(f, "IDS 0, DFSC {dfsc:#04x}"),
        }
    }
}

/// An SError's asynchronous error type (AET): how far the error got, in the RAS extension's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aet {
    /// UC: the error may have been silently propagated; nothing can be trusted.
    Uncontainable,
    /// UEU: uncorrected, and the CPU cannot recover its state.
    Unrecoverable,
    /// UEO: uncorrected, not yet consumed; execution can restart.
    Restartable,
    /// UER: uncorrected, and software can recover.
    Recoverable,
    /// CE: corrected.
    Corrected,
    /// A reserved encoding.
    Reserved(u8),
}

impl Aet {
    const fn from_bits(bits: u8) -> Aet {
        match bits {
            0b000 => Aet::Uncontainable,
            0b001 => Aet::Unrecoverable,
            0b010 => Aet::Restartable,
            0b011 => Aet::Recoverable,
            0b110 => Aet::Corrected,
            b => Aet::Reserved(b),
        }
    }

    /// The encoding, ISS\[12:10\].
    pub const fn bits(self) -> u8 {
        match self {
            Aet::Uncontainable => 0b000,
            Aet::Unrecoverable => 0b001,
            Aet::Restartable => 0b010,
            Aet::Recoverable => 0b011,
            Aet::Corrected => 0b110,
            Aet::Reserved(b) => b,
        }
    }
}

impl fmt::Display for Aet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uncontainable => f.write_str("uncontainable (UC)"),
            Self::Unrecoverable => f.write_str("unrecoverable state (UEU)"),
            Self::Restartable => f.write_str("restartable state (UEO)"),
            Self::Recoverable => f.write_str("recoverable state (UER)"),
            Self::Corrected => f.write_str("corrected (CE)"),
            Self::Reserved(b) => write!(f, "reserved error type {b:#05b}"),
        }
    }
}

/// One line that says what happened, e.g.
/// `data abort (same EL): write to 0xffff800000001000: translation fault, level 3 (not mapped)`,
/// or `SError: asynchronous SError interrupt, uncontainable (UC)`.
pub struct Summary {
    /// The syndrome.
    pub esr: Esr,
    /// FAR_EL1: the faulting virtual address, when the syndrome says it is valid.
    pub far: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let esr = self.esr;
        f.write_str(esr.class_name())?;
        if esr.is_abort() {
            let what = if !esr.is_data_abort() {
                "instruction fetch from"
            } else if esr.is_write() {
                "write to"
            } else {
                "read from"
            };
            if esr.far_valid() {
                write!(f, ": {what} {:#x}", self.far)?;
            } else {
                write!(f, ": {what} an unknown address")?;
            }
            write!(f, ": {}", esr.fault_kind())?;
        }
        if let Some(serror) = esr.serror() {
            write!(f, ": {serror}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
