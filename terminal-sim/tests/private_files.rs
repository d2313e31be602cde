//! Goal (issue 24): the files `lsw-sim demo --dir` keeps that hold secrets or card data (the
//! network file with every PAN and TMK, the database and its WAL, the journal's segments, the
//! switch's log) are the owner's only (0600), and the folders it creates are 0700.
//!
//! Method: the real `lsw-sim demo` for one second of traffic into a folder it creates, then
//! the modes of what it left there.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_demo_keeps_its_secrets_private() {
    let root = tempfile::tempdir().unwrap();
    let kept = root.path().join("kept/demo");
    let output = Command::new(env!("CARGO_BIN_EXE_lsw-sim"))
        .args(["demo", "--seconds", "1", "--dir"])
        .arg(&kept)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mode(&kept), 0o700, "the folder");
    assert_eq!(
        mode(&root.path().join("kept")),
        0o700,
        "its parent, created too"
    );
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&kept).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() && name.starts_with("lsw.db") {
            // The journal's folder: 0700, and every segment in it 0600.
            assert_eq!(mode(&path), 0o700, "{name}");
            let mut segments = 0;
            for segment in std::fs::read_dir(&path).unwrap() {
                let segment = segment.unwrap().path();
                assert_eq!(mode(&segment), 0o600, "{}", segment.display());
                segments += 1;
            }
            assert!(segments > 0, "{name} holds the journal's segments");
            checked.push(name);
        } else if name == "network.json" || name == "switch.log" || name.starts_with("lsw.db") {
            assert_eq!(mode(&path), 0o600, "{name}");
            checked.push(name);
        }
    }
    checked.sort();
    for wanted in ["lsw.db", "lsw.db.journal", "network.json", "switch.log"] {
        assert!(
            checked.iter().any(|name| name == wanted),
            "{wanted} missing: {checked:?}"
        );
    }
}
