//! Everything that names an Arm register or instruction.

pub mod esr;
