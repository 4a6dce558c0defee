//! What the device tree says about the machine.
//!
//! `fdt_front` validates the blob firmware hands us and makes a clean copy; `devicetree` reads
//! that copy into a `Machine` (RAM, reservations, console, GIC, timer, PSCI, CPUs). Board
//! defaults and boot glue build on these; neither module touches hardware.

pub mod devicetree;
pub mod fdt_front;
