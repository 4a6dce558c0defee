//! The EL1 exception vector table, the trap frame, and fault reporting.
//!
//! Kernel code runs on SP_EL0 ("EL1t"), so its exceptions arrive at the *current EL with SP0*
//! vectors and are handled on SP_EL1, the CPU's exception stack. An exception taken while already
//! handling one (SP_EL1 in use) arrives at the *current EL with SPx* vectors: that is a fault in
//! the fault path, reported as such, and the machine stops.
//!
//! What this module cannot handle it reports through one function the kernel installs
//! ([`set_reporter`]), handing it a decoded [`Unhandled`]: the architecture code does not name
//! the console or the panic handler (see the layering in the crate documentation).

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::esr::{self, Esr, Summary};
use crate::hook::Hook;

/// Registers saved on exception entry, in the order `exception_common` stores them.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// General-purpose registers x0-x30 at the moment of the exception (x30 is the link register).
    pub x: [u64; 31],
    /// The interrupted SP (SP_EL0).
    pub sp: u64,
    /// ELR_EL1: where the exception was taken, and where `eret` returns to.
    pub elr: u64,
    /// SPSR_EL1: the interrupted PSTATE (condition flags, interrupt masks, EL and SP choice).
    pub spsr: u64,
    /// ESR_EL1: the syndrome (see [`Esr`]).
    pub esr: u64,
    /// FAR_EL1: the faulting address, for aborts whose syndrome says it is valid.
    pub far: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 36 * 8 && FRAME_SIZE.is_multiple_of(16));
/// q0-q31, FPCR and FPSR, saved above the trap frame: the kernel is compiled with FP/SIMD
/// (the compiler uses vector registers for copies and loops), so the handler would otherwise
/// clobber the interrupted code's vector registers.
const FP_SIZE: usize = 32 * 16 + 16;
const SAVE_SIZE: usize = FRAME_SIZE + FP_SIZE;

