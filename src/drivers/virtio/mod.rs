//! virtio devices through the `virtio-drivers` crate: the HAL (`hal`), where a buffer lives
//! physically (`dma`), and `DeviceTransport` (kernel builds), a transport that owns the register mappings it
//! uses and checks that the device accepted the features the driver chose.
//!
//! The transports come from the device tree's `virtio,mmio` slots (`mmio::probe`) and from
//! virtio-pci functions (`drivers::pci`). A device the tree does not mark `dma-coherent` is
//! refused (`ProbeError::NotCoherent`): the HAL does no cache maintenance.

pub mod dma;
#[cfg(target_os = "none")]
pub mod hal;
#[cfg(target_os = "none")]
pub mod mmio;

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(target_os = "none")]
mod hw {
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::fmt;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use virtio_drivers::transport::mmio::MmioVersion;
    use virtio_drivers::transport::{
        DeviceStatus, DeviceType, InterruptStatus, SomeTransport, Transport,
    };
    use virtio_drivers::{PhysAddr, Result};
    use zerocopy::{FromBytes, Immutable, IntoBytes};

    use super::hal::BarMap;
    use crate::drivers::iomap::IoMap;
    use crate::mm::vm::VmError;
    use crate::platform::devicetree::IrqError;

    /// The mappings a transport's registers live in.
    pub enum Regs {
        /// A virtio-mmio slot.
        Mmio(IoMap),
        /// A PCI function's BARs, its decoding (turned off when the last handle goes), and the
        /// virtual address of its ISR status byte, inside one of the BARs.
        Pci(Vec<BarMap>, Arc<crate::drivers::pci::Decoding>, usize),
    }

    /// virtio-mmio's `InterruptStatus` and `InterruptACK` registers (legacy and modern alike).
    const MMIO_INTERRUPT_STATUS: usize = 0x60;
    const MMIO_INTERRUPT_ACK: usize = 0x64;

    /// A device's interrupt status, as its interrupt handler acknowledges it: straight through
    /// the transport's registers, without the driver, which owns the transport behind its lock.
    /// The handler must not wait for that lock (see `smp::irq`): the code holding it allocates
    /// from the kernel heap, where the interrupted CPU may be.
    #[derive(Clone, Copy, Debug)]
    pub enum IrqAck {
        /// A virtio-mmio slot whose registers are mapped at this address.
        Mmio(usize),
        /// A virtio-pci function whose ISR status byte is mapped at this address.
        PciIsr(usize),
    }

    impl IrqAck {
        /// Acknowledge the device's interrupt, as virtio-drivers' `ack_interrupt` does; returns
        /// whether the device had raised one. virtio-mmio: read `InterruptStatus`, write what it
        /// said to `InterruptACK`; virtio-pci: reading the ISR status byte clears it (virtio 1.x,
        /// 4.2.2 and 4.1.4.5). Touches no other register, so it may run while the driver uses
        /// the transport on another CPU.
        ///
        /// # Safety
        ///
        /// The [`DeviceTransport`] this came from ([`DeviceTransport::irq_ack`]) is alive: its
        /// register mappings are still there.
        pub unsafe fn ack(&self) -> bool {
            match *self {
                // SAFETY: the caller's contract: `base` is the slot's live register mapping
                // (device memory), which holds both registers, 4-byte aligned.
                Self::Mmio(base) => unsafe {
                    let status = ((base + MMIO_INTERRUPT_STATUS) as *const u32).read_volatile();
                    if status != 0 {
                        ((base + MMIO_INTERRUPT_ACK) as *mut u32).write_volatile(status);
                    }
                    status != 0
                },
                // SAFETY: the caller's contract: `isr` lies in a live BAR mapping.
                Self::PciIsr(isr) => unsafe { (isr as *const u8).read_volatile() != 0 },
            }
        }
    }

    /// A virtio transport that owns its register mappings (unmapped when it is dropped, after
    /// the device was reset) and records whether the device accepted the driver's features.
    pub struct DeviceTransport {
        // Declared first: dropped (the device reset) before the mappings go.
        inner: SomeTransport<'static>,
        regs: Regs,
        negotiation: Arc<Negotiation>,
    }

