//! Link the chainloader with its own memory layout (chainload.ld: linked at its physical load
//! address, so it needs no MMU), not the kernel's.

fn main() {
    println!("cargo:rerun-if-changed=chainload.ld");
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/chainload.ld");
    }
}
