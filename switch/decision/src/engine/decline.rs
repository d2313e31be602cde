//! The one place a decline becomes field 39 (docs/protocol.md section 6, docs/style.md section 6).

use protocol::message::Reject;
use protocol::ResponseCode;

use crate::engine::balance::BalanceFault;

/// Why the engine refuses a request. Each variant maps to exactly one response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// A protocol-level failure found by the codec's checks.
    Protocol(Reject),
    /// Field 7 is outside the 300 s window (step 5).
    StaleClock,
    /// The KSI is a terminal's previous key and its rotation's overlap has ended (step 3).
    KeyExpired,
    /// The same retransmission key with other content.
    DuplicateStan,
    /// Field 49 is not the merchant's currency.
    CurrencyMismatch,
    /// A confirm's or reversal's field 3 or 4 differs from the original's.
    FollowUpMismatch,
    /// The original of a confirm is unknown, or field 37 is not its RRN.
    OriginalNotFound,
    /// A state conflict: confirming a reversed, declined or inquiry transaction, reversing a
    /// settled one, or an original whose reversal arrived first.
    StateConflict,
    /// The terminal is not active.
    TerminalInactive,
    /// The merchant is not active.
    MerchantInactive,
    /// The card is not enrolled.
    CardUnknown,
    /// The PAN fails the Luhn check.
    Luhn,
    /// The card is blocked.
    CardBlocked,
    /// The card is past its expiry.
    CardExpired,
    /// G is over the merchant's per-transaction limit.
    OverLimit,
    /// The balance does not cover what the processing code requires.
    Insufficient,
    /// The switch could not complete the work (database); nothing was changed.
    System,
    /// The balances refused the request's operation (a release of more than is held, a
    /// ledger past the largest amount): a bug or a corrupt state, never valid input. Nothing
    /// was changed; the shell logs the fault.
    Balance(BalanceFault),
}

impl Decline {
    /// The only mapping from a decline to its response code; no `_` arm, so a new variant
    /// cannot compile without one.
    pub fn response_code(&self) -> ResponseCode {
        match self {
            Decline::Protocol(reject) => reject.response_code(),
            Decline::StaleClock | Decline::KeyExpired => ResponseCode::Security,
            Decline::DuplicateStan => ResponseCode::DuplicateStan,
            Decline::CurrencyMismatch | Decline::FollowUpMismatch => ResponseCode::InvalidAmount,
            Decline::OriginalNotFound => ResponseCode::OriginalNotFound,
            Decline::StateConflict => ResponseCode::InvalidTransaction,
            Decline::TerminalInactive => ResponseCode::TerminalNotActive,
            Decline::MerchantInactive => ResponseCode::MerchantNotActive,
            Decline::CardUnknown | Decline::Luhn => ResponseCode::CardNotEnrolled,
            Decline::CardBlocked => ResponseCode::CardBlocked,
            Decline::CardExpired => ResponseCode::CardExpired,
            Decline::OverLimit => ResponseCode::OverLimit,
            Decline::Insufficient => ResponseCode::Insufficient,
            Decline::System | Decline::Balance(_) => ResponseCode::SystemError,
        }
    }
}

/// The approval code; the only `00` outside the table above.
pub fn approved() -> ResponseCode {
    ResponseCode::Approved
}