    /// virtio-mmio registers a legacy (version 1) device has: the driver-features word and its
    /// selector.
    const MMIO_DRIVER_FEATURES: usize = 0x20;
    const MMIO_DRIVER_FEATURES_SEL: usize = 0x24;

    /// What feature negotiation came to, kept by whoever hands the transport to a driver (which
    /// owns it afterwards) to check once the driver is set up.
    #[derive(Default)]
    pub struct Negotiation {
        offered: AtomicU64,
        accepted: AtomicU64,
        refused: AtomicBool,
    }

    impl Negotiation {
        /// Did the device keep `FEATURES_OK` when the driver set it (the spec's check, which
        /// `virtio-drivers` leaves to the transport)?
        ///
        /// # Errors
        ///
        /// [`ProbeError::FeaturesRefused`], with what was offered and accepted.
        pub fn check(&self) -> core::result::Result<(), ProbeError> {
            if self.refused.load(Ordering::Relaxed) {
                return Err(ProbeError::FeaturesRefused {
                    offered: self.offered.load(Ordering::Relaxed),
                    accepted: self.accepted.load(Ordering::Relaxed),
                });
            }
            Ok(())
        }
    }

    impl DeviceTransport {
        /// Wrap `inner`, whose registers `regs` map.
        ///
        /// # Safety
        ///
        /// `inner`'s register pointers point into `regs`' mappings.
        pub unsafe fn new(inner: SomeTransport<'static>, regs: Regs) -> Self {
            Self {
                inner,
                regs,
                negotiation: Arc::default(),
            }
        }

        /// A legacy (version 1) virtio-mmio device: one 32-bit feature word and no
        /// configuration generation, whose registers QEMU calls guest errors to touch.
        fn legacy_mmio(&self) -> Option<&IoMap> {
            match (&self.inner, &self.regs) {
                (SomeTransport::Mmio(t), Regs::Mmio(map)) if t.version() == MmioVersion::Legacy => {
                    Some(map)
                }
                _ => None,
            }
        }

        /// How the device's interrupt handler acknowledges it, for as long as this transport
        /// lives.
        pub fn irq_ack(&self) -> IrqAck {
            match &self.regs {
                Regs::Mmio(map) => IrqAck::Mmio(map.base()),
                Regs::Pci(_, _, isr) => IrqAck::PciIsr(*isr),
            }
        }

        /// The outcome of feature negotiation, to check once a driver has set the device up.
        pub fn negotiation(&self) -> Arc<Negotiation> {
            self.negotiation.clone()
        }
    }

