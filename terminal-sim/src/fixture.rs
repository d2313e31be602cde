//! The terminals and cards a simulated run uses, read from an import file (the same file the
//! operator imports, `docs/import-format.md`): its terminals carry their TMKs and its cards
//! their PANs, which is exactly what a terminal and its customers hold.

use protocol::{Ksi, Pan, TerminalId, Tmk, WorkingKeys};
use serde_json::Value;

use protocol::terminal::Terminal;

/// Usable terminals and cards.
#[derive(Debug)]
pub struct Fixture {
    /// Active terminals of active merchants, with their merchant's code.
    pub terminals: Vec<(Terminal, String)>,
    /// Active cards' PANs.
    pub cards: Vec<Pan>,
}

/// Why a fixture cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Not JSON.
    #[error("not json: {0}")]
    Json(#[from] serde_json::Error),
    /// A record that does not fit.
    #[error("{path}: {message}")]
    Record {
        /// JSON path of the record.
        path: String,
        /// What is wrong.
        message: &'static str,
    },
    /// Nothing to drive.
    #[error("no active terminal of an active merchant, or no active card")]
    Empty,
}

impl Fixture {
    /// Reads the terminals and cards of an import file.
    ///
    /// # Errors
    /// [`FixtureError`] naming the record at fault.
    pub fn parse(text: &str) -> Result<Fixture, FixtureError> {
        let document: Value = serde_json::from_str(text)?;
        let active = |record: &Value| {
            record
                .get("status")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "active")
        };
        let active_merchants: Vec<&str> = document["merchants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| active(m))
            .filter_map(|m| m["code"].as_str())
            .collect();
        let mut terminals = Vec::new();
        for (index, record) in document["terminals"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let merchant = record["merchant"].as_str().unwrap_or_default();
            if !active(record) || !active_merchants.contains(&merchant) {
                continue;
            }
            let path = format!("terminals[{index}]");
            let bad = |message| FixtureError::Record {
                path: path.clone(),
                message,
            };
            let tid = TerminalId::parse(
                record["terminal_id"]
                    .as_str()
                    .unwrap_or_default()
                    .as_bytes(),
            )
            .map_err(|_| bad("terminal_id"))?;
            let ksi = Ksi::parse(record["ksi"].as_str().unwrap_or_default().as_bytes())
                .map_err(|_| bad("ksi"))?;
            let tmk = hex::decode(record["tmk_hex"].as_str().unwrap_or_default())
                .map_err(|_| bad("tmk_hex"))?;
            let tmk = Tmk::from_slice(&tmk).map_err(|_| bad("tmk_hex"))?;
            terminals.push((
                Terminal::new(tid, ksi, WorkingKeys::derive(&tmk)),
                merchant.to_string(),
            ));
        }
        let mut cards = Vec::new();
        for (index, record) in document["cards"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !active(record) {
                continue;
            }
            let pan = Pan::parse(record["pan"].as_str().unwrap_or_default().as_bytes()).map_err(
                |_| FixtureError::Record {
                    path: format!("cards[{index}]"),
                    message: "pan",
                },
            )?;
            cards.push(pan);
        }
        if terminals.is_empty() || cards.is_empty() {
            return Err(FixtureError::Empty);
        }
        Ok(Fixture { terminals, cards })
    }

    /// The terminal for connection `index` (cycling), as a fresh copy with its own STANs.
    pub fn terminal(&self, index: usize) -> Terminal {
        let slot = index % self.terminals.len().max(1);
        self.terminals
            .get(slot)
            .map(|(terminal, _)| terminal.clone())
            .unwrap_or_else(|| unreachable!("fixture has terminals"))
    }

    /// Card `index` (cycling).
    pub fn card(&self, index: usize) -> Pan {
        let slot = index % self.cards.len().max(1);
        self.cards
            .get(slot)
            .cloned()
            .unwrap_or_else(|| unreachable!("fixture has cards"))
    }
}
