//! Goal: the pure core stays pure and the workspace keeps its house rules (docs/style.md sections
//! 1 and 14): no runtime, database, clock reads or randomness in `protocol` and `decision`
//! (domain, pricing, calendar, snapshot, admission, the engine); no unbounded channels anywhere;
//! no global mutable state.
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

/// The pure core: the `decision` crate whole (domain, pricing, calendar, snapshot, admission,
/// the engine), the protocol crate, and settlement's arithmetic. A directory is read with every
/// file under it, at any depth, so a module added to the core is checked without a change here.
const PURE: &[&str] = &[
    "protocol/src",
    "switch/decision/src",
    "switch/src/settlement/cycle.rs",
];

/// A file added anywhere under a listed directory is seen: the walk reaches the crate's root,
/// a module's root file beside its directory, and the files inside that directory.
#[test]
fn the_pure_core_is_read_whole() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for entry in PURE {
        assert!(
            workspace.join(entry).exists(),
            "{entry} is listed but does not exist"
        );
    }
    let seen = sources(&workspace.join("switch/decision/src"));
    for file in [
        "lib.rs",
        "engine.rs",
        "engine/decide.rs",
        "domain/time.rs",
        "snapshot/delta.rs",
    ] {
        let path = workspace.join("switch/decision/src").join(file);
        assert!(seen.contains(&path), "{} is not read", path.display());
    }
    // And a new one: a file written into a nested directory of a copy is found.
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copy.path().join("engine/new")).unwrap();
    std::fs::write(copy.path().join("engine/new/added.rs"), "fn added() {}").unwrap();
    assert_eq!(
        sources(copy.path()),
        vec![copy.path().join("engine/new/added.rs")]
    );
}

/// The compiler keeps the core pure: the `decision` crate depends, even through its
/// dependencies, on no runtime, database or HTTP crate (`cargo tree`, from the lock file).
#[test]
fn the_decision_crate_depends_on_no_runtime_database_or_http() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "decision",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(workspace)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.contains("decision v"), "{tree}");
    assert!(tree.contains("rust_decimal v"), "{tree}");
    for forbidden in ["tokio", "sqlx", "axum", "hyper", "mio "] {
        let found: Vec<&str> = tree
            .lines()
            .filter(|line| line.starts_with(forbidden))
            .collect();
        assert!(found.is_empty(), "decision depends on {found:?}");
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
        "switch/decision/src",
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
