//! `net`: an HTTP/1.1 server on the first virtio-net device, `smoltcp` over QEMU's user network
//! (10.0.2.15, port 80; the runner forwards one port of the host's 127.0.0.1 to it), served
//! from every CPU: each CPU owns [`SOCKETS_PER_CPU`] listening sockets and answers the
//! connections that arrive on them (`net::http`: `/`, `/bytes/N`, `/quit`).
//!
//! It runs until `GET /quit` or until `seconds=` are up. A malformed request gets 400 and its
//! reason in the log; a client that goes away in the middle of an answer is logged and its
//! socket listens again. Every answer counts as one operation. Passes when it answered at least
//! one request and gave back every frame.
//!
//! Takes from [`Params`]: `cpus`, and `seconds=` (how long to serve at most).

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use initmm::net::smoltcp::iface::SocketHandle;
use initmm::net::smoltcp::socket::tcp::{Socket, State};
use spin::Mutex;

use super::common::Progress;
use super::{Params, Report, Workload};
use initmm::arch::aarch64::cpu;
use initmm::net::http::{self, Answer, Parsed, Route};
use initmm::net::stack::{GUEST_IP, Stack};
use initmm::smp::runtime::on_cpus;

/// The `net` workload.
pub struct Net;

/// Listening sockets per CPU: as many connections at once.
pub const SOCKETS_PER_CPU: usize = 4;
/// The port served.
pub const PORT: u16 = 80;
const RX_BUF: usize = 4096;
const TX_BUF: usize = 32 * 1024;

/// What `net` can find wrong.
#[derive(Debug)]
pub enum NetFailure {
    /// No virtio-net device was probed.
    NoDevice,
}

impl fmt::Display for NetFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str(
                "no virtio-net device was probed (attach one: platform/qemu/run.sh --net PORT, or just run-net)",
            ),
        }
    }
}

impl core::error::Error for NetFailure {}

/// One connection's state, on the CPU that owns its socket.
#[derive(Default)]
struct Conn {
    inbuf: Vec<u8>,
    out: Option<(Answer, usize)>,
}

/// Counts the CPUs share.
#[derive(Default)]
struct Counts {
    bad: AtomicU64,
    gone: AtomicU64,
    quit: AtomicBool,
}

/// Serve the connections on CPU `id`'s sockets once; returns whether anything happened.
fn serve(
    st: &mut Stack,
    mine: &mut [(SocketHandle, Conn)],
    id: usize,
    counts: &Counts,
    progress: &Progress,
) -> bool {
    let mut busy = false;
    for (h, c) in mine.iter_mut() {
        let s = st.sockets.get_mut::<Socket>(*h);
        if !s.is_open() {
            if let Some((a, sent)) = &c.out {
                counts.gone.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "net: cpu{id}: the client went away after {sent} of {} bytes of an answer; its socket listens again",
                    a.head.len() + a.body.len()
                );
            }
            *c = Conn::default();
            let _ = s.listen(PORT);
            continue;
        }
        if s.can_recv() {
            let mut tmp = [0u8; 2048];
            if let Ok(n) = s.recv_slice(&mut tmp) {
                c.inbuf.extend_from_slice(&tmp[..n]);
                busy |= n > 0;
            }
        }
        if c.out.is_none() && !c.inbuf.is_empty() {
            let (answer, used) = match http::parse(&c.inbuf) {
                Parsed::Incomplete => (None, 0),
                Parsed::Request(r, used) => {
                    if r.route == Route::Quit {
                        counts.quit.store(true, Ordering::Release);
                    }
                    (Some(http::respond(&r, id)), used)
                }
                Parsed::Bad(e) => {
                    counts.bad.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "net: cpu{id}: malformed request from {:?}: {e}; answered 400 and closed",
                        s.remote_endpoint()
                    );
                    (Some(http::refuse(&e)), c.inbuf.len())
                }
            };
            if let Some(a) = answer {
                c.inbuf.drain(..used);
                c.out = Some((a, 0));
                busy = true;
            }
        }
        if let Some((a, sent)) = &mut c.out {
            let total = a.head.len() + a.body.len();
            if !s.may_send() {
                counts.gone.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "net: cpu{id}: the client went away after {sent} of {total} bytes of an answer; socket reset",
                    sent = *sent
                );
                s.abort();
                *c = Conn::default();
                continue;
            }
            while *sent < total && s.can_send() {
                let from = *sent;
                let r = s.send(|room: &mut [u8]| {
                    let n = room.len().min(total - from);
                    let hl = a.head.len();
                    let mut k = 0;
                    if from < hl {
                        k = (hl - from).min(n);
                        room[..k].copy_from_slice(&a.head[from..from + k]);
                    }
                    if k < n {
                        a.body.fill(from + k - hl, &mut room[k..n]);
                    }
                    (n, n)
                });
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        *sent += n;
                        busy = true;
                    }
                }
            }
            if *sent == total {
                let close = a.close;
                c.out = None;
                progress.add(id, 1);
                if close {
                    s.close();
                }
            }
        } else if !s.may_recv() && c.inbuf.is_empty() && s.state() == State::CloseWait {
            s.close();
        }
    }
    busy
}

