//! Bakes an rpath to libtorch's `lib/` into the harness binaries, tests and benches (tch's own link flags do not reach
//! binaries), so they run without `LD_LIBRARY_PATH`. `LIBTORCH` comes from `.cargo/config.toml` or xtask.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
}
