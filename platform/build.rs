//! The kernel package's build script. The kernel's memory layout (`linker.ld`: the upper-half
//! image, its sections, the boot stacks) is what every program built on initmm links with. A
//! build script can pass link arguments only to its own package's programs, so this one links the
//! test kernels in tests/ with it, and exports its path as `links` metadata
//! (`DEP_INITMM_LINKER_SCRIPT`) for the build scripts of the packages that depend on initmm: the
//! demonstration kernel, the benchmark kernel, and every application (see the app template's
//! build.rs). A linker script named in `.cargo/config.toml` instead would apply to every program
//! of a workspace alike (the chainloader has its own layout), and could not name the script of a
//! git dependency, whose checkout's path is not known in advance.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/linker.ld");
    println!("cargo:linker_script={script}");
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        println!("cargo:rustc-link-arg-tests=-T{script}");
    }
}
