//! Which messages a batch's effects send: the outbox rows planned from the engine's effects,
//! each rendered in both languages (docs/notifications.md). The store writes them with the
//! batch (`store::batch`), keeping the member's language; it decides none of them.

use crate::domain::{Locale, Rials};
use crate::engine::coupon::CouponRecord;
use crate::engine::credit::CreditRecord;
use crate::engine::effect::{Effect, NewLot};
use crate::engine::state::LotId;
use crate::engine::tier::TierChange;
use crate::notify::templates::Message;

/// An outbox row to write if the card's member has a phone: both languages are rendered, the
/// database keeps the member's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The idempotency key: the event's own, so a re-applied event never notifies twice.
    pub key: String,
    /// The card whose member is told.
    pub card: i64,
    /// The message's kind.
    pub kind: &'static str,
    /// The text in Persian.
    pub fa: String,
    /// The text in English.
    pub en: String,
    /// When, in Unix milliseconds.
    pub at: i64,
}

impl Notice {
    fn new(key: String, card: i64, message: &Message<'_>, at: i64) -> Notice {
        Notice {
            key,
            card,
            kind: message.kind(),
            fa: message.render(Locale::Fa),
            en: message.render(Locale::En),
            at,
        }
    }
}

/// Adds to `out` the notices `effect` sends, in order: a confirm's purchase and its cashback,
/// an operator's top-up or store credit, a coupon issued to a card, a tier change the member
/// can see. Other effects send none.
pub fn notices(effect: &Effect, out: &mut Vec<Notice>) {
    match effect {
        Effect::Capture {
            txn,
            card,
            gross,
            discount,
            club,
            lots,
            cashback,
            at,
            ..
        } => capture(
            txn.0,
            card.get(),
            [*gross, *discount, *club],
            lots,
            cashback,
            at.get(),
            out,
        ),
        Effect::Credit(record) => out.push(credit(record)),
        Effect::CouponIssued(record) => out.extend(coupon(record)),
        Effect::TierChange(change) => out.extend(tier(change)),
        _ => {}
    }
}

/// The member's messages of a confirm: the purchase (`amounts`: gross, discount, club), and
/// the cashback it credited. Keys come from the transaction, so a re-applied capture cannot
/// write a second row.
fn capture(
    txn: i64,
    card: i64,
    [gross, discount, club]: [Rials; 3],
    lots: &[(LotId, Rials)],
    cashback: &Option<NewLot>,
    at: i64,
    out: &mut Vec<Notice>,
) {
    // The engine's capture takes at most the purchase's store credit, a part of G.
    let store_credit = lots.iter().fold(Rials::ZERO, |sum, (_, amount)| {
        sum.asserted_add(*amount, "a capture's lots sum to at most its store credit")
    });
    let purchase = Message::Purchase {
        gross,
        discount,
        club,
        store_credit,
    };
    out.push(Notice::new(format!("capture:{txn}"), card, &purchase, at));
    if let Some(lot) = cashback {
        let message = Message::Cashback { amount: lot.amount };
        let key = format!("cashback:{txn}");
        out.push(Notice::new(key, lot.card.get(), &message, at));
    }
}

/// A coupon issued to a card: its notice (a coupon without a card goes by the campaign's own
/// message, if any).
fn coupon(record: &CouponRecord) -> Option<Notice> {
    let card = record.card?;
    let terms = &record.coupon.terms;
    let message = Message::Coupon {
        kind: terms.kind,
        cap: terms.discount_rials_max,
        expires_at: terms.expires_at,
    };
    let key = format!("coupon:{}", record.coupon.id.get());
    Some(Notice::new(key, card.get(), &message, record.at.get()))
}

/// A tier change the member can see: its notice.
fn tier(change: &TierChange) -> Option<Notice> {
    if !change.is_visible() {
        return None;
    }
    let message = Message::Tier {
        name: change.to_name.as_deref(),
        promoted: change.promoted,
    };
    let key = format!("tier:{}:{}", change.txn.0, change.cause.as_str());
    Some(Notice::new(
        key,
        change.card.get(),
        &message,
        change.at.get(),
    ))
}

/// An operator's top-up or store credit.
fn credit(record: &CreditRecord) -> Notice {
    let credit = &record.credit;
    let message = match credit.merchant {
        None => Message::TopUp {
            amount: credit.amount,
        },
        Some(_) => Message::StoreCredit {
            amount: credit.amount,
        },
    };
    let key = format!("credit:{}", credit.key);
    Notice::new(key, credit.card.get(), &message, record.at.get())
}