    impl Transport for DeviceTransport {
        fn device_type(&self) -> DeviceType {
            self.inner.device_type()
        }
        fn read_device_features(&mut self) -> u64 {
            let f = self.inner.read_device_features();
            self.negotiation.offered.store(f, Ordering::Relaxed);
            f
        }
        fn write_driver_features(&mut self, driver_features: u64) {
            self.negotiation
                .accepted
                .store(driver_features, Ordering::Relaxed);
            if let Some(map) = self.legacy_mmio() {
                // A legacy device has feature bits 0-31 only (virtio 1.x, 4.2.4).
                map.write32(MMIO_DRIVER_FEATURES_SEL, 0);
                map.write32(MMIO_DRIVER_FEATURES, driver_features as u32);
                return;
            }
            self.inner.write_driver_features(driver_features)
        }
        fn max_queue_size(&mut self, queue: u16) -> u32 {
            self.inner.max_queue_size(queue)
        }
        fn notify(&mut self, queue: u16) {
            self.inner.notify(queue)
        }
        fn get_status(&self) -> DeviceStatus {
            self.inner.get_status()
        }
        fn set_status(&mut self, status: DeviceStatus) {
            self.inner.set_status(status);
            // virtio 1.x, 3.1.1: after setting FEATURES_OK the driver re-reads the status; a
            // device that cleared it does not support the features chosen.
            if status.contains(DeviceStatus::FEATURES_OK)
                && !status.contains(DeviceStatus::DRIVER_OK)
                && !self.inner.get_status().contains(DeviceStatus::FEATURES_OK)
            {
                self.negotiation.refused.store(true, Ordering::Relaxed);
            }
        }
        fn set_guest_page_size(&mut self, guest_page_size: u32) {
            self.inner.set_guest_page_size(guest_page_size)
        }
        fn requires_legacy_layout(&self) -> bool {
            self.inner.requires_legacy_layout()
        }
        fn queue_set(
            &mut self,
            queue: u16,
            size: u32,
            descriptors: PhysAddr,
            driver_area: PhysAddr,
            device_area: PhysAddr,
        ) {
            self.inner
                .queue_set(queue, size, descriptors, driver_area, device_area)
        }
        fn queue_unset(&mut self, queue: u16) {
            self.inner.queue_unset(queue)
        }
        fn queue_used(&mut self, queue: u16) -> bool {
            self.inner.queue_used(queue)
        }
        fn ack_interrupt(&mut self) -> InterruptStatus {
            self.inner.ack_interrupt()
        }
        fn read_config_generation(&self) -> u32 {
            if self.legacy_mmio().is_some() {
                return 0; // no ConfigGeneration register: the configuration is read as it is
            }
            self.inner.read_config_generation()
        }
        fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T> {
            self.inner.read_config_space(offset)
        }
        fn write_config_space<T: IntoBytes + Immutable>(
            &mut self,
            offset: usize,
            value: T,
        ) -> Result<()> {
            self.inner.write_config_space(offset, value)
        }
    }

    /// A virtio device found and given a transport, ready for its driver.
    pub struct Candidate {
        /// Where: a device-tree path, or a PCI address.
        pub place: alloc::string::String,
        /// Its transport.
        pub transport: DeviceTransport,
        /// Its interrupt.
        pub irq: crate::platform::devicetree::IrqSpec,
        /// virtio-mmio's version (1 legacy, 2 modern); 0 for PCI.
        pub version: u32,
    }

    /// Why a virtio device was not brought up. The kernel logs it and goes on without it.
    #[derive(Debug)]
    pub enum ProbeError {
        /// The slot's (or function's) registers could not be mapped.
        Map(VmError),
        /// The device tree does not mark it `dma-coherent`, and the HAL does no cache
        /// maintenance.
        NotCoherent,
        /// Its interrupt cannot be used.
        Irq(IrqError),
        /// Not a virtio device, or a version the transport does not know.
        Transport(alloc::string::String),
        /// The device cleared `FEATURES_OK`: it does not accept what the driver chose.
        FeaturesRefused {
            /// Feature bits the device offered.
            offered: u64,
            /// Feature bits the driver accepted.
            accepted: u64,
        },
        /// The driver's set-up failed (queues, configuration space, DMA memory).
        Driver(virtio_drivers::Error),
        /// A device type this kernel has no driver for.
        Unsupported(DeviceType),
    }

    impl fmt::Display for ProbeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Map(e) => write!(f, "cannot map its registers: {e}"),
                Self::NotCoherent => f.write_str(
                    "not dma-coherent in the device tree, and the virtio HAL does no cache maintenance: refused",
                ),
                Self::Irq(e) => write!(f, "its interrupt cannot be used ({e}): refused, the drivers are interrupt-driven"),
                Self::Transport(e) => write!(f, "transport: {e}"),
                Self::FeaturesRefused { offered, accepted } => write!(
                    f,
                    "feature negotiation failed: the device offered {offered:#x}, the driver accepted {accepted:#x}, and the device cleared FEATURES_OK"
                ),
                Self::Driver(e) => write!(f, "driver set-up failed: {e}"),
                Self::Unsupported(t) => write!(f, "no driver for a {t:?} device"),
            }
        }
    }

    impl From<virtio_drivers::Error> for ProbeError {
        fn from(e: virtio_drivers::Error) -> Self {
            Self::Driver(e)
        }
    }
}
