//! Goal (issue 24, acceptance 3): `lsw-settle` given a wrong PAN token key or a wrong KEK
//! stops with a message naming the key and changes nothing; given the right keys, or none
//! (settlement needs neither), it runs.
//!
//! Method: a temporary database with a sale made by the real engine and the keys' check
//! values recorded as `lsw-switch import` records them; `lsw-settle run` as a process with
//! `LSW_KEK` and `LSW_PAN_TOKEN_KEY` set, one of them wrong; the database dump and the output
//! directory before and after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;
use protocol::ProcessingCode::ClubPurchase;
use switch::domain::{Kek, PanTokenKey};

const KEK: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const PAN_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const WRONG: &str = "3333333333333333333333333333333333333333333333333333333333333333";

async fn network() -> Net {
    let net = Net::new(at("2026-11-01", 8, 0, 0)).await;
    let (kek, pan_key) = (
        Kek::from_bytes([0x11; 32]),
        PanTokenKey::from_bytes([0x22; 32]),
    );
    switch::keycheck::record(
        &net.pool,
        switch::keycheck::Keys::both(&kek, &pan_key),
        at("2026-11-01", 8, 0, 0),
    )
    .await
    .unwrap();
    net
}

fn settle(net: &Net, keys: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lsw-settle"));
    command
        .env_remove("LSW_KEK")
        .env_remove("LSW_PAN_TOKEN_KEY")
        .args(["--db", &net.url, "--out"])
        .arg(net.dir.path().join("out"));
    for (name, value) in keys {
        command.env(name, value);
    }
    command.arg("run").output().unwrap()
}

async fn wrong_key_stops_settle(variable: &str) {
    let mut net = network().await;
    net.sale(0, ClubPurchase, 350_000, RICH, at("2026-11-01", 9, 0, 0))
        .await;
    let before = net.dump().await;
    let keys: Vec<(&str, &str)> = [("LSW_KEK", KEK), ("LSW_PAN_TOKEN_KEY", PAN_KEY)]
        .into_iter()
        .map(|(name, value)| (name, if name == variable { WRONG } else { value }))
        .collect();
    let output = settle(&net, &keys);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{variable} is not the key this database was set up with"
        )),
        "the message does not name {variable}: {stderr}"
    );
    assert_eq!(
        net.dump().await,
        before,
        "a wrong {variable} changed the database"
    );
    assert!(
        files(&net.dir.path().join("out")).is_empty(),
        "files written"
    );

    // The right keys, or none, and the same command closes the due cycles.
    for keys in [
        vec![("LSW_KEK", KEK), ("LSW_PAN_TOKEN_KEY", PAN_KEY)],
        vec![],
    ] {
        let output = settle(&net, &keys);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{keys:?}: {stderr}");
    }
    assert_ne!(net.dump().await, before, "the cycle was not closed");
}

#[tokio::test]
async fn a_wrong_pan_token_key_stops_settle() {
    wrong_key_stops_settle("LSW_PAN_TOKEN_KEY").await;
}

#[tokio::test]
async fn a_wrong_kek_stops_settle() {
    wrong_key_stops_settle("LSW_KEK").await;
}
