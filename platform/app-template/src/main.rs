#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

initmm::entry!(main);

fn main(_boot: &'static initmm::BootInfo) -> ! {
    let hellos = AtomicUsize::new(0);
    initmm::on_each_cpu(&|cpu| {
        log::info!("hello from cpu{cpu}, {:?} after boot", initmm::time::since_boot());
        hellos.fetch_add(1, Relaxed);
    });
    let sum = initmm::spawn(|| (1..=1000u64).map(|n| n * n).sum::<u64>()).join();
    let mut buf = initmm::mm::vmalloc(1 << 20).expect("1 MiB of vmalloc");
    buf.fill(0xa5);
    let (n, cpus) = (hellos.load(Relaxed), initmm::online_cpus());
    log::info!("{n} of {cpus} CPUs said hello; sum of squares {sum}; {} bytes vmalloc'd", buf.len());
    initmm::exit(if n == cpus && sum == 333_833_500 { 0 } else { 1 })
}
