//! With the `tch` feature, bakes an rpath to libtorch's `lib/` into `lsn` and its tests (tch's own link flags do not
//! reach binaries), so they run without `LD_LIBRARY_PATH`. `LIBTORCH` comes from `.cargo/config.toml` or xtask.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let (Some(_), Ok(dir)) = (std::env::var_os("CARGO_FEATURE_TCH"), std::env::var("LIBTORCH")) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
}
