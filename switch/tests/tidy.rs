//! Goal: the pure core stays pure and the workspace keeps its house rules (docs/style.md sections
//! 1 and 14): no runtime, database, clock reads or randomness in `protocol`, `domain`,
//! `pricing` and `engine`; no unbounded channels anywhere; no global mutable state.
//!
//! Method: grep the sources; each rule is one line through `check`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// The `.rs` files under `root`, or `root` itself when it is a file.
fn sources(root: &Path) -> Vec<PathBuf> {
    assert!(root.exists(), "{} does not exist", root.display());
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("fuzz") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Fails when any file under `dirs` contains `needle` outside a comment line.
fn check(dirs: &[&str], needle: &str) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    for dir in dirs {
        for file in sources(&workspace.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if code.contains(needle) {
                    found.push(format!("{}:{}: {}", file.display(), number + 1, code));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "`{needle}` where it must not be:\n{}",
        found.join("\n")
    );
}

/// The pure core: each module's file and its directory (a file beside a directory of the
/// same name is the module's root, and a grep of the directory alone never sees it).
const PURE: &[&str] = &[
    "protocol/src",
    "switch/src/domain.rs",
    "switch/src/domain",
    "switch/src/pricing.rs",
    "switch/src/pricing",
    "switch/src/engine.rs",
    "switch/src/engine",
    "switch/src/snapshot.rs",
    "switch/src/snapshot",
    "switch/src/calendar.rs",
    "switch/src/admission.rs",
    "switch/src/settlement/cycle.rs",
];

/// A file of the pure core that is not listed in [`PURE`] fails the test: a module moved or
/// added beside a listed directory is checked, or named here on purpose.
#[test]
fn the_pure_core_list_covers_each_module_root() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for entry in PURE {
        let path = workspace.join(entry);
        assert!(path.exists(), "{entry} is listed but does not exist");
        if path.is_dir() && entry.starts_with("switch/src/") {
            let root = path.with_extension("rs");
            let listed = format!("{entry}.rs");
            assert!(
                !root.exists() || PURE.contains(&listed.as_str()),
                "{listed} is the root of a listed directory and must be listed too"
            );
        }
    }
}

#[test]
fn the_pure_core_has_no_io_clock_or_randomness() {
    // `tokio_util::codec` (protocol's codec.rs, behind its feature) is an adapter with no
    // runtime, so the rule is on `tokio::`.
    for needle in [
        "tokio::",
        "sqlx",
        "::now(",
        "thread_rng",
        "std::fs",
        "std::net",
        "rand::",
    ] {
        check(PURE, needle);
    }
}

#[test]
fn no_unbounded_queue_or_global_mutable_state() {
    let all = [
        "protocol/src",
        "switch/src",
        "settlement/src",
        "terminal-sim/src",
        "benches/src",
    ];
    check(&all, "unbounded_channel");
    check(&all, "lazy_static");
    check(&all, "static mut");
    check(&all, "OnceCell");
}
