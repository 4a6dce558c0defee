//! Link the kernel with initmm's memory layout, which initmm's build script exports (its
//! `links = "initmm"` metadata), as every application built on initmm does.

fn main() {
    let script = std::env::var("DEP_INITMM_LINKER_SCRIPT")
        .expect("initmm is a dependency and exports its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
}
