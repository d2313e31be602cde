//! `lsw-sim`: the terminal simulator command line.
fn main() {}
