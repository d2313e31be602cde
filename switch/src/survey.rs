//! SMS surveys after a purchase (docs/surveys.md), all of it off the switch's hot path:
//!
//! - [`scheduler`]: a task beside the committer that turns confirmed purchases whose delay
//!   has passed into one survey request and one outbox row each, under the member's cap.
//! - [`inbound`]: a member's reply, posted by the SMS gateway: recorded once per gateway
//!   message id, matched to the member's open survey, parsed and stored.
//!
//! The operator API's side (the survey of a merchant, the webhook, the report) is
//! `crate::api::surveys`; the pure parts (scale, parsing, rounding) are
//! `crate::domain::survey`.

pub mod inbound;
pub mod scheduler;

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest inbound secret accepted, in bytes: HMAC-SHA256 keys shorter than this are easy
/// to guess.
pub const INBOUND_SECRET_BYTES_MIN: usize = 16;

/// The secret the SMS gateway signs its webhooks with (`LSW_SMS_INBOUND_SECRET`): only ever
/// read from the environment, never printed.
#[derive(Clone)]
pub struct InboundSecret(Vec<u8>);

impl InboundSecret {
    /// The secret's text (surrounding white space removed).
    ///
    /// # Errors
    /// A reason when it is shorter than [`INBOUND_SECRET_BYTES_MIN`] or holds characters
    /// other than visible ASCII.
    pub fn new(text: &str) -> Result<InboundSecret, &'static str> {
        let text = text.trim();
        if text.len() < INBOUND_SECRET_BYTES_MIN {
            return Err("must be at least 16 characters");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ascii characters");
        }
        Ok(InboundSecret(text.as_bytes().to_vec()))
    }

    /// Whether `signature` (64 hex digits, either case, optionally behind `sha256=`) is the
    /// HMAC-SHA256 of `body` under this secret; compared in constant time.
    pub fn verifies(&self, body: &[u8], signature: &str) -> bool {
        let hex_text = signature.trim();
        let hex_text = hex_text.strip_prefix("sha256=").unwrap_or(hex_text);
        let Ok(tag) = hex::decode(hex_text) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&tag).is_ok()
    }

    /// The signature of `body`, as the gateway sends it (lowercase hex): for tests and for
    /// the documentation's example.
    pub fn sign(&self, body: &[u8]) -> String {
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(body);
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }
}

impl fmt::Debug for InboundSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InboundSecret(<redacted>)")
    }
}

/// What the scheduler and the webhook need to know (docs/config.md).
#[derive(Debug, Clone)]
pub struct SurveySettings {
    /// How often the scheduler looks for purchases whose survey is due.
    pub every: Duration,
    /// A reply is taken this long after its survey was delivered, no longer.
    pub reply_window_ms: i64,
    /// A survey due longer ago than this (the switch was stopped) is not sent.
    pub catch_up_ms: i64,
    /// The confirm timeout: how long after its request a purchase may still be captured.
    pub hold_timeout_ms: i64,
    /// The webhook's secret; without it the webhook answers 503.
    pub inbound_secret: Option<InboundSecret>,
}
