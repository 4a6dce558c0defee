//! Link the benchmark kernel with initmm's memory layout, which initmm's build script exports
//! (its `links = "initmm"` metadata), as every program built on initmm does. (On the host only
//! the baseline's unit tests are built, and nothing is linked bare-metal.)

fn main() {
    if std::env::var("TARGET").as_deref() != Ok("aarch64-unknown-none") {
        return;
    }
    let script = std::env::var("DEP_INITMM_LINKER_SCRIPT")
        .expect("initmm is a dependency and exports its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
}
