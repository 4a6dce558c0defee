//! Architecture support. initmm runs on AArch64 only.
pub mod aarch64;
