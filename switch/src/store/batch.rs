//! The group commit's write plan: a batch of effects folded into a few set-based statements
//! (one multi-row `INSERT` or `UPDATE … FROM (VALUES …)` per table), so a batch of 500
//! request+confirm pairs costs about a dozen statements instead of thousands.
//!
//! Folding is pure ([`Plan::fold`]); writing ([`Plan::write`]) runs inside the caller's
//! database transaction. The database still guards every rule the engine relies on, so a
//! plan that disagrees with it fails whole instead of counting anything twice:
//! - balances and lots have `CHECK`s: no ledger, hold or lot below zero, no hold above its
//!   ledger;
//! - a trigger allows only the state transitions of docs/design.md section 5;
//! - captures, capture lots and answered messages have primary keys, so a second capture or
//!   answer is refused;
//! - every `UPDATE` must touch exactly the rows it names.

use std::collections::{BTreeMap, HashMap};

use crate::store::sql::QueryBuilder;
use crate::store::{Backend, Conn};

use crate::domain::{MerchantId, Rials, RuleKind, UnixMillis};
use crate::engine::coupon::{CouponRecord, CouponState};
use crate::engine::credit::{CreditRecord, TransferRecord};
use crate::engine::effect::{Account, Effect, NewLot, ReleaseReason};
use crate::engine::referral::Referral;
use crate::engine::state::{MessageKey, Txn};
use crate::engine::tier::TierChange;
use crate::notify::plan::{self, Notice};
use crate::store::ledger::LedgerError;

/// Rows per multi-row statement: keeps the bound parameters (at most 28 per row) far below
/// SQLite's limit of 32 766.
pub const ROWS_PER_STATEMENT: usize = 500;

/// Final values of a transaction's state columns after the batch.
#[derive(Debug, Clone, Copy, Default)]
struct Patch {
    state: Option<&'static str>,
    confirmed_at: Option<i64>,
    reversed_at: Option<i64>,
    expired_at: Option<i64>,
    cashback_lot: Option<i64>,
}

