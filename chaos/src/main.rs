//! Chorus chaos: load generator and fault injection (see `chorus-chaos --help`).
fn main() {}