core::arch::global_asm!(
    r#"
.macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #{save}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global exception_vectors
exception_vectors:
    VENTRY 0    /* current EL, SP0: synchronous */
    VENTRY 1    /*                  IRQ */
    VENTRY 2    /*                  FIQ */
    VENTRY 3    /*                  SError */
    VENTRY 4    /* current EL, SPx: synchronous (nested) */
    VENTRY 5
    VENTRY 6
    VENTRY 7
    VENTRY 8    /* lower EL, AArch64 (never: there is no EL0) */
    VENTRY 9
    VENTRY 10
    VENTRY 11
    VENTRY 12   /* lower EL, AArch32 */
    VENTRY 13
    VENTRY 14
    VENTRY 15

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #240]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #256]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #272]
    add     x2, sp, #{frame}
    stp     q0, q1, [x2, #0]
    stp     q2, q3, [x2, #32]
    stp     q4, q5, [x2, #64]
    stp     q6, q7, [x2, #96]
    stp     q8, q9, [x2, #128]
    stp     q10, q11, [x2, #160]
    stp     q12, q13, [x2, #192]
    stp     q14, q15, [x2, #224]
    stp     q16, q17, [x2, #256]
    stp     q18, q19, [x2, #288]
    stp     q20, q21, [x2, #320]
    stp     q22, q23, [x2, #352]
    stp     q24, q25, [x2, #384]
    stp     q26, q27, [x2, #416]
    stp     q28, q29, [x2, #448]
    stp     q30, q31, [x2, #480]
    mrs     x3, fpcr
    mrs     x4, fpsr
    str     x3, [x2, #512]
    str     x4, [x2, #520]
    mov     x1, x0                  /* kind */
    mov     x0, sp                  /* &mut TrapFrame */
    /*
     * A frame record so that backtraces from the handler continue into the interrupted code. Its
     * "return address" is ELR + 4, because the walker prints return address - 4 (the call): so
     * it shows the interrupted PC itself, in the right function even at a function's first
     * instruction (where a stack overflow faults).
     */
    ldr     x2, [sp, #256]
    add     x2, x2, #4
    ldr     x3, [sp, #232]
    stp     x3, x2, [sp, #-16]!
    mov     x29, sp
    bl      handle_exception
    add     sp, sp, #16

    add     x2, sp, #{frame}
    ldp     q0, q1, [x2, #0]
    ldp     q2, q3, [x2, #32]
    ldp     q4, q5, [x2, #64]
    ldp     q6, q7, [x2, #96]
    ldp     q8, q9, [x2, #128]
    ldp     q10, q11, [x2, #160]
    ldp     q12, q13, [x2, #192]
    ldp     q14, q15, [x2, #224]
    ldp     q16, q17, [x2, #256]
    ldp     q18, q19, [x2, #288]
    ldp     q20, q21, [x2, #320]
    ldp     q22, q23, [x2, #352]
    ldp     q24, q25, [x2, #384]
    ldp     q26, q27, [x2, #416]
    ldp     q28, q29, [x2, #448]
    ldp     q30, q31, [x2, #480]
    ldr     x3, [x2, #512]
    ldr     x4, [x2, #520]
    msr     fpcr, x3
    msr     fpsr, x4
    ldp     x2, x3, [sp, #256]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x30, x2, [sp, #240]
    msr     sp_el0, x2
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{save}
    eret

/*
 * catch_fault_call(jmpbuf x0, fn x1, data x2) -> 0, or 1 when a fault was caught.
 * Saves what AAPCS64 makes callee-saved (x19-x29, the return address, SP and the low halves of
 * v8-v15, i.e. d8-d15) in jmpbuf, then calls fn(data). A fault abandons fn's frames, so their
 * epilogues never restore what they saved: catch_fault_resume must restore all of it.
 */
    .section .text
    .global catch_fault_call
catch_fault_call:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    mov     x0, x2
    blr     x1
    ldp     x29, x30, [sp], #16
    mov     x0, #0
    ret

/* Entered by `eret` from the fault handler with x0 = jmpbuf: return 1 from catch_fault_call. */
    .global catch_fault_resume
catch_fault_resume:
    ldp     x19, x20, [x0, #0]
    ldp     x21, x22, [x0, #16]
    ldp     x23, x24, [x0, #32]
    ldp     x25, x26, [x0, #48]
    ldp     x27, x28, [x0, #64]
    ldp     x29, x30, [x0, #80]
    ldr     x9, [x0, #96]
    mov     sp, x9
    ldp     d8, d9, [x0, #104]
    ldp     d10, d11, [x0, #120]
    ldp     d12, d13, [x0, #136]
    ldp     d14, d15, [x0, #152]
    mov     x0, #1
    ret
"#,
    frame = const FRAME_SIZE,
    save = const SAVE_SIZE,
);

unsafe extern "C" {
    fn catch_fault_call(jmpbuf: *mut JmpBuf, f: extern "C" fn(*mut u8), data: *mut u8) -> u64;
    fn catch_fault_resume();
}

/// x19-x30, SP, d8-d15: the layout `catch_fault_call` and `catch_fault_resume` use.
#[repr(C)]
struct JmpBuf([u64; 21]);

/// A fault caught by [`catch_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The syndrome.
    pub esr: Esr,
    /// The faulting address (valid when `esr.far_valid()`).
    pub far: u64,
    /// The address of the instruction that faulted.
    pub elr: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ESR {:#x}, ELR {:#x}{})",
            Summary {
                esr: self.esr,
                far: self.far
            },
            self.esr.0,
            self.elr,
            crate::kallsyms::Symbolic {
                addr: self.elr,
                angled: true
            }
        )
    }
}

const MAX_CPUS: usize = crate::arch::aarch64::cpu::MAX_CPUS;

/// Per CPU: the armed jump buffer of a `catch_fault` in progress (0 = none).
static CATCH: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Per CPU: ESR, FAR, ELR of the last caught fault.
static CAUGHT: [[AtomicU64; 3]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 3] }; MAX_CPUS];

/// Run `f`; if it takes a synchronous exception, report and return it instead of panicking.
///
/// For tests that must prove an access faults (an unmapped page, a write to text). Unwinding is
/// not possible in this kernel, so on a fault `f`'s frames are abandoned without running their
/// destructors: give it closures that own nothing that needs dropping.
pub fn catch_fault<F: FnOnce()>(f: F) -> Result<(), Fault> {
    extern "C" fn trampoline<F: FnOnce()>(data: *mut u8) {
        // SAFETY: `data` is the `Option<F>` that `catch_fault` passes below, alive for the call.
        let slot = unsafe { &mut *data.cast::<Option<F>>() };
        if let Some(f) = slot.take() {
            f();
        }
    }
    let cpu = super::cpu::id();
    let mut jmp = JmpBuf([0; 21]);
    let mut f = Some(f);
    CATCH[cpu].store(&raw mut jmp as usize, Ordering::SeqCst);
    // SAFETY: `catch_fault_call` saves the callee-saved state in `jmp` and calls the trampoline.
    // If `f` faults, `handle_exception` resumes at `catch_fault_resume`, which restores exactly
    // that state: to Rust this is an ordinary call of an `extern "C"` function that returned 1.
    // `jmp` and `f` outlive the call.
    let faulted = unsafe { catch_fault_call(&raw mut jmp, trampoline::<F>, (&raw mut f).cast()) };
    CATCH[cpu].store(0, Ordering::SeqCst);
    if faulted == 0 {
        return Ok(());
    }
    let [esr, far, elr] = &CAUGHT[cpu];
    Err(Fault {
        esr: Esr(esr.load(Ordering::SeqCst)),
        far: far.load(Ordering::SeqCst),
        elr: elr.load(Ordering::SeqCst),
    })
}

/// Is `f` an access to the guard page below a kernel stack, and whose stack is it?
pub fn stack_overflow_of(f: &Fault) -> Option<super::cpu::StackOwner> {
    if f.esr.is_data_abort() && f.esr.far_valid() {
        super::cpu::stack_guard_hit(f.far)
    } else {
        None
    }
}

/// Spurious translation faults retried since boot (see [`esr::is_spurious_translation_fault`]).
static SPURIOUS_FAULTS: AtomicU64 = AtomicU64::new(0);

/// How many EL1 translation faults were spurious (the mapping existed by the time the handler
/// walked it again) and were retried instead of reported.
pub fn spurious_faults() -> u64 {
    SPURIOUS_FAULTS.load(Ordering::Relaxed)
}

/// `at s1e1r, va` then `PAR_EL1`: how a stage-1 EL1 read of `va` translates right now.
/// Runs in the exception handler with IRQs masked, so nothing else on this CPU uses `PAR_EL1`
/// between the `at` and the read.
pub fn at_s1e1r(va: u64) -> u64 {
    let par: u64;
    // SAFETY: address translation writes only PAR_EL1 (a register nothing else here keeps a
    // value in); the `isb` makes the result visible to the `mrs`.
    unsafe {
        core::arch::asm!(
            "at s1e1r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) va,
            par = out(reg) par,
            options(nostack, preserves_flags),
        )
    };
    par
}

/// The synchronous-exception path's first question: was this a spurious translation fault? If
/// so it is counted and `true` returned, and the caller returns from the exception, which
/// re-executes the access (`ELR` still points at it).
pub fn retry_if_spurious(frame: &TrapFrame) -> bool {
    let spurious = esr::is_spurious_translation_fault(Esr(frame.esr), frame.far, at_s1e1r);
    if spurious {
        SPURIOUS_FAULTS.fetch_add(1, Ordering::Relaxed);
    }
    spurious
}

/// The function every IRQ is handed to (the interrupt-controller code's; a test kernel may
/// replace it).
static IRQ_HANDLER: Hook<fn()> = Hook::new();

/// Install the function every IRQ is handed to.
pub fn set_irq_handler(f: fn()) {
    IRQ_HANDLER.set(f);
}

/// An exception this module cannot handle: what it hands the kernel's reporter ([`set_reporter`]).
/// Its `Display` is the report: the decoded exception and every register, as one block.
pub struct Unhandled<'a> {
    /// The registers as the exception entry saved them.
    pub frame: &'a TrapFrame,
    /// Which of the 16 vectors took it: bits 0-1 the type (synchronous, IRQ, FIQ, SError), bits
    /// 2-3 where from (kernel on SP0, the exception handler on SPx, a lower EL).
    pub kind: u64,
    /// The CPU that took it (its number, not its MPIDR).
    pub cpu: usize,
}

impl Unhandled<'_> {
    /// Taken while handling an exception (the exception stack, SP_EL1, is in use): a fault in the
    /// fault path.
    pub fn nested(&self) -> bool {
        (4..=7).contains(&self.kind)
    }
}

/// The kernel's reporter: the one way this module reports what it cannot handle, so that it
/// needs neither the console nor the panic handler (see the layering in the crate documentation).
static REPORTER: Hook<fn(&Unhandled<'_>)> = Hook::new();

/// Install the function that reports an exception this module cannot handle: it prints the
/// [`Unhandled`] and returns, and this module panics with a one-line summary. A
/// [nested](Unhandled::nested) exception leaves the exception stack in use, so for one the
/// reporter should stop the machine itself; if it returns (or before one is installed), this
/// module panics then too.
pub fn set_reporter(f: fn(&Unhandled<'_>)) {
    REPORTER.set(f);
}

/// A synchronous exception taken from kernel code (EL1, SP0), in this order: a spurious
/// translation fault is retried; a fault inside [`catch_fault`] returns there; a stack overflow
/// or any other exception is reported and panics. (Linux fixes up an exception-table entry
/// before it asks whether the fault was spurious; asking first means a spurious fault inside
/// `catch_fault` is retried rather than reported as caught.)
///
/// Public so that tests can hand it a made-up frame: the spurious-fault decision cannot be
/// provoked in an emulator, whose table walks are always ordered.
pub fn handle_sync(frame: &mut TrapFrame) {
    if retry_if_spurious(frame) {
        return;
    }
    let cpu = super::cpu::id();
    let esr = Esr(frame.esr);
    let jmp = CATCH[cpu].swap(0, Ordering::SeqCst);
    if jmp != 0 {
        let [e, f, l] = &CAUGHT[cpu];
        e.store(frame.esr, Ordering::SeqCst);
        f.store(frame.far, Ordering::SeqCst);
        l.store(frame.elr, Ordering::SeqCst);
        frame.x[0] = jmp as u64;
        frame.elr = catch_fault_resume as *const () as u64;
        return;
    }
    let fault = Fault {
        esr,
        far: frame.far,
        elr: frame.elr,
    };
    if let Some(owner) = stack_overflow_of(&fault) {
        report(frame, 0);
        panic!(
            "stack overflow on cpu{cpu}: {owner} ran into its guard page at {:#x} (SP {:#x})",
            frame.far, frame.sp
        );
    }
    report(frame, 0);
    panic!(
        "unhandled {} on cpu{cpu}",
        Summary {
            esr,
            far: frame.far
        }
    );
}

/// An SError taken from kernel code (EL1, SP0): an asynchronous external abort (a write to a
/// device block that is not clocked, an access the interconnect refused after the instruction
/// completed) or an error the CPU's RAS extension signals. ELR is where the kernel was when it
/// arrived, not necessarily the access that caused it. Fatal, like an unhandled synchronous
/// fault: reported with its decoded syndrome, then a panic. (Linux's `do_serror` lets a CPU with
/// FEAT_RAS go on after a corrected or restartable error; this kernel stops on every SError.)
fn handle_serror(frame: &TrapFrame) -> ! {
    let cpu = super::cpu::id();
    report(frame, 3);
    panic!(
        "unhandled {} on cpu{cpu}",
        Summary {
            esr: Esr(frame.esr),
            far: frame.far
        }
    );
}

#[unsafe(no_mangle)]
extern "C" fn handle_exception(frame: &mut TrapFrame, kind: u64) {
    let cpu = super::cpu::id();
    match kind {
        0 => handle_sync(frame),
        1 => {
            let Some(h) = IRQ_HANDLER.get() else {
                report(frame, kind);
                panic!("unexpected IRQ on cpu{cpu}: no interrupt controller driver installed");
            };
            h();
        }
        3 => handle_serror(frame),
        4..=7 => {
            // A spurious translation fault can be taken here too (an IRQ handler reading a
            // mapping just published): retry it like any other (Linux does so in every EL1
            // context).
            if kind == 4 && retry_if_spurious(frame) {
                return;
            }
            // A fault while handling a fault: the exception stack is in use, so keep this short.
            // The reporter stops the machine; only without one does this go on to panic.
            report(frame, kind);
            panic!(
                "{} exception on cpu{cpu} in the exception handler",
                kind_name(kind)
            );
        }
        _ => {
            report(frame, kind);
            panic!("unexpected {} exception on cpu{cpu}", kind_name(kind));
        }
    }
}

fn kind_name(kind: u64) -> &'static str {
    match kind & 3 {
        0 => "synchronous",
        1 => "IRQ",
        2 => "FIQ",
        _ => "SError",
    }
}

/// Hand the exception to the kernel's reporter, if one is installed yet.
fn report(frame: &TrapFrame, kind: u64) {
    let u = Unhandled {
        frame,
        kind,
        cpu: super::cpu::id(),
    };
    if let Some(r) = REPORTER.get() {
        r(&u);
    }
}

/// The decoded exception and the registers, as one block (it starts with an empty line).
impl fmt::Display for Unhandled<'_> {
    fn fmt(&self, w: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (frame, kind, cpu) = (self.frame, self.kind, self.cpu);
        let esr = Esr(frame.esr);
        let origin = match kind >> 2 {
            0 => "kernel (EL1, SP0)",
            1 => "exception handler (EL1, SPx)",
            _ => "a lower EL",
        };
        writeln!(
            w,
            "\n*** {} exception on cpu{cpu} in {origin}",
            kind_name(kind)
        )?;
        // Synchronous exceptions and SErrors have a syndrome; IRQ and FIQ do not.
        if matches!(kind & 3, 0 | 3) {
            writeln!(
                w,
                "    {}",
                Summary {
                    esr,
                    far: frame.far
                }
            )?;
            write!(
                w,
                "    EC {:#04x} ({}), ISS {:#09x}",
                esr.ec(),
                esr.class_name(),
                esr.iss()
            )?;
            if let Some(serror) = esr.serror() {
                write!(w, ": {}", serror.fields())?;
            }
            writeln!(w)?;
        }
        writeln!(
            w,
            "    ESR {:#018x}  FAR {:#018x}\n    ELR {:#018x}{}  SPSR {:#010x}  SP {:#018x}",
            frame.esr,
            frame.far,
            frame.elr,
            crate::kallsyms::Symbolic {
                addr: frame.elr,
                angled: true
            },
            frame.spsr,
            frame.sp
        )?;
        for (i, pair) in frame.x.chunks(2).enumerate() {
            write!(w, "    x{:<2} {:#018x}", 2 * i, pair[0])?;
            if let Some(v) = pair.get(1) {
                write!(w, "  x{:<2} {:#018x}", 2 * i + 1, v)?;
            }
            writeln!(w)?;
        }
        Ok(())
    }
}
