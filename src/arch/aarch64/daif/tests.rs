use super::*;
use alloc::format;

#[test]
fn procctx_noirq_unmasks_debug_and_serror_only() {
    let d = Daif::PROCCTX_NOIRQ;
    assert!(!d.debug_masked() && !d.serror_masked());
    assert!(d.irq_masked() && d.fiq_masked());
    assert_eq!(d.bits(), 0xc0);
    assert_eq!(format!("{d}"), "D=0 A=0 I=1 F=1");
}

#[test]
fn mask_masks_all_four() {
    assert_eq!(Daif::MASK.bits(), 0x3c0);
    assert_eq!(format!("{}", Daif::MASK), "D=1 A=1 I=1 F=1");
}

#[test]
fn from_bits_keeps_only_the_masks() {
    // An SPSR: EL1h (0b0101), the condition flags, A and F masked.
    let spsr = 0xf000_0000 | Daif::A | Daif::F | 0b0101;
    let d = Daif::from_bits(spsr);
    assert_eq!(d.bits(), Daif::A | Daif::F);
    assert_eq!(format!("{d}"), "D=0 A=1 I=0 F=1");
}
