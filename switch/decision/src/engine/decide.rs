//! The two-phase engine (docs/design.md section 5, docs/protocol.md sections 4 and 7): a pure state
//! machine. Given the reference snapshot, the clock and a verified request, it returns the
//! response's fields and pushes the effects that must be durable before the response is sent.

use protocol::field54::{AmountKind, AmountSet};
use protocol::message::{Body, FollowUp, Kind};
use protocol::{Amount, Currency, Mti, ProcessingCode, Request, ResponseCode, Rrn};
use sha2::{Digest, Sha256};

use crate::admission::Admitted;
use crate::domain::{
    Card, CardId, CardStatus, LocalDateTime, Merchant, MerchantId, MerchantStatus, PanToken, Rials,
    Terminal, TerminalStatus, UnixMillis,
};
use crate::engine::answer::{purchase_answer, to_amount, AmountsText, AnswerFields, Kept};
use crate::engine::balance::{BalanceFault, Holds};
use crate::engine::coupon::CouponState;
use crate::engine::decline::{approved, Decline};
use crate::engine::effect::{Effect, NewLot, ReleaseReason};
use crate::engine::referral::LoyaltyRules;
use crate::engine::state::{
    Amounts, Answered, Capture, Fingerprint, LotId, MessageKey, State, Txn, TxnId, TxnState,
};
use crate::engine::tier::TierCause;
use crate::pricing;
use crate::snapshot::{Keyed, Snapshot};

/// Engine settings (documented in `docs/config.md`).
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// How long a pending request holds its balances before the sweeper releases them
    /// (docs/protocol.md section 4: default 120 s).
    pub hold_timeout_ms: i64,
    /// How long answered messages are kept for retransmissions (at least 24 h).
    pub answered_window_ms: i64,
}

/// The card identity from a request's envelope, already tokenised: the engine never sees a
/// PAN.
#[derive(Debug, Clone, Copy)]
pub struct CardRef {
    /// The keyed PAN token.
    pub token: PanToken,
    /// Whether the PAN passed the Luhn check.
    pub luhn_valid: bool,
    /// The terminal id sealed in the envelope (checked against the KSI's already).
    pub terminal_id: [u8; 8],
}

/// What the engine answered: the response's fields ([`AnswerFields::response`] builds the
/// bytes, off the engine's task).
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// The fields the switch adds to the echoed ones.
    pub answer: AnswerFields,
    /// Whether effects were pushed: the response may leave only after they are durable.
    pub durable: bool,
    /// An earlier answer resent: it may leave only after the batch that made it is durable.
    pub resent: bool,
    /// Why a `96` was answered when the balances refused the request's operation: for the
    /// shell to log (the engine does no I/O).
    pub fault: Option<BalanceFault>,
}

impl Decision {
    /// Field 39.
    pub fn code(&self) -> ResponseCode {
        self.answer.code
    }

    /// The RRN, when the response has one (for logs).
    pub fn rrn(&self) -> Option<Rrn> {
        self.answer.rrn
    }
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Pending transactions whose holds it released.
    pub released: usize,
    /// Those whose holds it could not release, with why: for the shell to log. They stay
    /// pending, off the sweeper's list.
    pub faults: Vec<(TxnId, BalanceFault)>,
}

/// The engine: its state and settings. All methods are pure functions of their inputs.
#[derive(Debug)]
pub struct Engine {
    /// The state (public for the store's loader and for invariant checks).
    pub state: State,
    config: EngineConfig,
    pub(crate) loyalty: LoyaltyRules,
}

impl Engine {
    /// An engine over a loaded state.
    pub fn new(state: State, config: EngineConfig) -> Engine {
        Engine {
            state,
            config,
            loyalty: LoyaltyRules::default(),
        }
    }

    /// The same engine, applying the programme's `rules` (referral rewards).
    pub fn with_loyalty(mut self, rules: LoyaltyRules) -> Engine {
        self.loyalty = rules;
        self
    }

