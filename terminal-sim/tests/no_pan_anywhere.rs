//! Goal: no card number of a run appears in clear in any log line, database table or file the
//! switch wrote, and no key is logged (DESIGN.md section 8, STYLE.md section 8).
//!
//! Method: run the demo (generated network, in-process switch, seconds of mixed traffic) with
//! every log line at TRACE level captured, then search the captured logs, the database file and
//! its WAL, and every other file in the run's folder, for each PAN of the network (as digits,
//! and as its hex), for the TMKs and for the key-encryption and PAN-token keys. The network
//! file itself is the operator's input and holds the PANs by design; it is the one file skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use terminal_sim::demo::{self, DemoConfig};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every needle found in `haystack`, by sliding one window per distinct needle length: linear
/// in the haystack for any number of needles.
fn found<'n>(haystack: &[u8], needles: &'n HashMap<Vec<u8>, String>) -> Vec<&'n String> {
    let lengths: HashSet<usize> = needles.keys().map(Vec::len).collect();
    let mut hits = Vec::new();
    for length in lengths {
        for window in haystack.windows(length) {
            if let Some(what) = needles.get(window) {
                hits.push(what);
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pan_or_key_in_logs_database_or_files() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let outcome = demo::run(DemoConfig {
        seconds: 2,
        connections: 4,
        dir: dir.path().to_path_buf(),
        seed: 7,
    })
    .await
    .unwrap();
    assert!(outcome.load.pairs > 0, "the run did some work");
    assert!(
        outcome.failed_checks.is_empty(),
        "{:?}",
        outcome.failed_checks
    );

    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("network.json")).unwrap())
            .unwrap();
    let pans: Vec<String> = network["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pan"].as_str().unwrap().to_string())
        .collect();
    let tmks: Vec<Vec<u8>> = network["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| hex::decode(t["tmk_hex"].as_str().unwrap()).unwrap())
        .collect();
    let keys = [hex::encode([0x5a_u8; 32]), hex::encode([0xa5_u8; 32])];

    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.len() > 1000,
        "logs were captured ({} bytes)",
        logs.len()
    );
    let mut files: Vec<(String, Vec<u8>)> = vec![("captured logs".into(), logs)];
    let mut folders = vec![dir.path().to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.file_name().is_none_or(|name| name != "network.json") {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    assert!(
        files.iter().any(|(name, _)| name.ends_with("lsw.db")),
        "the database was scanned"
    );
    assert!(
        files.iter().any(|(name, _)| name.ends_with("payout.csv")),
        "the settlement files were scanned"
    );
    let mut needles: HashMap<Vec<u8>, String> = HashMap::new();
    for (index, pan) in pans.iter().enumerate() {
        needles.insert(pan.as_bytes().to_vec(), format!("PAN #{index} in clear"));
        needles.insert(
            hex::encode(pan).into_bytes(),
            format!("PAN #{index} in hex"),
        );
    }
    for (index, tmk) in tmks.iter().enumerate() {
        needles.insert(tmk.clone(), format!("TMK #{index}"));
        needles.insert(
            hex::encode(tmk).into_bytes(),
            format!("TMK #{index} in hex"),
        );
    }
    for key in &keys {
        needles.insert(key.clone().into_bytes(), "a switch key".to_string());
    }
    for (name, bytes) in &files {
        let hits = found(bytes, &needles);
        assert!(hits.is_empty(), "{name} holds {hits:?}");
    }
    // The scan itself finds what it looks for.
    let planted = format!("xx{}yy", pans[0]);
    assert_eq!(found(planted.as_bytes(), &needles).len(), 1);
}
