//! Remembers where `cargo xtask setup` put libonnxruntime (`ORT_DYLIB_PATH` at build time, from
//! `.cargo/config.toml` or xtask), so binaries find it without the variable at run time.

fn main() {
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH") {
        println!("cargo:rustc-env=LSN_ORT_DYLIB={path}");
    }
}
