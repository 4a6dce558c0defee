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

/// ESR for an SError interrupt (EC 0x2f, IL) with `iss`.
fn serror(iss: u64) -> Esr {
    Esr((0x2f << 26) | (1 << 25) | iss)
}

fn summary(esr: Esr) -> alloc::string::String {
    format!("{}", Summary { esr, far: 0 })
}

#[test]
fn serror_with_a_ras_syndrome() {
    // What QEMU's `-cpu max` reports for a virtual SError with VSESR_EL2 = 0x411 (tests/serror.rs).
    let esr = serror((0b001 << 10) | 0x11);
    assert_eq!(esr.0, 0xbe00_0411);
    assert!(esr.is_serror() && !esr.is_abort());
    assert_eq!(
        esr.serror(),
        Some(SError::Asynchronous {
            aet: Aet::Unrecoverable,
            ea: false,
            iesb: false
        })
    );
    assert_eq!(
        summary(esr),
        "SError: asynchronous SError interrupt, unrecoverable state (UEU)"
    );
    assert_eq!(
        format!("{}", esr.serror().unwrap().fields()),
        "IDS 0, DFSC 0x11, AET 0b001, EA 0, IESB 0"
    );
}

#[test]
fn serror_uncategorized_as_a_cortex_a72_reports_it() {
    // 0xbe000000: the Pi 4's "SError, code 0xbe000000" (no FEAT_RAS: ISS 0).
    let esr = serror(0);
    assert_eq!(esr.0, 0xbe00_0000);
    assert_eq!(esr.serror(), Some(SError::Uncategorized));
    assert_eq!(summary(esr), "SError: uncategorized error");
    assert_eq!(
        format!("{}", esr.serror().unwrap().fields()),
        "IDS 0, DFSC 0x00"
    );
}

#[test]
fn serror_implementation_defined_syndrome() {
    let esr = serror((1 << 24) | 2);
    assert_eq!(esr.0, 0xbf00_0002);
    assert_eq!(esr.serror(), Some(SError::ImplementationDefined(2)));
    assert_eq!(
        summary(esr),
        "SError: IMPLEMENTATION DEFINED syndrome 0x000002"
    );
    assert_eq!(
        format!("{}", esr.serror().unwrap().fields()),
        "IDS 1, syndrome 0x000002"
    );
    // With IDS set, the low bits are not a DFSC.
    assert_eq!(
        serror((1 << 24) | 0x11).serror(),
        Some(SError::ImplementationDefined(0x11))
    );
}

#[test]
fn serror_every_error_type_and_the_flags() {
    let cases = [
        (0b000, Aet::Uncontainable, "uncontainable (UC)"),
        (0b001, Aet::Unrecoverable, "unrecoverable state (UEU)"),
        (0b010, Aet::Restartable, "restartable state (UEO)"),
        (0b011, Aet::Recoverable, "recoverable state (UER)"),
        (0b110, Aet::Corrected, "corrected (CE)"),
        (0b100, Aet::Reserved(0b100), "reserved error type 0b100"),
        (0b111, Aet::Reserved(0b111), "reserved error type 0b111"),
    ];
    for (bits, aet, text) in cases {
        let esr = serror((1 << 13) | (bits << 10) | (1 << 9) | 0x11);
        let s = esr.serror().unwrap();
        assert_eq!(
            s,
            SError::Asynchronous {
                aet,
                ea: true,
                iesb: true
            }
        );
        assert_eq!(aet.bits() as u64, bits);
        assert_eq!(
            summary(esr),
            format!("SError: asynchronous SError interrupt, {text}")
        );
        assert_eq!(
            format!("{}", s.fields()),
            format!("IDS 0, DFSC 0x11, AET {bits:#05b}, EA 1, IESB 1")
        );
    }
}

#[test]
fn serror_aet_means_nothing_without_dfsc_0x11() {
    // AET, EA and IESB are RES0 unless DFSC says "asynchronous SError interrupt".
    assert_eq!(
        serror((0b110 << 10) | (1 << 9)).serror(),
        Some(SError::Uncategorized)
    );
    let reserved = serror(0x10);
    assert_eq!(reserved.serror(), Some(SError::Reserved(0x10)));
    assert_eq!(summary(reserved), "SError: reserved fault status 0x10");
}

#[test]
fn only_ec_0x2f_is_an_serror() {
    for esr in [Esr((0x25 << 26) | 0x11), Esr(0x3c << 26), Esr(0)] {
        assert!(!esr.is_serror());
        assert_eq!(esr.serror(), None);
    }
}
