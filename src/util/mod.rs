//! Small pure helpers that any layer may use: no hardware, no allocation, no kernel state (layer
//! 1 in the crate's list of layers).

pub use initmm_mm::rng;