    /// Decides one verified request (steps 4 to 6 of docs/protocol.md section 7).
    ///
    /// `keyed` is what [`Snapshot::keys_by_ksi`] gave for the request's KSI in `snapshot`: the
    /// caller has looked it up already (to find the terminal), and a second lookup here would
    /// be a second cache miss per decision.
    pub fn decide(
        &mut self,
        snapshot: &Snapshot,
        keyed: Keyed<'_>,
        admitted: &Admitted,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Decision {
        let request = &admitted.request;
        let card = admitted.card.as_ref();
        let fingerprint = admitted.fingerprint;
        let key = MessageKey {
            ksi: *request.ksi.as_bytes(),
            mti: request.mti,
            stan: request.stan,
            transmitted: request.transmitted_raw,
        };
        // A request is answered under its KSI: a terminal's current key, or its previous one
        // until the end of a rotation's overlap, after which it is refused.
        let terminal = keyed.terminal;
        let key_expired = keyed.valid_until.is_some_and(|until| now > until);
        if key_expired {
            return decline(Decline::KeyExpired);
        }
        if let Some(again) = self.answered_again(&key, fingerprint) {
            return again;
        }
        let clock_checked = matches!(
            request.mti,
            Mti::AuthorizationRequest | Mti::FinancialRequest | Mti::NetworkRequest
        );
        let now_seconds = now.get().div_euclid(1000);
        if clock_checked && !request.transmitted.is_fresh(now_seconds) {
            return decline(Decline::StaleClock);
        }
        let kind = match request.classify() {
            Ok(kind) => kind,
            Err(reject) => {
                return self.remember_decline(key, fingerprint, now, Decline::Protocol(reject));
            }
        };
        let before = effects.len();
        let outcome = match (kind, &request.body) {
            (Kind::Network(_), _) => {
                let answer = AnswerFields {
                    switch_time: Some(now_seconds),
                    ..AnswerFields::code(approved())
                };
                return Decision {
                    answer,
                    durable: false,
                    resent: false,
                    fault: None,
                };
            }
            (Kind::Purchase { code, amount }, Body::Financial(financial)) => {
                let context = Context {
                    snapshot,
                    terminal,
                    card,
                    currency: financial.currency,
                    now,
                };
                self.purchase(&context, key, code, amount, effects)
            }
            (Kind::Inquiry { code }, Body::Financial(financial)) => {
                let context = Context {
                    snapshot,
                    terminal,
                    card,
                    currency: financial.currency,
                    now,
                };
                self.inquiry(&context, key, code)
            }
            (Kind::Confirm, Body::Confirm(follow_up)) => {
                self.confirm(snapshot, request, follow_up, now, effects)
            }
            (Kind::Reversal, Body::Reversal(follow_up)) => {
                self.reversal(snapshot, request, follow_up, now, effects)
            }
            (_, _) => Err(Decline::Protocol(protocol::Reject::InvalidTransaction)),
        };
        match outcome {
            Ok(reply) => {
                let follow_up = matches!(kind, Kind::Confirm | Kind::Reversal);
                let changed = effects.len() > before;
                self.remember_reply(key, fingerprint, reply, changed, follow_up, now, effects)
            }
            Err(decline) => self.remember_decline(key, fingerprint, now, decline),
        }
    }

    /// The answer a request already answered gets again (docs/protocol.md section 7: the same
    /// answer to the same message; `94` to another message under its key), if it was answered.
    #[inline]
    fn answered_again(&self, key: &MessageKey, fingerprint: Fingerprint) -> Option<Decision> {
        let answered = self
            .state
            .answered
            .get(key)
            .or_else(|| self.state.answered_volatile.get(key))?;
        if answered.fingerprint != fingerprint {
            return Some(decline(Decline::DuplicateStan));
        }
        Some(match self.state.kept_answer(&answered.kept) {
            Some(answer) => Decision {
                answer,
                durable: false,
                resent: true,
                fault: None,
            },
            // The window names a transaction the engine does not hold: never the case
            // (transactions are not dropped), and answering anything else would not be
            // the same answer.
            None => decline(Decline::System),
        })
    }

    /// Keeps an approved reply in the answered window, as durable (its answer joins the batch's
    /// effects) when the request `changed` anything or is a `follow_up`, and decides it.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn remember_reply(
        &mut self,
        key: MessageKey,
        fingerprint: Fingerprint,
        reply: Reply,
        changed: bool,
        follow_up: bool,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Decision {
        // An approved confirm or reversal is always stored and held back until its
        // batch is durable, even when it changes nothing itself ("confirmed again",
        // "reversed again"): its 00 rests on an earlier confirm or reversal that may
        // still be in this batch or the one being written, and must not be heard
        // before that is durable.
        let durable = changed || follow_up;
        let answer = reply.answer;
        let kept = match reply.purchase {
            Some((id, currency)) => Kept::Purchase(id, currency),
            None => Kept::of(answer, None),
        };
        let answered = Answered {
            fingerprint,
            kept,
            at: now,
        };
        if durable {
            effects.push(Effect::Answer {
                key,
                fingerprint,
                answer,
                at: now,
            });
            self.state.answered.insert(key, answered);
        } else {
            self.state.answered_volatile.insert(key, answered);
        }
        Decision {
            answer,
            durable,
            resent: false,
            fault: None,
        }
    }

    /// Releases the holds of pending requests whose confirm timeout has passed, at most `max`.
    pub fn sweep(&mut self, now: UnixMillis, effects: &mut Vec<Effect>, max: usize) -> Swept {
        let due: Vec<(i64, TxnId)> = self
            .state
            .pending
            .iter()
            .take_while(|(at, _)| *at <= now.get())
            .take(max)
            .collect();
        let mut swept = Swept::default();
        for (at, id) in due {
            match self.release(id, ReleaseReason::Expiry, now, effects) {
                Ok(()) => swept.released += 1,
                Err(fault) => {
                    // Its holds cannot be released as recorded: the transaction stays pending
                    // and leaves the sweeper's list, so the fault is reported once (again after
                    // a restart reloads it), not at every sweep.
                    self.state.pending.remove(&(at, id));
                    swept.faults.push((id, fault));
                }
            }
        }
        swept
    }

    /// Marks transactions settlement has put in a cycle: from now on a reversal of one is
    /// refused (`12`) and recorded as a late reversal, instead of returning money already paid
    /// out. `cycle` is the newest cycle they came from.
    pub fn mark_settled(&mut self, ids: &[TxnId], cycle: i64) {
        for id in ids {
            if let Some(txn) = self.state.txns.get_mut(id) {
                if txn.state == TxnState::Confirmed {
                    txn.state = TxnState::Settled;
                }
            }
        }
        self.state.settled_cycle = self.state.settled_cycle.max(cycle);
    }

    /// Holds settlement's fence at `cutoff_ms` (journal mode): from now on a reversal of a
    /// transaction confirmed before it is refused (`12`) and recorded as a late reversal.
    /// Returns the fence now held.
    pub fn hold_fence(&mut self, cutoff_ms: i64) -> i64 {
        self.state.fence_ms = self.state.fence_ms.max(cutoff_ms);
        self.state.fence_ms
    }

    /// Forgets answered messages older than the window.
    pub fn prune(&mut self, now: UnixMillis) {
        let oldest = now.get() - self.config.answered_window_ms;
        self.state.prune_answered(oldest);
    }

    /// What `funding` may draw on for a purchase of `card` at `merchant`. Only those balances
    /// are looked up: each lookup is a cache miss in a map of up to a million accounts, and the
    /// split ignores the others.
    #[inline]
    fn funds(
        &self,
        funding: pricing::Funding,
        card: CardId,
        merchant: MerchantId,
        now: UnixMillis,
    ) -> Result<pricing::Funds, Decline> {
        Ok(pricing::Funds {
            club: if funding.uses_club() {
                self.state.club_available(card).map_err(Decline::Balance)?
            } else {
                Rials::ZERO
            },
            store_credit: if funding.uses_store_credit() {
                self.state
                    .store_available(card, merchant, now)
                    .map_err(Decline::Balance)?
            } else {
                Rials::ZERO
            },
        })
    }

    fn purchase(
        &mut self,
        context: &Context<'_>,
        key: MessageKey,
        code: ProcessingCode,
        amount: Amount,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, Decline> {
        let Context {
            snapshot,
            terminal,
            currency,
            now,
            ..
        } = *context;
        if self.state.tombstones.contains_key(&key) {
            return Err(Decline::StateConflict);
        }
        let (merchant, card, local) = checks(context)?;
        let gross = Rials::new(i64::try_from(amount.get()).map_err(|_| Decline::OverLimit)?)
            .ok_or(Decline::OverLimit)?;
        let funding = funding(code);
        let funds = self.funds(funding, card.id, merchant.id, now)?;
        let day = local.date.days_since_epoch();
        let usage = Usage {
            state: &self.state,
            member: card.member,
            day,
        };
        let tier = self.tier_of(snapshot, card.tier, card.member);
        // Most members have no coupon: the lookup is skipped while nobody has one.
        let coupon = if self.state.member_coupons.is_empty() {
            None
        } else {
            self.state.best_coupon(card.member, merchant.id, gross, now)
        };
        let mut purchase = snapshot.purchase(merchant, terminal, card, gross, now);
        purchase.tier = tier;
        let quote = pricing::quote(
            &purchase,
            snapshot.rules_for_purchase(merchant.id, &card.bin),
            &usage,
            funds,
            funding,
            snapshot.tier_rate(tier),
            coupon.as_ref().map(|coupon| &coupon.terms),
        )
        .map_err(|decline| match decline {
            pricing::QuoteDecline::AmountZero => Decline::Protocol(protocol::Reject::InvalidAmount),
            pricing::QuoteDecline::AmountLimit { .. } => Decline::OverLimit,
            pricing::QuoteDecline::Insufficient(_) => Decline::Insufficient,
        })?;
        let amounts = Amounts {
            gross,
            discount: quote.split.discount(),
            fee: quote.fee,
            store_credit: quote.split.store_credit(),
            club: quote.split.club(),
            bank_rest: quote.split.bank_rest(),
            cashback: quote.cashback,
        };
        // Held before anything else changes: a refused hold leaves the state as it was.
        self.state
            .place_holds(Holds {
                card: card.id,
                merchant: merchant.id,
                club: amounts.club,
                store_credit: amounts.store_credit,
            })
            .map_err(Decline::Balance)?;
        let id = TxnId(self.state.next_txn);
        self.state.next_txn += 1;
        let rrn = self.next_rrn();
        let txn = Txn {
            id,
            key,
            terminal: terminal.id,
            merchant: merchant.id,
            card: card.id,
            member: card.member,
            code,
            amounts,
            rule: quote.rule.map(|applied| applied.rule),
            coupon: coupon
                .filter(|_| quote.coupon > Rials::ZERO)
                .map(|coupon| (coupon.id, quote.coupon)),
            snapshot_version: snapshot.version(),
            rrn,
            state: TxnState::Pending,
            created_at: now,
            hold_expires_at: UnixMillis::new(now.get() + self.config.hold_timeout_ms),
            capture: Capture::none(),
            local_day: day,
        };
        if let Some((coupon, _)) = txn.coupon {
            self.move_coupon(coupon, CouponState::Held(id), now, effects);
        }
        effects.push(Effect::Hold {
            txn: Box::new(txn.clone()),
        });
        // The one place an approved purchase's answer is made: a retransmission's is made
        // again from the transaction by the same function.
        let answer = purchase_answer(&txn, currency);
        // Its key is written once, by `decide`, as the window's `Kept::Purchase`.
        self.state.index(txn, false);
        Ok(Reply {
            answer,
            purchase: Some((id, currency)),
        })
    }

    fn inquiry(
        &mut self,
        context: &Context<'_>,
        key: MessageKey,
        code: ProcessingCode,
    ) -> Result<Reply, Decline> {
        let Context { currency, now, .. } = *context;
        if self.state.tombstones.contains_key(&key) {
            return Err(Decline::StateConflict);
        }
        let (merchant, card, _) = checks(context)?;
        let (ledger_kind, available_kind, ledger, available) = match code {
            ProcessingCode::ClubInquiry => (
                AmountKind::ClubLedger,
                AmountKind::ClubAvailable,
                self.state
                    .club
                    .get(&card.id)
                    .map_or(Rials::ZERO, |a| a.ledger),
                self.state
                    .club_available(card.id)
                    .map_err(Decline::Balance)?,
            ),
            _ => (
                AmountKind::StoreCreditLedger,
                AmountKind::StoreCreditAvailable,
                self.state
                    .store
                    .get(&(card.id, merchant.id))
                    .map_or(Rials::ZERO, |a| a.ledger),
                self.state
                    .store_available(card.id, merchant.id, now)
                    .map_err(Decline::Balance)?,
            ),
        };
        let mut sets = AmountsText::default();
        sets.push(&AmountSet::new(ledger_kind, currency, to_amount(ledger)).encode());
        sets.push(&AmountSet::new(available_kind, currency, to_amount(available)).encode());
        Ok(Reply {
            answer: AnswerFields {
                rrn: Some(self.next_rrn()),
                amounts: sets,
                ..AnswerFields::code(approved())
            },
            purchase: None,
        })
    }

    fn confirm(
        &mut self,
        snapshot: &Snapshot,
        request: &Request,
        follow_up: &FollowUp,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, Decline> {
        let original = original_key(request, follow_up);
        let Some(id) = self.state.txn_by_key(&original) else {
            if self.state.answered_volatile.contains_key(&original) {
                // A declined request or a balance inquiry: nothing to confirm.
                return Err(Decline::StateConflict);
            }
            return Err(Decline::OriginalNotFound);
        };
        let txn = self.state.txns.get(&id).ok_or(Decline::OriginalNotFound)?;
        if follow_up.rrn != Some(txn.rrn) {
            return Err(Decline::OriginalNotFound);
        }
        check_same(txn, follow_up)?;
        match txn.state {
            TxnState::Pending | TxnState::Expired => {
                self.capture(snapshot, id, now, effects)?;
                Ok(Reply::empty())
            }
            // Confirmed again under a new STAN: 00, and nothing more is captured.
            TxnState::Confirmed | TxnState::Settled => Ok(Reply::empty()),
            TxnState::Reversed => Err(Decline::StateConflict),
        }
    }

    fn reversal(
        &mut self,
        snapshot: &Snapshot,
        request: &Request,
        follow_up: &FollowUp,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<Reply, Decline> {
        let original = original_key(request, follow_up);
        let Some(id) = self.state.txn_by_key(&original) else {
            if !self.state.answered_volatile.contains_key(&original)
                && !self.state.tombstones.contains_key(&original)
            {
                // Never seen: remember it, so the original is declined if it arrives later.
                self.state.tombstones.insert(original, now);
                effects.push(Effect::Tombstone {
                    key: original,
                    at: now,
                });
            }
            return Ok(Reply::empty());
        };
        let txn = self.state.txns.get(&id).ok_or(Decline::OriginalNotFound)?;
        if follow_up.rrn.is_some_and(|rrn| rrn != txn.rrn) {
            return Err(Decline::OriginalNotFound);
        }
        check_same(txn, follow_up)?;
        // Past settlement's fence a confirmed transaction is as good as settled.
        let settling =
            txn.state == TxnState::Confirmed && txn.capture.at.get() < self.state.fence_ms;
        let state = if settling {
            TxnState::Settled
        } else {
            txn.state
        };
        match state {
            TxnState::Pending => self
                .release(id, ReleaseReason::Reversal, now, effects)
                .map_err(Decline::Balance)?,
            TxnState::Confirmed => self.give_back(snapshot, id, now, effects)?,
            TxnState::Expired => {
                self.state.set_state(id, TxnState::Reversed);
                effects.push(Effect::MarkReversed { txn: id, at: now });
            }
            TxnState::Reversed => {}
            TxnState::Settled => {
                let club = txn.capture.club;
                effects.push(Effect::LateReversal {
                    txn: id,
                    club,
                    at: now,
                });
                return Err(Decline::StateConflict);
            }
        }
        Ok(Reply::empty())
    }

    /// Captures a pending (or, on the advice path, expired) transaction.
    ///
    /// # Errors
    /// [`Decline::Balance`], nothing changed, when the balances refuse the capture.
    fn capture(
        &mut self,
        snapshot: &Snapshot,
        id: TxnId,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Decline> {
        let Some(txn) = self.state.txns.get(&id).cloned() else {
            return Ok(());
        };
        let wanted = Holds::of(&txn);
        let pending = txn.state == TxnState::Pending;
        let held = if pending { wanted } else { wanted.none() };
        let cashback = self.cashback_lot(snapshot, &txn, now);
        let captured = self
            .state
            .capture(wanted, held, cashback)
            .map_err(Decline::Balance)?;
        if cashback.is_some() {
            self.state.next_lot += 1;
        }
        if pending {
            self.state
                .pending
                .remove(&(txn.hold_expires_at.get(), txn.id));
        } else {
            // Its expiry took its discount out of its rule's spend; confirmed, it counts
            // again, as a reload of the confirmed transaction counts it.
            self.state.add_rule_spend(&txn);
        }
        let (club, lots, shortfalls) = (captured.club, captured.lots, captured.shortfalls);
        let capture = Capture {
            club,
            lots: lots.clone(),
            cashback_lot: cashback.map(|lot| lot.id),
            at: now,
        };
        self.state.confirm(id, capture);
        effects.push(Effect::Capture {
            txn: id,
            card: txn.card,
            merchant: txn.merchant,
            gross: txn.amounts.gross,
            discount: txn.amounts.discount,
            club_held: held.club,
            store_held: held.store_credit,
            club,
            lots,
            shortfalls,
            cashback,
            at: now,
        });
        if let Some((coupon, amount)) = txn.coupon {
            self.use_coupon(&txn, coupon, amount, now, effects);
        }
        // `txn` is the copy taken before the capture: its member, card, id, time and G are
        // the confirmed purchase's, and that is all the loyalty steps read.
        self.state.add_activity(&txn);
        self.recompute_tier(snapshot, &txn, TierCause::Confirm, now, effects);
        self.reward_referral(snapshot, &txn, now, effects);
        Ok(())
    }

    /// The cashback lot a confirm at `now` issues, with the next lot id (taken by the caller
    /// once the capture is made).
    fn cashback_lot(&self, snapshot: &Snapshot, txn: &Txn, now: UnixMillis) -> Option<NewLot> {
        let merchant = snapshot.merchant(txn.merchant)?;
        if !merchant.profile.cashback_allowed || txn.amounts.cashback == Rials::ZERO {
            return None;
        }
        let id = LotId(self.state.next_lot);
        let days = i64::from(merchant.profile.credit_expiry_days);
        let expires_at =
            (days > 0).then(|| UnixMillis::new(now.get() + days * crate::domain::time::DAY_MS));
        Some(NewLot {
            id,
            card: txn.card,
            merchant: txn.merchant,
            amount: txn.amounts.cashback,
            expires_at,
        })
    }

    /// Releases a pending transaction's holds (a reversal, or its hold expired).
    ///
    /// # Errors
    /// [`BalanceFault`], nothing changed, when its holds are not there to release.
    fn release(
        &mut self,
        id: TxnId,
        reason: ReleaseReason,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<(), BalanceFault> {
        let Some(txn) = self.state.txns.get(&id).cloned() else {
            return Ok(());
        };
        if txn.state != TxnState::Pending {
            return Ok(());
        }
        self.state.release_holds(Holds::of(&txn))?;
        self.state
            .pending
            .remove(&(txn.hold_expires_at.get(), txn.id));
        self.state.remove_rule_spend(&txn);
        if let Some((coupon, _)) = txn.coupon {
            self.give_back_coupon(coupon, txn.id, now, effects);
        }
        let state = match reason {
            ReleaseReason::Reversal => TxnState::Reversed,
            ReleaseReason::Expiry => TxnState::Expired,
        };
        self.state.set_state(id, state);
        effects.push(Effect::Release {
            txn: id,
            card: txn.card,
            merchant: txn.merchant,
            club: txn.amounts.club,
            store_credit: txn.amounts.store_credit,
            reason,
            at: now,
        });
        Ok(())
    }

    /// Reverses a confirmed, unsettled transaction: returns what it captured and claws back
    /// its cashback (the part already spent becomes an exception, never a negative balance).
    ///
    /// # Errors
    /// [`Decline::Balance`], nothing changed, when the balances refuse the return.
    fn give_back(
        &mut self,
        snapshot: &Snapshot,
        id: TxnId,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Decline> {
        let Some(txn) = self.state.txns.get(&id).cloned() else {
            return Ok(());
        };
        let returned = self
            .state
            .return_capture(
                txn.card,
                txn.merchant,
                txn.capture.club,
                &txn.capture.lots,
                txn.capture
                    .cashback_lot
                    .map(|lot| (lot, txn.amounts.cashback)),
            )
            .map_err(Decline::Balance)?;
        let (clawback, clawback_shortfall) = (returned.clawback, returned.clawback_shortfall);
        self.state.remove_rule_spend(&txn);
        self.state.set_state(id, TxnState::Reversed);
        effects.push(Effect::Return {
            txn: id,
            card: txn.card,
            merchant: txn.merchant,
            club: txn.capture.club,
            lots: txn.capture.lots.clone(),
            clawback,
            clawback_shortfall,
            at: now,
        });
        if let Some((coupon, _)) = txn.coupon {
            self.give_back_coupon(coupon, txn.id, now, effects);
        }
        self.state.uncount_activity(txn.member, txn.id);
        self.recompute_tier(snapshot, &txn, TierCause::Reversal, now, effects);
        self.reverse_referral(&txn, now, effects);
        Ok(())
    }

    fn next_rrn(&mut self) -> Rrn {
        let number = self.state.next_rrn;
        self.state.next_rrn = (self.state.next_rrn + 1) % 1_000_000_000_000;
        Rrn::from_number(number).unwrap_or_else(|_| fallback_rrn())
    }

    fn remember_decline(
        &mut self,
        key: MessageKey,
        fingerprint: Fingerprint,
        now: UnixMillis,
        reason: Decline,
    ) -> Decision {
        let decision = decline(reason);
        self.state.answered_volatile.insert(
            key,
            Answered {
                fingerprint,
                kept: Kept::Code(decision.answer.code),
                at: now,
            },
        );
        decision
    }
}

/// A decline: its code only, nothing to make durable.
fn decline(decline: Decline) -> Decision {
    Decision {
        answer: AnswerFields::code(decline.response_code()),
        durable: false,
        resent: false,
        fault: match decline {
            Decline::Balance(fault) => Some(fault),
            _ => None,
        },
    }
}

/// The business checks of step 6 in docs/protocol.md's order: `13` (currency), `58`, `03`, `14`,
/// `62`, `54`. (`61` and `51` need the amount and come after.) Also returns the merchant's
/// local time, which pricing needs too.
fn checks<'s>(context: &Context<'s>) -> Result<(&'s Merchant, &'s Card, LocalDateTime), Decline> {
    let Context {
        snapshot,
        terminal,
        currency,
        card,
        now,
    } = *context;
    let merchant = snapshot
        .merchant(terminal.merchant)
        .ok_or(Decline::MerchantInactive)?;
    if currency.get() != merchant.profile.currency.get() {
        return Err(Decline::CurrencyMismatch);
    }
    if terminal.status != TerminalStatus::Active {
        return Err(Decline::TerminalInactive);
    }
    if merchant.profile.status != MerchantStatus::Active {
        return Err(Decline::MerchantInactive);
    }
    let card_ref = card.ok_or(Decline::CardUnknown)?;
    if !card_ref.luhn_valid {
        return Err(Decline::Luhn);
    }
    let card = snapshot
        .card_by_token(&card_ref.token)
        .ok_or(Decline::CardUnknown)?;
    if card.status == CardStatus::Blocked {
        return Err(Decline::CardBlocked);
    }
    let local = LocalDateTime::at(now, merchant.profile.utc_offset_minutes);
    if card.expiry.is_expired_on(local.date) {
        return Err(Decline::CardExpired);
    }
    Ok((merchant, card, local))
}

fn check_same(txn: &Txn, follow_up: &FollowUp) -> Result<(), Decline> {
    let amount = u64::try_from(txn.amounts.gross.get()).ok();
    if follow_up.code != *txn.code.as_bytes() || Some(follow_up.amount.get()) != amount {
        return Err(Decline::FollowUpMismatch);
    }
    Ok(())
}

fn original_key(request: &Request, follow_up: &FollowUp) -> MessageKey {
    MessageKey {
        ksi: *request.ksi.as_bytes(),
        mti: follow_up.original.mti,
        stan: follow_up.original.stan,
        transmitted: follow_up.original.transmitted,
    }
}

/// "The same content" (docs/protocol.md section 7): fields 3, 4, 49, 90 and 37 where present, and
/// the terminal id and PAN inside the envelope, the PAN by its keyed token so the hash cannot
/// be turned back into a card number.
pub fn fingerprint(request: &Request, card: Option<&CardRef>) -> Fingerprint {
    let mut hash = Sha256::new();
    for number in [3_u8, 4, 49, 90, 37] {
        match request.raw().field(number) {
            Some(value) => {
                hash.update([number, 1]);
                hash.update(value);
            }
            None => hash.update([number, 0]),
        }
    }
    if let Some(card) = card {
        hash.update(card.terminal_id);
        hash.update(card.token.as_bytes());
    }
    hash.finalize().into()
}

fn fallback_rrn() -> Rrn {
    // Unreachable: the counter is kept below 10^12. A fixed, valid value keeps this path
    // panic-free.
    match Rrn::parse(b"000000000000") {
        Ok(rrn) => rrn,
        Err(_) => unreachable!("a literal rrn is valid"),
    }
}

/// What a purchase or inquiry is checked against.
#[derive(Clone, Copy)]
struct Context<'s> {
    snapshot: &'s Snapshot,
    terminal: &'s Terminal,
    card: Option<&'s CardRef>,
    currency: Currency,
    now: UnixMillis,
}

/// An approval's answer, and the purchase it approved, if any (what the window keeps).
struct Reply {
    answer: AnswerFields,
    purchase: Option<(TxnId, Currency)>,
}

impl Reply {
    /// An approval with its code only (confirms and reversals).
    fn empty() -> Reply {
        Reply {
            answer: AnswerFields::code(approved()),
            purchase: None,
        }
    }
}

/// Rule budgets and per-member daily limits, from the engine's state.
struct Usage<'a> {
    state: &'a State,
    member: crate::domain::MemberId,
    day: i64,
}

impl pricing::RuleUsage for Usage<'_> {
    fn allows(&self, rule: &crate::domain::Rule, discount: Rials) -> bool {
        if let Some(budget) = rule.terms.budget_rials {
            // No entry: the rule has given nothing yet.
            let spent = self.state.rule_spent.get(&rule.id).copied().unwrap_or(0);
            if spent
                .checked_add(discount.get())
                .is_none_or(|total| total > budget.get())
            {
                return false;
            }
        }
        if let Some(max) = rule.terms.member_daily_uses_max {
            let key = (rule.id, self.member, self.day);
            if self.state.rule_uses.get(&key).copied().unwrap_or(0) >= max {
                return false;
            }
        }
        true
    }
}

/// The funding a processing code asks for (docs/protocol.md section 4).
fn funding(code: ProcessingCode) -> pricing::Funding {
    match code {
        ProcessingCode::BankPurchase
        | ProcessingCode::ClubInquiry
        | ProcessingCode::StoreCreditInquiry => pricing::Funding::BankOnly,
        ProcessingCode::BankPurchaseStoreCredit => pricing::Funding::BankWithStoreCredit,
        ProcessingCode::ClubPurchase => pricing::Funding::Club,
        ProcessingCode::StoreCreditPurchase => pricing::Funding::StoreCredit,
        ProcessingCode::MixedPurchase => pricing::Funding::Mixed,
    }
}

impl State {
    /// Registers a transaction (new or loaded) in the indexes. Its rule's use by the member
    /// that day counts whatever became of it (a reversal does not give the use back), so a
    /// restart or another process's reload counts exactly what the live engine counted.
    pub fn track(&mut self, txn: Txn) {
        self.index(txn, true);
    }

    /// [`State::track`]; `by_key` false for a new purchase, whose key the answered window
    /// holds instead of [`State::txn_keys`].
    fn index(&mut self, txn: Txn, by_key: bool) {
        if let Some(rule) = txn.rule {
            *self
                .rule_uses
                .entry((rule, txn.member, txn.local_day))
                .or_insert(0) += 1;
        }
        if txn.state == TxnState::Pending {
            self.pending.insert((txn.hold_expires_at.get(), txn.id));
        }
        if matches!(
            txn.state,
            TxnState::Pending | TxnState::Confirmed | TxnState::Settled
        ) {
            self.add_rule_spend(&txn);
        }
        self.count_activity(&txn);
        if by_key {
            self.txn_keys.insert(txn.key, txn.id);
        }
        let inserted = self.txns.insert(txn);
        assert!(inserted.is_ok(), "a transaction id is never negative");
    }

    fn set_state(&mut self, id: TxnId, state: TxnState) {
        if let Some(txn) = self.txns.get_mut(&id) {
            txn.state = state;
        }
    }

    fn confirm(&mut self, id: TxnId, capture: Capture) {
        if let Some(txn) = self.txns.get_mut(&id) {
            txn.state = TxnState::Confirmed;
            txn.capture = capture;
        }
    }
}
