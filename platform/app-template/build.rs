// Link with initmm's memory layout: initmm's build script exports its linker script (`links`).
fn main() {
    let script = std::env::var("DEP_INITMM_LINKER_SCRIPT").expect("initmm exports its linker script");
    println!("cargo:rustc-link-arg-bins=-T{script}");
}
