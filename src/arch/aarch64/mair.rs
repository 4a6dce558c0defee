//! MAIR_EL1, the memory attributes a descriptor's AttrIndx selects: one value, defined once with
//! the indices the descriptors use (`mm::pgtable::MAIR_EL1_VALUE` and its `MAIR_IDX_*`), which
//! the early page tables and every CPU's MMU set-up program (`early::mair_value`). This module
//! spells the same value out with the register's fields, as the Arm ARM names them, and its tests
//! tie the two together.

use aarch64_cpu::registers::MAIR_EL1;

/// MAIR_EL1 from its fields: Attr0 Normal write-back read/write-allocate (inner and outer),
/// Attr1 Device-nGnRE, Attr2 Normal non-cacheable, Attr3 Device-nGnRnE.
pub fn from_fields() -> u64 {
    (MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
        + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck
        + MAIR_EL1::Attr2_Normal_Outer::NonCacheable
        + MAIR_EL1::Attr2_Normal_Inner::NonCacheable
        + MAIR_EL1::Attr3_Device::nonGathering_nonReordering_noEarlyWriteAck)
        .value
}

/// The attribute byte at `index` of a MAIR value.
pub const fn attr(mair: u64, index: u64) -> u8 {
    (mair >> (8 * index)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::pgtable::{
        MAIR_EL1_VALUE, MAIR_IDX_DEVICE_NGNRE, MAIR_IDX_DEVICE_NGNRNE, MAIR_IDX_NORMAL,
        MAIR_IDX_NORMAL_NC,
    };

    #[test]
    fn the_value_the_mmu_gets_is_the_one_its_fields_spell() {
        assert_eq!(MAIR_EL1_VALUE, from_fields());
    }

    #[test]
    fn each_index_the_descriptors_use_selects_its_memory_type() {
        assert_eq!(attr(MAIR_EL1_VALUE, MAIR_IDX_NORMAL), 0xff, "Normal WB RWA");
        assert_eq!(
            attr(MAIR_EL1_VALUE, MAIR_IDX_DEVICE_NGNRE),
            0x04,
            "Device-nGnRE"
        );
        assert_eq!(attr(MAIR_EL1_VALUE, MAIR_IDX_NORMAL_NC), 0x44, "Normal NC");
        assert_eq!(
            attr(MAIR_EL1_VALUE, MAIR_IDX_DEVICE_NGNRNE),
            0x00,
            "Device-nGnRnE"
        );
    }
}
