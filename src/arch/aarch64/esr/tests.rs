use super::*;
use alloc::format;

/// A data abort at EL1: read, translation fault at level 3 (DFSC 0x07).
const READ_TRANSLATION_L3: Esr = Esr((0x25 << 26) | (1 << 25) | 0x07);
const KERNEL_VA: u64 = 0xffff_8000_0000_1000;
/// PAR_EL1 after a successful `at`: F = 0, an output address, attributes.
const PAR_OK: u64 = 0xff00_0000_4000_1000 | 0x80;

fn par_fault(fsc: u64) -> u64 {
    1 | (fsc << 1)
}

#[test]
fn spurious_when_the_walk_now_succeeds() {
    let mut asked = None;
    assert!(is_spurious_translation_fault(
        READ_TRANSLATION_L3,
        KERNEL_VA,
        |va| {
            asked = Some(va);
            PAR_OK
        }
    ));
    assert_eq!(asked, Some(KERNEL_VA), "`at s1e1r` runs on FAR");
}

#[test]
fn genuine_when_the_walk_still_fails_to_translate() {
    for level in 0..4 {
        assert!(!is_spurious_translation_fault(
            READ_TRANSLATION_L3,
            KERNEL_VA,
            |_| par_fault(0x04 + level)
        ));
    }
}

#[test]
fn another_fault_now_is_retried_to_be_reported_as_itself() {
    // The page became read-only meanwhile: the retry takes a permission fault.
    assert!(is_spurious_translation_fault(
        READ_TRANSLATION_L3,
        KERNEL_VA,
        |_| par_fault(0x0f)
    ));
}

#[test]
fn only_el1_data_translation_faults_in_the_kernel_half_qualify() {
    let never = |_| -> u64 { panic!("`at` must not run") };
    // Instruction abort, permission fault, lower-EL abort, FAR not valid, lower half.
    let ifetch = Esr((0x21 << 26) | (1 << 25) | 0x07);
    let permission = Esr((0x25 << 26) | (1 << 25) | 0x0f);
    let lower_el = Esr((0x24 << 26) | (1 << 25) | 0x07);
    let fnv = Esr(READ_TRANSLATION_L3.0 | (1 << 10));
    for esr in [ifetch, permission, lower_el, fnv] {
        assert!(
            !is_spurious_translation_fault(esr, KERNEL_VA, never),
            "{esr:?}"
        );
    }
    assert!(!is_spurious_translation_fault(
        READ_TRANSLATION_L3,
        0,
        never
    ));
    assert!(!is_spurious_translation_fault(
        READ_TRANSLATION_L3,
        0x0000_8000_0000_1000,
        never
    ));
}

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
