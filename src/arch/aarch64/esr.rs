//! Decoding of ESR_EL1 (Exception Syndrome Register) into words a kernel engineer reads.
//!
//! Pure logic: unit-tested on the host.

use core::fmt;

/// An exception syndrome as read from ESR_EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class, ESR[31:26].
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Instruction-specific syndrome, ESR[24:0].
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

    pub const fn is_data_abort(self) -> bool {
        matches!(self.ec(), 0x24 | 0x25)
    }

    /// For a data abort: the access was a write (ISS.WnR).
    pub const fn is_write(self) -> bool {
        self.is_data_abort() && (self.iss() & (1 << 6)) != 0
    }

    /// For aborts: the fault status code, DFSC/IFSC = ISS[5:0].
    pub const fn fault_status(self) -> u8 {
        (self.iss() & 0x3f) as u8
    }

    /// For aborts: is FAR_EL1 valid (ISS.FnV clear)?
    pub const fn far_valid(self) -> bool {
        self.is_abort() && (self.iss() & (1 << 10)) == 0
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

/// The decoded fault status code of an abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    AddressSize(i8),
    Translation(i8),
    AccessFlag(i8),
    Permission(i8),
    SyncExternal,
    Alignment,
    TlbConflict,
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

/// One line that says what happened, e.g.
/// `data abort (same EL): write to 0xffff800000001000: translation fault, level 3 (not mapped)`.
pub struct Summary {
    pub esr: Esr,
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn data_abort_write_translation_level3() {
        // EC 0x25, IL, WnR, DFSC 0x07 (translation fault level 3)
        let esr = Esr((0x25 << 26) | (1 << 25) | (1 << 6) | 0x07);
        assert_eq!(esr.class_name(), "data abort (same EL)");
        assert!(esr.is_write());
        assert_eq!(esr.fault_kind(), FaultKind::Translation(3));
        let s = format!("{}", Summary { esr, far: 0x1000 });
        assert_eq!(
            s,
            "data abort (same EL): write to 0x1000: translation fault, level 3 (not mapped)"
        );
    }

    #[test]
    fn read_and_permission_and_null() {
        let esr = Esr((0x25 << 26) | 0x0f);
        assert!(!esr.is_write());
        assert_eq!(esr.fault_kind(), FaultKind::Permission(3));
        let s = format!("{}", Summary { esr, far: 0 });
        assert!(s.contains("read from 0x0"), "{s}");
    }

    #[test]
    fn instruction_abort_permission() {
        let esr = Esr((0x21 << 26) | 0x0e);
        assert_eq!(esr.fault_kind(), FaultKind::Permission(2));
        let s = format!(
            "{}",
            Summary {
                esr,
                far: 0xffff_0000_4000_0000
            }
        );
        assert_eq!(
            s,
            "instruction abort (same EL): instruction fetch from 0xffff000040000000: permission fault, level 2"
        );
    }

    #[test]
    fn far_not_valid_and_other_classes() {
        let esr = Esr((0x25 << 26) | (1 << 10) | 0x10);
        assert!(!esr.far_valid());
        assert!(format!("{}", Summary { esr, far: 5 }).contains("unknown address"));
        assert_eq!(Esr(0x3c << 26).class_name(), "BRK instruction");
        assert_eq!(Esr(0x00).class_name(), "unknown reason");
        assert_eq!(
            Esr(0x3f << 26).class_name(),
            "reserved/unhandled exception class"
        );
        assert_eq!(Esr((0x25 << 26) | 0x21).fault_kind(), FaultKind::Alignment);
    }
}