impl Workload for Net {
    fn name(&self) -> &'static str {
        "net"
    }

    /// Only when named: it needs a network device, and it waits for clients.
    fn in_all(&self) -> bool {
        false
    }

    fn run(&self, p: &Params) -> Report {
        let mut report = Report::new(self.name(), p.cpus);
        let Some(dev) = initmm::devices::get().and_then(|d| d.nets.first()) else {
            report.fail(NetFailure::NoDevice);
            return report.finish();
        };
        let frames_before = initmm::mm::free_frames();
        let stack = Mutex::new(Stack::new(dev.clone()));
        // Made in turns, CPU after CPU: smoltcp hands a new connection to the first listening
        // socket in the set, so consecutive connections go to different CPUs.
        let mut handles: Vec<Vec<SocketHandle>> = (0..p.cpus).map(|_| Vec::new()).collect();
        {
            let mut st = stack.lock();
            for _ in 0..SOCKETS_PER_CPU {
                for h in handles.iter_mut() {
                    h.push(st.listener(PORT, RX_BUF, TX_BUF));
                }
            }
        }
        let [a, b, c, d] = GUEST_IP;
        log::info!(
            "net: serving HTTP on {a}.{b}.{c}.{d}:{PORT} from {} CPUs ({SOCKETS_PER_CPU} sockets each); GET /quit ends",
            p.cpus
        );
        let progress = Progress::new(self.name());
        let counts = Counts::default();
        let irqs_before = dev.events().line().map_or(0, |l| l.2);
        let start = cpu::counter();
        on_cpus(p.cpus, &|id| {
            let mut mine: Vec<(SocketHandle, Conn)> =
                handles[id].iter().map(|&h| (h, Conn::default())).collect();
            while !counts.quit.load(Ordering::Acquire) && p.more(start, 0) {
                let seen = dev.events().seen();
                let (busy, delay) = {
                    let mut st = stack.lock();
                    let changed = st.poll();
                    let busy = serve(&mut st, &mut mine, id, &counts, &progress);
                    if busy {
                        st.poll();
                    }
                    (busy || changed, st.delay_us())
                };
                if !busy {
                    dev.events()
                        .wait(seen, delay.unwrap_or(10_000).clamp(100, 10_000));
                }
            }
            // Let the last answers (the one to /quit) go out before the sockets are dropped.
            let t = cpu::counter();
            while cpu::counter() - t < cpu::counter_frequency() / 20 {
                let mut st = stack.lock();
                st.poll();
                serve(&mut st, &mut mine, id, &counts, &progress);
            }
        });
        report.record(&progress);
        let (bad, gone) = (counts.bad.into_inner(), counts.gone.into_inner());
        report.extra.push(("bad_requests", alloc::format!("{bad}")));
        report
            .extra
            .push(("clients_gone", alloc::format!("{gone}")));
        report
            .extra
            .push(("quit", alloc::format!("{}", counts.quit.into_inner())));
        let irqs = dev.events().line().map_or(0, |l| l.2) - irqs_before;
        report.extra.push(("interrupts", alloc::format!("{irqs}")));
        drop(stack);
        report.frames_before = frames_before;
        report.frames_after = initmm::mm::free_frames();
        report.check_frames();
        report.finish()
    }
}
