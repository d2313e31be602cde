//! Effects: what a decision changes, for the committer to make durable in one database
//! transaction per batch. Every effect is applied with conditions that make a second
//! application fail rather than count twice (docs/design.md sections 5 and 6).

use crate::domain::{CardId, MerchantId, Rials, UnixMillis};
use crate::engine::state::{LotId, MessageKey, Txn, TxnId};

/// Which balance an exception concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Account {
    /// The card's club balance.
    Club,
    /// The card's store credit at a merchant.
    StoreCredit,
}

impl Account {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Account::Club => "club",
            Account::StoreCredit => "store_credit",
        }
    }
}

/// A new store-credit lot (cashback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewLot {
    /// Its id, assigned by the engine.
    pub id: LotId,
    /// Card.
    pub card: CardId,
    /// Merchant where it can be used.
    pub merchant: MerchantId,
    /// Amount.
    pub amount: Rials,
    /// Expiry.
    pub expires_at: Option<UnixMillis>,
}

/// One durable change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    /// An approved request: the transaction row and its holds.
    Hold {
        /// The new transaction (state pending).
        txn: Box<Txn>,
    },
    /// A confirm: the holds released and the amounts captured from the ledgers.
    Capture {
        /// The transaction.
        txn: TxnId,
        /// Card and merchant.
        card: CardId,
        /// The merchant.
        merchant: MerchantId,
        /// The purchase amount G, for the member's notification.
        gross: Rials,
        /// The discount it got, for the member's notification.
        discount: Rials,
        /// Club held by the request, released now (zero on the advice path).
        club_held: Rials,
        /// Store credit held by the request, released now.
        store_held: Rials,
        /// Club captured.
        club: Rials,
        /// Store credit captured, by lot.
        lots: Vec<(LotId, Rials)>,
        /// What the ledger could not cover (advice path), per account.
        shortfalls: Vec<(Account, Rials)>,
        /// Cashback issued.
        cashback: Option<NewLot>,
        /// When.
        at: UnixMillis,
    },
    /// A reversal of a pending request, or the sweeper's timeout: holds released.
    Release {
        /// The transaction.
        txn: TxnId,
        /// Card and merchant.
        card: CardId,
        /// The merchant.
        merchant: MerchantId,
        /// Club released.
        club: Rials,
        /// Store credit released.
        store_credit: Rials,
        /// Reversed (true) or expired (false) is told by `reversal`.
        reason: ReleaseReason,
        /// When.
        at: UnixMillis,
    },
    /// A reversal of a confirmed, unsettled transaction: captured amounts returned, cashback
    /// clawed back.
    Return {
        /// The transaction.
        txn: TxnId,
        /// Card and merchant.
        card: CardId,
        /// The merchant.
        merchant: MerchantId,
        /// Club returned.
        club: Rials,
        /// Store credit returned, to the lots it came from.
        lots: Vec<(LotId, Rials)>,
        /// Cashback taken back from its lot.
        clawback: Option<(LotId, Rials)>,
        /// Cashback already spent, recorded as an exception.
        clawback_shortfall: Rials,
        /// When.
        at: UnixMillis,
    },
    /// A reversal of an expired transaction: only its state changes.
    MarkReversed {
        /// The transaction.
        txn: TxnId,
        /// When.
        at: UnixMillis,
    },
    /// A reversal of a settled transaction: refused (`12`) and recorded for the finance team.
    LateReversal {
        /// The settled transaction.
        txn: TxnId,
        /// The club amount its merchant was paid for.
        club: Rials,
        /// When.
        at: UnixMillis,
    },
    /// A reversal whose original was never seen.
    Tombstone {
        /// The original's key.
        key: MessageKey,
        /// When.
        at: UnixMillis,
    },
    /// The answer given to a message, for retransmissions.
    Answer {
        /// The message's key.
        key: MessageKey,
        /// Its content fingerprint.
        fingerprint: crate::engine::state::Fingerprint,
        /// The answer's fields (stored as [`crate::engine::AnswerFields::record`]).
        answer: crate::engine::AnswerFields,
        /// When.
        at: UnixMillis,
    },
    /// A top-up or a store-credit grant, with its audit row.
    Credit(Box<crate::engine::credit::CreditRecord>),
    /// A card's balances moved to its replacement, with its audit row.
    Transfer(Box<crate::engine::credit::TransferRecord>),
    /// A member coupon issued.
    CouponIssued(Box<crate::engine::coupon::CouponRecord>),
    /// A coupon held, used or made available again; `from` is the condition of the update.
    CouponState {
        /// The coupon.
        coupon: crate::domain::CouponId,
        /// Its state before.
        from: crate::engine::coupon::CouponState,
        /// Its state now.
        to: crate::engine::coupon::CouponState,
        /// When.
        at: UnixMillis,
    },
    /// A confirm on the advice path whose coupon another purchase has used meanwhile: its
    /// discount was given twice; recorded as an exception.
    CouponShortfall {
        /// The transaction.
        txn: TxnId,
        /// The coupon.
        coupon: crate::domain::CouponId,
        /// The coupon's part of its discount.
        amount: Rials,
        /// When.
        at: UnixMillis,
    },
    /// A referral rewarded (its two coupons are issued just before).
    Referral {
        /// The referred member.
        referred: crate::domain::MemberId,
        /// The reward.
        referral: crate::engine::referral::Referral,
        /// When.
        at: UnixMillis,
    },
    /// The purchase that earned a referral reward was reversed.
    ReferralReversed {
        /// The referred member.
        referred: crate::domain::MemberId,
        /// When.
        at: UnixMillis,
    },
    /// A recompute changed the tier a member's activity earns.
    TierChange(Box<crate::engine::tier::TierChange>),
}

/// Why holds are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReleaseReason {
    /// A reversal.
    Reversal,
    /// The confirm timeout.
    Expiry,
}