/// A coupon row to write, in effect order (an issue comes before the moves of its coupon).
#[derive(Debug, Clone, Copy)]
enum CouponOp<'a> {
    Issue(&'a CouponRecord),
    Move {
        coupon: i64,
        from: CouponState,
        to: CouponState,
    },
    Shortfall {
        txn: i64,
        coupon: i64,
        amount: i64,
        at: i64,
    },
    Referral {
        referred: i64,
        referral: Referral,
        at: i64,
    },
    ReferralReversed {
        referred: i64,
        at: i64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Movement {
    card: i64,
    merchant: Option<i64>,
    delta: i64,
    kind: &'static str,
    txn: Option<i64>,
    at: i64,
}

/// A batch of effects, folded per table.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    inserts: Vec<(&'a Txn, Patch)>,
    inserted: HashMap<i64, usize>,
    patches: BTreeMap<i64, Patch>,
    club: BTreeMap<i64, (i64, i64)>,
    store: BTreeMap<(i64, i64), (i64, i64)>,
    lots: BTreeMap<i64, i64>,
    new_lots: Vec<(NewLot, Option<i64>, &'static str)>,
    new_clubs: Vec<i64>,
    credits: Vec<&'a CreditRecord>,
    transfers: Vec<&'a TransferRecord>,
    tier_changes: Vec<&'a TierChange>,
    coupon_ops: Vec<CouponOp<'a>>,
    movements: Vec<Movement>,
    captures: Vec<(i64, i64, i64, i64)>,
    capture_lots: Vec<(i64, i64, i64)>,
    returned: Vec<(i64, i64)>,
    exceptions: Vec<(&'static str, i64, &'static str, i64, i64)>,
    tombstones: Vec<(&'a MessageKey, i64)>,
    answers: Vec<(&'a MessageKey, &'a [u8; 32], Vec<u8>, i64)>,
    notices: Vec<Notice>,
}

impl<'a> Plan<'a> {
    /// Folds effects, in order, into net changes per row.
    pub fn fold(effects: &'a [Effect]) -> Plan<'a> {
        let mut plan = Plan::default();
        for effect in effects {
            plan::notices(effect, &mut plan.notices);
            plan.add(effect);
        }
        plan
    }

    fn add(&mut self, effect: &'a Effect) {
        match effect {
            Effect::Hold { txn } => {
                self.inserted.insert(txn.id.0, self.inserts.len());
                self.inserts.push((
                    txn,
                    Patch {
                        state: Some("pending"),
                        ..Patch::default()
                    },
                ));
                self.club_delta(txn.card.get(), 0, txn.amounts.club.get());
                if txn.amounts.store_credit.get() > 0 {
                    let key = (txn.card.get(), txn.merchant.get());
                    self.store_delta(key, 0, txn.amounts.store_credit.get());
                }
            }
            Effect::Capture { .. } => self.capture(effect),
            Effect::Release { .. } => self.release(effect),
            Effect::Return { .. } => self.give_back(effect),
            Effect::MarkReversed { txn, at } => {
                let patch = self.patch(txn.0);
                patch.state = Some("reversed");
                patch.reversed_at = Some(at.get());
            }
            Effect::LateReversal { txn, club, at } => {
                self.exceptions.push((
                    "late_reversal",
                    txn.0,
                    Account::Club.as_str(),
                    club.get(),
                    at.get(),
                ));
            }
            Effect::Tombstone { key, at } => self.tombstones.push((key, at.get())),
            Effect::Answer {
                key,
                fingerprint,
                answer,
                at,
            } => {
                // The answer's fields, not its bytes: a retransmission's response is built
                // from them again (`engine::answer`), here on the writer's task.
                self.answers
                    .push((key, fingerprint, answer.record(key.mti, key.stan), at.get()));
            }
            Effect::Credit(record) => self.credit(record),
            Effect::Transfer(record) => self.transfer(record),
            Effect::CouponIssued(_) => self.coupon_issued(effect),
            Effect::CouponState {
                coupon, from, to, ..
            } => {
                self.coupon_ops.push(CouponOp::Move {
                    coupon: coupon.get(),
                    from: *from,
                    to: *to,
                });
            }
            Effect::CouponShortfall {
                txn,
                coupon,
                amount,
                at,
            } => self.coupon_ops.push(CouponOp::Shortfall {
                txn: txn.0,
                coupon: coupon.get(),
                amount: amount.get(),
                at: at.get(),
            }),
            Effect::Referral {
                referred,
                referral,
                at,
            } => self.coupon_ops.push(CouponOp::Referral {
                referred: referred.get(),
                referral: *referral,
                at: at.get(),
            }),
            Effect::ReferralReversed { referred, at } => {
                self.coupon_ops.push(CouponOp::ReferralReversed {
                    referred: referred.get(),
                    at: at.get(),
                });
            }
            Effect::TierChange(_) => self.tier_change(effect),
        }
    }

    /// A confirm's capture: balances, movements, lots taken, its cashback lot and its notices.
    fn capture(&mut self, effect: &'a Effect) {
        // Called for this variant only.
        let Effect::Capture {
            txn,
            card,
            merchant,
            club_held,
            store_held,
            club,
            lots,
            shortfalls,
            cashback,
            at,
            ..
        } = effect
        else {
            return;
        };
        let (card, merchant, txn, at) = (card.get(), merchant.get(), txn.0, at.get());
        self.club_delta(card, -club.get(), -club_held.get());
        if store_held.get() > 0 {
            self.store_delta((card, merchant), 0, -store_held.get());
        }
        if club.get() > 0 {
            self.movement(card, None, -club.get(), "capture", txn, at);
        }
        let mut store_total = 0;
        for (lot, amount) in lots {
            self.take_lot(txn, (card, merchant), lot.0, amount.get(), "capture", at);
            self.capture_lots.push((txn, lot.0, amount.get()));
            store_total += amount.get();
        }
        self.captures.push((txn, at, club.get(), store_total));
        for (account, shortfall) in shortfalls {
            self.exceptions.push((
                "advice_shortfall",
                txn,
                account.as_str(),
                shortfall.get(),
                at,
            ));
        }
        if let Some(lot) = cashback {
            self.new_lots.push((*lot, Some(txn), "cashback"));
            let key = (lot.card.get(), lot.merchant.get());
            self.store_delta(key, lot.amount.get(), 0);
            self.movement(key.0, Some(key.1), lot.amount.get(), "cashback", txn, at);
        }
        let patch = self.patch(txn);
        patch.state = Some("confirmed");
        patch.confirmed_at = Some(at);
        patch.cashback_lot = cashback.map(|lot| lot.id.0);
    }

    /// A reversal of a captured purchase: what it gave back and what its cashback clawed back.
    fn give_back(&mut self, effect: &'a Effect) {
        // Called for this variant only.
        let Effect::Return {
            txn,
            card,
            merchant,
            club,
            lots,
            clawback,
            clawback_shortfall,
            at,
        } = effect
        else {
            return;
        };
        let (card, merchant, txn, at) = (card.get(), merchant.get(), txn.0, at.get());
        self.club_delta(card, club.get(), 0);
        if club.get() > 0 {
            self.movement(card, None, club.get(), "return", txn, at);
        }
        for (lot, amount) in lots {
            *self.lots.entry(lot.0).or_insert(0) += amount.get();
            self.store_delta((card, merchant), amount.get(), 0);
            self.movement(card, Some(merchant), amount.get(), "return", txn, at);
        }
        if let Some((lot, amount)) = clawback.filter(|(_, amount)| amount.get() > 0) {
            self.take_lot(
                txn,
                (card, merchant),
                lot.0,
                amount.get(),
                "cashback_clawback",
                at,
            );
        }
        if clawback_shortfall.get() > 0 {
            let kind = "cashback_clawback_shortfall";
            self.exceptions.push((
                kind,
                txn,
                Account::StoreCredit.as_str(),
                clawback_shortfall.get(),
                at,
            ));
        }
        self.returned.push((txn, at));
        let patch = self.patch(txn);
        patch.state = Some("reversed");
        patch.reversed_at = Some(at);
    }

    /// A hold released, by a reversal or its expiry.
    fn release(&mut self, effect: &'a Effect) {
        // Called for this variant only.
        let Effect::Release {
            txn,
            card,
            merchant,
            club,
            store_credit,
            reason,
            at,
        } = effect
        else {
            return;
        };
        self.club_delta(card.get(), 0, -club.get());
        if store_credit.get() > 0 {
            self.store_delta((card.get(), merchant.get()), 0, -store_credit.get());
        }
        let patch = self.patch(txn.0);
        match reason {
            ReleaseReason::Reversal => {
                patch.state = Some("reversed");
                patch.reversed_at = Some(at.get());
            }
            ReleaseReason::Expiry => {
                patch.state = Some("expired");
                patch.expired_at = Some(at.get());
            }
        }
    }

    /// A coupon issued, with its notice when it names a card to text.
    fn coupon_issued(&mut self, effect: &'a Effect) {
        // Called for this variant only.
        let Effect::CouponIssued(record) = effect else {
            return;
        };
        self.coupon_ops.push(CouponOp::Issue(record));
    }

    /// A member's tier changed, with its notice when the member can see it.
    fn tier_change(&mut self, effect: &'a Effect) {
        // Called for this variant only.
        let Effect::TierChange(change) = effect else {
            return;
        };
        self.tier_changes.push(change);
    }

    /// A top-up raises the club ledger; a grant adds a lot; both are one movement and one
    /// `balance_credits` row (whose key is the primary key: a credit never counts twice).
    fn credit(&mut self, record: &'a CreditRecord) {
        let credit = &record.credit;
        let (card, amount, at) = (credit.card.get(), credit.amount.get(), record.at.get());
        match (credit.merchant, record.lot) {
            (Some(merchant), Some(lot)) => {
                let key = (card, merchant.get());
                self.new_lots.push((lot, None, "grant"));
                self.store_delta(key, amount, 0);
                self.push_movement(card, Some(key.1), amount, "grant", None, at);
            }
            _ => {
                self.new_clubs.push(card);
                self.club_delta(card, amount, 0);
                self.push_movement(card, None, amount, "top_up", None, at);
            }
        }
        self.credits.push(record);
    }

    /// A replacement: the old card's club balance and lots leave it, the new card's come in,
    /// each as a movement (`replace_out`, `replace_in`), with one `card_replacements` row.
    fn transfer(&mut self, record: &'a TransferRecord) {
        let (from, to, at) = (
            record.transfer.from.get(),
            record.transfer.to.get(),
            record.at.get(),
        );
        let club = record.club.get();
        if club > 0 {
            self.new_clubs.push(to);
            self.club_delta(from, -club, 0);
            self.club_delta(to, club, 0);
            self.push_movement(from, None, -club, "replace_out", None, at);
            self.push_movement(to, None, club, "replace_in", None, at);
        }
        for (old, lot) in &record.lots {
            let (merchant, amount) = (lot.merchant.get(), lot.amount.get());
            *self.lots.entry(old.0).or_insert(0) -= amount;
            self.store_delta((from, merchant), -amount, 0);
            self.push_movement(from, Some(merchant), -amount, "replace_out", None, at);
            self.new_lots.push((*lot, None, "replace"));
            self.store_delta((to, merchant), amount, 0);
            self.push_movement(to, Some(merchant), amount, "replace_in", None, at);
        }
        self.transfers.push(record);
    }

    fn push_movement(
        &mut self,
        card: i64,
        merchant: Option<i64>,
        delta: i64,
        kind: &'static str,
        txn: Option<i64>,
        at: i64,
    ) {
        self.movements.push(Movement {
            card,
            merchant,
            delta,
            kind,
            txn,
            at,
        });
    }

    /// The patch of a transaction: of its insert when it is new in this batch.
    fn patch(&mut self, txn: i64) -> &mut Patch {
        if let Some(index) = self.inserted.get(&txn) {
            if let Some((_, patch)) = self.inserts.get_mut(*index) {
                return patch;
            }
        }
        self.patches.entry(txn).or_default()
    }

    fn club_delta(&mut self, card: i64, ledger: i64, held: i64) {
        if ledger == 0 && held == 0 {
            return;
        }
        let entry = self.club.entry(card).or_insert((0, 0));
        entry.0 += ledger;
        entry.1 += held;
    }

    fn store_delta(&mut self, key: (i64, i64), ledger: i64, held: i64) {
        if ledger == 0 && held == 0 {
            return;
        }
        let entry = self.store.entry(key).or_insert((0, 0));
        entry.0 += ledger;
        entry.1 += held;
    }

    fn take_lot(
        &mut self,
        txn: i64,
        key: (i64, i64),
        lot: i64,
        amount: i64,
        kind: &'static str,
        at: i64,
    ) {
        *self.lots.entry(lot).or_insert(0) -= amount;
        self.store_delta(key, -amount, 0);
        self.movement(key.0, Some(key.1), -amount, kind, txn, at);
    }

    fn movement(
        &mut self,
        card: i64,
        merchant: Option<i64>,
        delta: i64,
        kind: &'static str,
        txn: i64,
        at: i64,
    ) {
        self.push_movement(card, merchant, delta, kind, Some(txn), at);
    }

    /// Writes the plan inside the caller's transaction.
    ///
    /// # Errors
    /// [`LedgerError`] when the database fails or refuses a row; the caller rolls back.
    pub async fn write(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        self.write_transactions(conn).await?;
        self.write_balances(conn).await?;
        self.write_records(conn).await?;
        self.write_tiers(conn).await?;
        self.write_coupons(conn).await?;
        self.write_notices(conn).await
    }

    /// Coupon issues, state changes and exceptions, in order. Few purchases carry a coupon:
    /// one statement each. A state change names the state it leaves and must touch its row.
    async fn write_coupons(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for op in &self.coupon_ops {
            match *op {
                CouponOp::Issue(record) => {
                    let coupon = &record.coupon;
                    let terms = &coupon.terms;
                    let (percent, fixed) = match terms.kind {
                        RuleKind::Percent(rate) => (Some(rate.to_string()), None),
                        RuleKind::Fixed(amount) => (None, Some(amount.get())),
                    };
                    sqlx::query(
                        "INSERT INTO coupons (id, idempotency_key, member_id, kind, percent, \
                         fixed_rials, basket_rials_min, discount_rials_max, merchant_id, \
                         issued_at_ms, expires_at_ms, state, txn_id, operator) VALUES ($1, $2, \
                         $3, $4, $5, $6, $7, $8, $9, $10, $11, 'available', NULL, $12)",
                    )
                    .bind(coupon.id.get())
                    .bind(record.key.as_str())
                    .bind(coupon.member.get())
                    .bind(coupon.kind.as_str())
                    .bind(percent)
                    .bind(fixed)
                    .bind(terms.basket_rials_min.get())
                    .bind(terms.discount_rials_max.map(Rials::get))
                    .bind(terms.merchant.map(MerchantId::get))
                    .bind(record.at.get())
                    .bind(terms.expires_at.get())
                    .bind(record.operator.as_str())
                    .execute(&mut *conn)
                    .await?;
                }
                CouponOp::Move { coupon, from, to } => {
                    let done = sqlx::query(
                        "UPDATE coupons SET state = $1, txn_id = $2 WHERE id = $3 AND state = $4 \
                         AND COALESCE(txn_id, 0) = $5",
                    )
                    .bind(to.as_str())
                    .bind(to.txn().map(|txn| txn.0))
                    .bind(coupon)
                    .bind(from.as_str())
                    .bind(from.txn().map_or(0, |txn| txn.0))
                    .execute(&mut *conn)
                    .await?;
                    expect_rows(done.rows_affected(), 1, "coupons")?;
                }
                CouponOp::Shortfall {
                    txn,
                    coupon,
                    amount,
                    at,
                } => {
                    sqlx::query(
                        "INSERT INTO coupon_exceptions (txn_id, coupon_id, amount_rials, at_ms) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(txn)
                    .bind(coupon)
                    .bind(amount)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
                CouponOp::Referral {
                    referred,
                    referral,
                    at,
                } => {
                    sqlx::query(
                        "INSERT INTO referral_rewards (referred_member_id, referrer_member_id, \
                         txn_id, referred_coupon_id, referrer_coupon_id, at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(referred)
                    .bind(referral.referrer.get())
                    .bind(referral.txn.0)
                    .bind(referral.coupons[0].get())
                    .bind(referral.coupons[1].get())
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                }
                CouponOp::ReferralReversed { referred, at } => {
                    let done = sqlx::query(
                        "UPDATE referral_rewards SET reversed_at_ms = $1 \
                         WHERE referred_member_id = $2 AND reversed_at_ms IS NULL",
                    )
                    .bind(at)
                    .bind(referred)
                    .execute(&mut *conn)
                    .await?;
                    expect_rows(done.rows_affected(), 1, "referral_rewards")?;
                }
            }
        }
        Ok(())
    }

    /// Tier recomputes, in order (a member can change twice in one batch). They are rare: one
    /// statement or two each. A second record of the same transaction and cause is refused
    /// by the unique key, so a re-applied recompute fails the batch instead of counting twice.
    async fn write_tiers(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for change in &self.tier_changes {
            let (member, txn, at) = (change.member.get(), change.txn.0, change.at.get());
            sqlx::query(
                "INSERT INTO member_tiers (member_id, tier_id, txn_id, at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (member_id) DO UPDATE SET \
                 tier_id = excluded.tier_id, txn_id = excluded.txn_id, at_ms = excluded.at_ms",
            )
            .bind(member)
            .bind(change.earned.map(|tier| tier.get()))
            .bind(txn)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if change.is_visible() {
                sqlx::query(
                    "INSERT INTO tier_changes (member_id, from_tier_id, to_tier_id, txn_id, \
                     cause, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(member)
                .bind(change.from.map(|tier| tier.get()))
                .bind(change.to.map(|tier| tier.get()))
                .bind(txn)
                .bind(change.cause.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
        }
        Ok(())
    }

    /// The batch's outbox rows, one multi-row statement per chunk: only members with a phone
    /// get a row, in their locale; a key already in the outbox is skipped, so a re-applied
    /// event never notifies twice.
    async fn write_notices(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for chunk in self.notices.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO notifications (idempotency_key, member_id, kind, locale, phone, body, \
                 created_at_ms, attempts, next_attempt_at_ms) \
                 SELECT d.column1, m.id, d.column3, m.locale, m.phone, \
                 CASE WHEN m.locale = 'en' THEN d.column5 ELSE d.column4 END, \
                 d.column6, 0, d.column6 FROM (",
            );
            query.push_values(chunk, |mut row, notice| {
                row.push_bind(notice.key.as_str())
                    .push_bind(notice.card)
                    .push_bind(notice.kind)
                    .push_bind(notice.fa.as_str())
                    .push_bind(notice.en.as_str())
                    .push_bind(notice.at);
            });
            // The WHERE also tells SQLite's parser that ON CONFLICT is the upsert clause.
            query.push(
                ") AS d JOIN cards c ON c.id = d.column2 JOIN members m ON m.id = c.member_id \
                 WHERE m.phone IS NOT NULL ON CONFLICT (idempotency_key) DO NOTHING",
            );
            execute(conn, query).await?;
        }
        Ok(())
    }

    async fn write_transactions(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for chunk in self.inserts.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO transactions (id, ksi, mti, stan, transmitted, terminal_id, merchant_id, \
                 card_id, processing_code, gross_rials, discount_rials, fee_rials, store_credit_rials, \
                 club_rials, bank_rest_rials, cashback_rials, rule_id, snapshot_version, rrn, state, \
                 created_at_ms, hold_expires_at_ms, confirmed_at_ms, reversed_at_ms, expired_at_ms, \
                 cashback_lot_id, coupon_id, coupon_rials) ",
            );
            query.push_values(chunk, |mut row, (txn, patch)| {
                let a = &txn.amounts;
                row.push_bind(txn.id.0)
                    .push_bind(text(&txn.key.ksi))
                    .push_bind(txn.key.mti.as_str())
                    .push_bind(i64::from(txn.key.stan.get()))
                    .push_bind(text(&txn.key.transmitted))
                    .push_bind(txn.terminal.get())
                    .push_bind(txn.merchant.get())
                    .push_bind(txn.card.get())
                    .push_bind(txn.code.as_str())
                    .push_bind(a.gross.get())
                    .push_bind(a.discount.get())
                    .push_bind(a.fee.get())
                    .push_bind(a.store_credit.get())
                    .push_bind(a.club.get())
                    .push_bind(a.bank_rest.get())
                    .push_bind(a.cashback.get())
                    .push_bind(txn.rule.map(crate::domain::RuleId::get))
                    .push_bind(i64::try_from(txn.snapshot_version).unwrap_or(i64::MAX))
                    .push_bind(txn.rrn.as_str())
                    .push_bind(patch.state.unwrap_or("pending"))
                    .push_bind(txn.created_at.get())
                    .push_bind(txn.hold_expires_at.get())
                    .push_bind(patch.confirmed_at)
                    .push_bind(patch.reversed_at)
                    .push_bind(patch.expired_at)
                    .push_bind(patch.cashback_lot)
                    .push_bind(txn.coupon.map(|(coupon, _)| coupon.get()))
                    .push_bind(txn.coupon.map_or(0, |(_, amount)| amount.get()));
            });
            let done = execute(conn, query).await?;
            expect_rows(done, chunk.len(), "transaction insert")?;
        }
        let patches: Vec<_> = self.patches.iter().collect();
        for chunk in patches.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "UPDATE transactions SET state = COALESCE(d.column2, state), \
                 confirmed_at_ms = COALESCE(d.column3, confirmed_at_ms), \
                 reversed_at_ms = COALESCE(d.column4, reversed_at_ms), \
                 expired_at_ms = COALESCE(d.column5, expired_at_ms), \
                 cashback_lot_id = COALESCE(d.column6, cashback_lot_id) FROM (",
            );
            query.push_values(chunk, |mut row, (id, patch)| {
                row.push_bind(**id)
                    .push_bind(patch.state)
                    .push_bind(patch.confirmed_at)
                    .push_bind(patch.reversed_at)
                    .push_bind(patch.expired_at)
                    .push_bind(patch.cashback_lot);
            });
            query.push(") AS d WHERE transactions.id = d.column1");
            let done = execute(conn, query).await?;
            expect_rows(done, chunk.len(), "transaction state")?;
        }
        Ok(())
    }

    async fn write_balances(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        // A top-up may be a card's first club money: its account row comes first.
        for chunk in self.new_clubs.chunks(ROWS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::new("INSERT INTO club_balances (card_id, ledger_rials, held_rials) ");
            query.push_values(chunk, |mut row, card| {
                row.push_bind(*card).push_bind(0_i64).push_bind(0_i64);
            });
            query.push(" ON CONFLICT (card_id) DO NOTHING");
            execute(conn, query).await?;
        }
        let club: Vec<_> = self.club.iter().filter(|(_, d)| **d != (0, 0)).collect();
        for chunk in club.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "UPDATE club_balances SET ledger_rials = ledger_rials + d.column2, \
                 held_rials = held_rials + d.column3 FROM (",
            );
            query.push_values(chunk, |mut row, (card, (ledger, held))| {
                row.push_bind(**card).push_bind(*ledger).push_bind(*held);
            });
            query.push(") AS d WHERE club_balances.card_id = d.column1");
            let done = execute(conn, query).await?;
            expect_rows(done, chunk.len(), "club balance")?;
        }
        let accounts: Vec<_> = self
            .new_lots
            .iter()
            .map(|(lot, _, _)| (lot.card.get(), lot.merchant.get()))
            .collect();
        for chunk in accounts.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO store_credit_accounts (card_id, merchant_id, ledger_rials, held_rials) ",
            );
            query.push_values(chunk, |mut row, (card, merchant)| {
                row.push_bind(*card)
                    .push_bind(*merchant)
                    .push_bind(0_i64)
                    .push_bind(0_i64);
            });
            query.push(" ON CONFLICT (card_id, merchant_id) DO NOTHING");
            execute(conn, query).await?;
        }
        for chunk in self.new_lots.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO store_credit_lots (id, card_id, merchant_id, remaining_rials, \
                 original_rials, expires_at_ms, source, txn_id) ",
            );
            query.push_values(chunk, |mut row, (lot, txn, source)| {
                row.push_bind(lot.id.0)
                    .push_bind(lot.card.get())
                    .push_bind(lot.merchant.get())
                    .push_bind(lot.amount.get())
                    .push_bind(lot.amount.get())
                    .push_bind(lot.expires_at.map(UnixMillis::get))
                    .push_bind(*source)
                    .push_bind(*txn);
            });
            execute(conn, query).await?;
        }
        let store: Vec<_> = self.store.iter().filter(|(_, d)| **d != (0, 0)).collect();
        for chunk in store.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "UPDATE store_credit_accounts SET ledger_rials = ledger_rials + d.column3, \
                 held_rials = held_rials + d.column4 FROM (",
            );
            query.push_values(chunk, |mut row, ((card, merchant), (ledger, held))| {
                row.push_bind(*card)
                    .push_bind(*merchant)
                    .push_bind(*ledger)
                    .push_bind(*held);
            });
            query.push(
                ") AS d WHERE store_credit_accounts.card_id = d.column1 \
                 AND store_credit_accounts.merchant_id = d.column2",
            );
            let done = execute(conn, query).await?;
            expect_rows(done, chunk.len(), "store credit account")?;
        }
        let lots: Vec<_> = self.lots.iter().filter(|(_, delta)| **delta != 0).collect();
        for chunk in lots.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "UPDATE store_credit_lots SET remaining_rials = remaining_rials + d.column2 FROM (",
            );
            query.push_values(chunk, |mut row, (lot, delta)| {
                row.push_bind(**lot).push_bind(**delta);
            });
            query.push(") AS d WHERE store_credit_lots.id = d.column1");
            let done = execute(conn, query).await?;
            expect_rows(done, chunk.len(), "store credit lot")?;
        }
        Ok(())
    }

    async fn write_records(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        self.write_ledger_records(conn).await?;
        self.write_operator_records(conn).await?;
        self.write_message_records(conn).await
    }

    /// Movements, captures and the lots they took, returns, exceptions.
    async fn write_ledger_records(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for chunk in self.movements.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO balance_movements (card_id, merchant_id, account, delta_rials, kind, \
                 txn_id, at_ms) ",
            );
            query.push_values(chunk, |mut row, m| {
                let account = if m.merchant.is_some() {
                    "store_credit"
                } else {
                    "club"
                };
                row.push_bind(m.card)
                    .push_bind(m.merchant)
                    .push_bind(account)
                    .push_bind(m.delta)
                    .push_bind(m.kind)
                    .push_bind(m.txn)
                    .push_bind(m.at);
            });
            execute(conn, query).await?;
        }
        for chunk in self.captures.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO captures (txn_id, at_ms, club_rials, store_credit_rials) ",
            );
            query.push_values(chunk, |mut row, (txn, at, club, store)| {
                row.push_bind(*txn)
                    .push_bind(*at)
                    .push_bind(*club)
                    .push_bind(*store);
            });
            execute(conn, query).await?;
        }
        for chunk in self.capture_lots.chunks(ROWS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::new("INSERT INTO capture_lots (txn_id, lot_id, taken_rials) ");
            query.push_values(chunk, |mut row, (txn, lot, amount)| {
                row.push_bind(*txn).push_bind(*lot).push_bind(*amount);
            });
            execute(conn, query).await?;
        }
        for chunk in self.returned.chunks(ROWS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::new("UPDATE captures SET returned_at_ms = d.column2 FROM (");
            query.push_values(chunk, |mut row, (txn, at)| {
                row.push_bind(*txn).push_bind(*at);
            });
            query.push(
                ") AS d WHERE captures.txn_id = d.column1 AND captures.returned_at_ms IS NULL",
            );
            let done = execute(conn, query).await?;
            expect_rows(done, chunk.len(), "capture return")?;
        }
        for chunk in self.exceptions.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO exceptions (kind, txn_id, account, amount_rials, at_ms) ",
            );
            query.push_values(chunk, |mut row, (kind, txn, account, amount, at)| {
                row.push_bind(*kind)
                    .push_bind(*txn)
                    .push_bind(*account)
                    .push_bind(*amount)
                    .push_bind(*at);
            });
            // A late reversal is recorded once per transaction, however often it is resent.
            query.push(" ON CONFLICT DO NOTHING");
            execute(conn, query).await?;
        }
        Ok(())
    }

    /// Operators' credits and card replacements, each with its audit row.
    async fn write_operator_records(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for record in &self.credits {
            let credit = &record.credit;
            sqlx::query(
                "INSERT INTO balance_credits (idempotency_key, card_id, merchant_id, amount_rials, \
                 lot_id, operator, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&credit.key)
            .bind(credit.card.get())
            .bind(credit.merchant.map(MerchantId::get))
            .bind(credit.amount.get())
            .bind(record.lot.map(|lot| lot.id.0))
            .bind(&credit.operator)
            .bind(record.at.get())
            .execute(&mut *conn)
            .await?;
            if let Some(payment) = &credit.top_up {
                top_up_paid(conn, record, payment).await?;
            }
            let (action, resource) = match credit.merchant {
                None => ("top_up", "card"),
                Some(_) => ("grant_store_credit", "card"),
            };
            sqlx::query(
                "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
                 SELECT $1, $2, $3, $4, code, $5 FROM cards WHERE id = $6",
            )
            .bind(record.at.get())
            .bind(&credit.operator)
            .bind(action)
            .bind(resource)
            .bind(&credit.detail)
            .bind(credit.card.get())
            .execute(&mut *conn)
            .await?;
        }
        for record in &self.transfers {
            let transfer = &record.transfer;
            let store: i64 = record.lots.iter().map(|(_, lot)| lot.amount.get()).sum();
            sqlx::query(
                "INSERT INTO card_replacements (from_card_id, to_card_id, club_rials, \
                 store_credit_rials, operator, at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(transfer.from.get())
            .bind(transfer.to.get())
            .bind(record.club.get())
            .bind(store)
            .bind(&transfer.operator)
            .bind(record.at.get())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
                 SELECT $1, $2, 'move_balances', 'card', code, $3 FROM cards WHERE id = $4",
            )
            .bind(record.at.get())
            .bind(&transfer.operator)
            .bind(&transfer.detail)
            .bind(transfer.from.get())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Tombstones and answered messages (the retransmission window).
    async fn write_message_records(&self, conn: &mut Conn) -> Result<(), LedgerError> {
        for chunk in self.tombstones.chunks(ROWS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::new("INSERT INTO tombstones (ksi, mti, stan, transmitted, at_ms) ");
            query.push_values(chunk, |mut row, (key, at)| {
                row.push_bind(text(&key.ksi))
                    .push_bind(key.mti.as_str())
                    .push_bind(i64::from(key.stan.get()))
                    .push_bind(text(&key.transmitted))
                    .push_bind(*at);
            });
            query.push(" ON CONFLICT DO NOTHING");
            execute(conn, query).await?;
        }
        for chunk in self.answers.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(
                "INSERT INTO answered_messages (ksi, mti, stan, transmitted, fingerprint, response, at_ms) ",
            );
            query.push_values(chunk, |mut row, (key, fingerprint, response, at)| {
                row.push_bind(text(&key.ksi))
                    .push_bind(key.mti.as_str())
                    .push_bind(i64::from(key.stan.get()))
                    .push_bind(text(&key.transmitted))
                    .push_bind(&fingerprint[..])
                    .push_bind(response.as_slice())
                    .push_bind(*at);
            });
            execute(conn, query).await?;
        }
        Ok(())
    }
}

/// Runs one of the fold's multi-row statements (not kept prepared: its text changes with its
/// row count); the rows it changed.
async fn execute(conn: &mut Conn, mut query: QueryBuilder<'_>) -> Result<u64, sqlx::Error> {
    let done = query
        .build(Backend::of_conn(conn))
        .persistent(false)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn expect_rows(rows: u64, wanted: usize, what: &'static str) -> Result<(), LedgerError> {
    let wanted = u64::try_from(wanted).unwrap_or(u64::MAX);
    if rows == wanted {
        Ok(())
    } else {
        Err(LedgerError::RowCount { what, wanted, rows })
    }
}

/// A top-up order paid by the credit `record` makes: the order moves from `created` to `paid`
/// (exactly one row, or the batch fails: the engine's key `top-up:<order>` allows one credit per
/// order, so anything else is a disagreement) and the accepted callback is recorded.
async fn top_up_paid(
    conn: &mut Conn,
    record: &CreditRecord,
    payment: &crate::engine::credit::TopUpPayment,
) -> Result<(), LedgerError> {
    let paid = sqlx::query(
        "UPDATE top_up_orders SET state = 'paid', payment_reference = $1, paid_at_ms = $2 \
         WHERE id = $3 AND state = 'created' AND card_id = $4 AND amount_rials = $5",
    )
    .bind(&payment.payment_reference)
    .bind(record.at.get())
    .bind(payment.order)
    .bind(record.credit.card.get())
    .bind(record.credit.amount.get())
    .execute(&mut *conn)
    .await?;
    expect_rows(paid.rows_affected(), 1, "top_up_orders")?;
    sqlx::query(
        "INSERT INTO top_up_callbacks (received_at_ms, outcome, payment_reference, order_id, \
         amount_rials, currency, body_sha256) \
         SELECT $1, 'accepted', $2, id, amount_rials, currency, $3 FROM top_up_orders WHERE id = $4",
    )
    .bind(payment.received_at.get())
    .bind(&payment.payment_reference)
    .bind(&payment.body_sha256)
    .bind(payment.order)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
