//! Cargo build script: link each bare-metal program with its own memory layout. The kernel and
//! every test kernel use linker.ld (the kernel's upper-half image); the Raspberry Pi chainloader
//! uses platform/rpi4/chainload/chainload.ld (a small program at a physical address). A linker
//! script in .cargo/config.toml's rustflags would apply to every program alike.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=platform/rpi4/chainload/chainload.ld");
    if std::env::var("TARGET").as_deref() != Ok("aarch64-unknown-none") {
        return; // host builds (unit tests, the fuzz target) link nothing bare-metal
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bin=initmm=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-tests=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bin=chainload=-T{dir}/platform/rpi4/chainload/chainload.ld");
}
