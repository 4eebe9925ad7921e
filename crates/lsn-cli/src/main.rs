//! lsn CLI.
fn main() {}
