//! Purchases over a [`Network`]: which terminal, card, processing code and amount, drawn from a
//! seeded generator so every run sends the same requests.
//!
//! The mix is that of a loyalty network at the till: 40 % `000000` (discount, rest by bank
//! card), 20 % `006100` (store credit first), 25 % `006500` (club balance), 15 % `006700`
//! (store credit, then club). Half of the store-credit purchases go where the card has credit,
//! so that path draws on real lots; the rest pick any card at any terminal. Amounts are
//! 10 000 to 5 000 000 rials in steps of 10 000.

use protocol::terminal::{Outgoing, Terminal as TerminalClient};
use protocol::ProcessingCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::network::{pan, Network};

/// Processing codes with their weights out of 100.
const MIX: [(ProcessingCode, u32); 4] = [
    (ProcessingCode::BankPurchase, 40),
    (ProcessingCode::BankPurchaseStoreCredit, 20),
    (ProcessingCode::ClubPurchase, 25),
    (ProcessingCode::MixedPurchase, 15),
];

/// A seeded stream of purchases over one network.
#[derive(Debug)]
pub struct Traffic {
    rng: StdRng,
    cards: usize,
    terminals: usize,
    store_credit: Vec<(usize, usize)>,
    nonce: u64,
}

/// One purchase built by a terminal.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Index of the terminal (and of its merchant).
    pub terminal: usize,
    /// The request as sent.
    pub outgoing: Outgoing,
}

impl Traffic {
    /// A stream over `network`, seeded by `seed`.
    pub fn new(network: &Network, seed: u64) -> Traffic {
        Traffic {
            rng: StdRng::seed_from_u64(seed),
            cards: network.reference.data.cards.len(),
            terminals: network.reference.data.terminals.len(),
            store_credit: network.store_credit.clone(),
            nonce: 0,
        }
    }

    /// The next purchase, built and sealed by its terminal (which counts its STAN up) with
    /// field 7 at `at_seconds`.
    ///
    /// # Panics
    /// When the terminal refuses to build it (a bug).
    pub fn purchase(&mut self, terminals: &mut [TerminalClient], at_seconds: i64) -> Sent {
        let code = self.code();
        let with_credit = matches!(
            code,
            ProcessingCode::BankPurchaseStoreCredit | ProcessingCode::MixedPurchase
        );
        let (card, terminal) = if with_credit && !self.store_credit.is_empty() && self.rng.gen() {
            self.store_credit[self.rng.gen_range(0..self.store_credit.len())]
        } else {
            (
                self.rng.gen_range(0..self.cards),
                self.rng.gen_range(0..self.terminals),
            )
        };
        let amount = 10_000 * self.rng.gen_range(1..=500_u64);
        self.nonce += 1;
        let mut nonce = [0_u8; 12];
        nonce[4..].copy_from_slice(&self.nonce.to_be_bytes());
        let outgoing = terminals[terminal]
            .purchase(code, Some(amount), &pan(card), at_seconds, nonce)
            .expect("purchase builds");
        Sent { terminal, outgoing }
    }

    fn code(&mut self) -> ProcessingCode {
        let mut roll = self.rng.gen_range(0..100);
        for (code, weight) in MIX {
            if roll < weight {
                return code;
            }
            roll -= weight;
        }
        ProcessingCode::BankPurchase
    }
}
