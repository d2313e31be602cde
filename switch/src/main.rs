//! `lsw-switch`: the switch's command line (serve, migrate, import).

fn main() {}
