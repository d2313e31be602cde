//! A change to a few records, applied to a live [`Snapshot`] without rebuilding it
//! (ARCHITECTURE.md, "Reference data changes as deltas").
//!
//! [`Snapshot::apply`] takes the stored records one change touched, read back after its
//! commit (`store::reference::load_named`), and returns the next snapshot:
//! - tiers, merchants, terminals and rules: their part is copied with the records replaced or
//!   added (thousands of rows at most; the rule indexes are rebuilt when rules or merchants
//!   change, since merchant groups feed them);
//! - members and cards (a million each): the part built at start-up is shared as it is, and
//!   the changed rows go into a small overlay that lookups read first; the overlay is copied.
//!   When it passes [`OVERLAY_MAX`] rows, [`Snapshot::compacted`] folds it into a new base,
//!   off the engine's task.
//!
//! Invariant: for the same stored data, `apply` gives the snapshot a whole [`Snapshot::build`]
//! gives, as seen through every lookup ([`Snapshot::contents`]); `tests/snapshot_delta.rs`
//! holds the two to it over random sequences of changes.
//!
//! What `touched` must hold (the API's named read gives it): each changed record in full, with
//! every card of each member it names or whose card it names (a member goes by their lowest-id
//! active card, and their cards copy their groups), and the previous keys of each terminal.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    card_ids, card_of, member_of, merchant_of, resolve, resolve_rule, terminal_of, tier_of,
    CardOverlay, Snapshot, SnapshotError,
};
use crate::domain::{
    Card, GroupId, LoadedReference, Member, MemberId, MerchantId, Rule, RuleId, TerminalRowId,
    TierId, UnixMillis,
};
use crate::fast_hash::HashMap;

/// Overlay rows (cards plus members) past which the switch compacts the snapshot: copying
/// an overlay of this size per change costs well under a millisecond, while compacting a
/// million cards costs about a second of one core, off the engine's task.
pub const OVERLAY_MAX: usize = 8_192;

impl Snapshot {
    /// The snapshot after a change: this one with the records of `touched` (see the module
    /// documentation for what it must hold) replaced or added, at `touched.version`.
    ///
    /// # Errors
    /// [`SnapshotError`] when a record names a code `touched` has no row id for, or a unique
    /// key (KSI, PAN token) would repeat. `self` is unchanged either way.
    pub fn apply(&self, touched: &LoadedReference) -> Result<Snapshot, SnapshotError> {
        let data = &touched.data;
        let ids = &touched.ids;
        let mut next = self.clone();
        next.version = touched.version;
        if !data.tiers.is_empty() {
            let mut tiers = (*self.tiers).clone();
            for record in &data.tiers {
                let tier = tier_of(record, ids)?;
                tiers.map.insert(tier.id, tier);
            }
            tiers.rank();
            next.tiers = Arc::new(tiers);
        }
        if !data.merchants.is_empty() {
            let mut merchants = (*self.merchants).clone();
            for record in &data.merchants {
                let merchant = merchant_of(record, ids)?;
                match merchants.by_id.get(merchant.id.get()) {
                    Some(index) => {
                        let slot = usize::try_from(index).ok();
                        if let Some(slot) = slot.and_then(|slot| merchants.list.get_mut(slot)) {
                            *slot = merchant;
                        }
                    }
                    None => {
                        let index = super::index_of(merchants.list.len(), "merchants")?;
                        merchants.by_id.insert(merchant.id.get(), index);
                        merchants.list.push(merchant);
                    }
                }
            }
            next.merchants = Arc::new(merchants);
        }
        if !data.terminals.is_empty() {
            let mut terminals = (*self.terminals).clone();
            for record in &data.terminals {
                let terminal = terminal_of(record, ids)?;
                let id = terminal.id;
                terminals.upsert(terminal)?;
                let index = terminals.by_id.get(&id).copied();
                terminals
                    .previous_keys
                    .retain(|_, previous| Some(previous.terminal) != index);
            }
            terminals.add_previous_keys(&touched.previous_keys, ids)?;
            next.terminals = Arc::new(terminals);
        }
        next.apply_members_and_cards(touched)?;
        let new_bins: Vec<[u8; 6]> = data
            .cards
            .iter()
            .map(|card| card.bin)
            .filter(|bin| !self.rules.any_by_bin.contains_key(bin))
            .collect();
        if !data.rules.is_empty() || !data.merchants.is_empty() {
            let mut list: BTreeMap<RuleId, Rule> = self
                .rules
                .list
                .iter()
                .map(|rule| (rule.id, rule.clone()))
                .collect();
            for record in &data.rules {
                let rule = resolve_rule(record, touched)?;
                list.insert(rule.id, rule);
            }
            let bins = self.rules.any_by_bin.keys().copied().chain(new_bins);
            let rules =
                super::Rules::build(list.into_values().collect(), &next.merchants.list, bins)?;
            next.rules = Arc::new(rules);
        } else if !new_bins.is_empty() {
            let mut rules = (*self.rules).clone();
            for bin in new_bins {
                rules.add_bin(bin);
            }
            next.rules = Arc::new(rules);
        }
        Ok(next)
    }

    /// Members and cards of `touched` into copies of the overlays.
    fn apply_members_and_cards(&mut self, touched: &LoadedReference) -> Result<(), SnapshotError> {
        let data = &touched.data;
        let ids = &touched.ids;
        if data.members.is_empty() && data.cards.is_empty() {
            return Ok(());
        }
        let mut members: HashMap<MemberId, Member> = HashMap::default();
        for record in &data.members {
            let member = member_of(record, resolve(&ids.members, &record.code, "member")?, ids)?;
            members.insert(member.id, member);
        }
        // A member named only through a card keeps their record as it is, and their card is
        // recomputed from the cards below, which are all of theirs.
        for record in &data.cards {
            let id = resolve(&ids.members, &record.member, "member")?;
            if let std::collections::hash_map::Entry::Vacant(entry) = members.entry(id) {
                if let Some(member) = self.member(id) {
                    entry.insert(member.clone());
                }
            }
        }
        for member in members.values_mut() {
            member.card = None;
        }
        let mut cards = Vec::with_capacity(data.cards.len());
        let rows = card_ids(&data.cards, ids)?;
        for (record, row) in data.cards.iter().zip(rows) {
            cards.push(card_of(record, row, ids, &mut members)?);
        }
        if !members.is_empty() {
            let mut overlay = (*self.member_overlay).clone();
            overlay.extend(members);
            self.member_overlay = Arc::new(overlay);
        }
        if !cards.is_empty() {
            let mut overlay = (*self.card_overlay).clone();
            for card in cards {
                self.upsert_card(&mut overlay, card)?;
            }
            self.card_overlay = Arc::new(overlay);
        }
        Ok(())
    }

    /// Puts `card` into `overlay`; refused when another card has its token.
    fn upsert_card(&self, overlay: &mut CardOverlay, card: Card) -> Result<(), SnapshotError> {
        overlay.mark(&card);
        let taken_in_base = self
            .cards
            .by_token(&card.token)
            .is_some_and(|other| other.id != card.id && !overlay.by_id.contains_key(&other.id));
        let taken_in_overlay = overlay
            .by_token
            .get(&card.token)
            .and_then(|index| overlay.list.get(usize::try_from(*index).ok()?))
            .is_some_and(|other| other.id != card.id);
        super::unique(
            !taken_in_base && !taken_in_overlay,
            "cards",
            format!("{:?}", card.token),
        )?;
        match overlay.by_id.get(&card.id).copied() {
            Some(index) => {
                let slot = usize::try_from(index)
                    .ok()
                    .and_then(|slot| overlay.list.get_mut(slot))
                    .ok_or_else(|| super::too_many("cards"))?;
                let old = slot.token;
                let token = card.token;
                *slot = card;
                if old != token {
                    overlay.by_token.remove(&old);
                    overlay.by_token.insert(token, index);
                }
            }
            None => {
                let index = super::index_of(overlay.list.len(), "cards")?;
                if !self.cards.by_id.contains_key(&card.id) {
                    overlay.added += 1;
                }
                overlay.by_id.insert(card.id, index);
                overlay.by_token.insert(card.token, index);
                overlay.list.push(card);
            }
        }
        Ok(())
    }

    /// Rows in the overlays: past [`OVERLAY_MAX`], compact.
    pub fn overlay_len(&self) -> usize {
        self.card_overlay.list.len() + self.member_overlay.len()
    }

    /// The same snapshot with its overlays folded into new bases: every card and member is
    /// copied once and the token index rebuilt. For a million cards, about a second of one
    /// core: run it off the engine's task.
    ///
    /// # Errors
    /// [`SnapshotError`] when the cards do not fit the indexes (never, for a snapshot built
    /// or applied without error).
    pub fn compacted(&self) -> Result<Snapshot, SnapshotError> {
        let mut next = self.clone();
        if !self.member_overlay.is_empty() {
            let mut members = (*self.members).clone();
            for (id, member) in self.member_overlay.iter() {
                members.insert(*id, member.clone());
            }
            next.members = Arc::new(members);
            next.member_overlay = Arc::default();
        }
        if !self.card_overlay.list.is_empty() {
            let count = self.card_count();
            let mut cards = super::Cards {
                list: Vec::with_capacity(count),
                by_token: super::TokenIndex::with_capacity(count),
                by_id: HashMap::with_capacity_and_hasher(count, Default::default()),
            };
            for card in self.cards() {
                cards.push(card.clone())?;
            }
            next.cards = Arc::new(cards);
            next.card_overlay = Arc::default();
        }
        Ok(next)
    }

    /// Everything a lookup can see, in a canonical order: for comparing a snapshot built
    /// from the store with one reached by changes (`tests/snapshot_delta.rs`). Slow (it walks
    /// every card); not for the hot path.
    pub fn contents(&self) -> Contents {
        let mut cards: Vec<Card> = self.cards().cloned().collect();
        cards.sort_by_key(|card| card.id);
        let by_token_agrees = cards
            .iter()
            .all(|card| self.card_by_token(&card.token).map(|c| c.id) == Some(card.id));
        let mut members: Vec<Member> = self
            .members
            .keys()
            .chain(self.member_overlay.keys())
            .filter_map(|id| self.member(*id).cloned())
            .collect();
        members.sort_by_key(|member| member.id);
        members.dedup_by_key(|member| member.id);
        let mut merchants = self.merchants.list.clone();
        merchants.sort_by_key(|merchant| merchant.id);
        let mut terminals: Vec<TerminalView> = self
            .terminals
            .list
            .iter()
            .map(|terminal| TerminalView {
                id: terminal.id,
                terminal_id: terminal.terminal_id.as_str().to_owned(),
                ksi: terminal.ksi.as_str().to_owned(),
                merchant: terminal.merchant,
                status: format!("{:?}", terminal.status),
                groups: terminal.groups.to_vec(),
                key_check: key_check(&terminal.keys),
                found_by_ksi: self
                    .keys_by_ksi(terminal.ksi.as_bytes())
                    .map(|keyed| keyed.terminal.id),
            })
            .collect();
        terminals.sort_by_key(|view| view.id);
        let mut previous: Vec<(String, TerminalRowId, UnixMillis, [u8; 8])> = self
            .terminals
            .previous_keys
            .iter()
            .filter_map(|(ksi, keys)| {
                let terminal = self
                    .terminals
                    .list
                    .get(usize::try_from(keys.terminal).ok()?)?;
                Some((
                    String::from_utf8_lossy(ksi).into_owned(),
                    terminal.id,
                    keys.valid_until,
                    key_check(&keys.keys),
                ))
            })
            .collect();
        previous.sort();
        let mut tiers: Vec<(TierId, String)> = self
            .tiers
            .map
            .values()
            .map(|tier| (tier.id, format!("{tier:?}")))
            .collect();
        tiers.sort();
        let mut bins: Vec<[u8; 6]> = cards.iter().map(|card| card.bin).collect();
        bins.sort_unstable();
        bins.dedup();
        let mut candidates = Vec::new();
        for merchant in &merchants {
            for bin in &bins {
                let mut ids: Vec<(RuleId, bool)> = self
                    .rules_for_purchase(merchant.id, bin)
                    .filter(|candidate| {
                        let ranges = &candidate.rule.eligibility.bins;
                        ranges.is_empty() || ranges.iter().any(|range| range.contains(bin))
                    })
                    .map(|candidate| (candidate.rule.id, candidate.merchant_matched))
                    .collect();
                ids.sort_unstable();
                candidates.push((merchant.id, *bin, ids));
            }
        }
        Contents {
            version: self.version,
            tiers,
            ladder: self.tiers.ladder.clone(),
            merchants: merchants.iter().map(|m| format!("{m:?}")).collect(),
            terminals,
            previous,
            members,
            cards,
            by_token_agrees,
            card_count: self.card_count(),
            rules: self.rules.list.iter().map(|r| format!("{r:?}")).collect(),
            candidates,
        }
    }
}

/// A MAC of a fixed message under `keys`: equal keys give equal checks, and the keys
/// themselves are never compared or printed.
fn key_check(keys: &protocol::WorkingKeys) -> [u8; 8] {
    let mac = protocol::mac::compute(keys, b"lsw snapshot key check");
    let mut check = [0_u8; 8];
    for (to, from) in check.iter_mut().zip(mac.iter()) {
        *to = *from;
    }
    check
}

/// A terminal as [`Contents`] compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalView {
    /// Row id.
    pub id: TerminalRowId,
    /// Terminal id.
    pub terminal_id: String,
    /// Current KSI.
    pub ksi: String,
    /// Merchant.
    pub merchant: MerchantId,
    /// Status.
    pub status: String,
    /// Groups.
    pub groups: Vec<GroupId>,
    /// A check value of its working keys.
    pub key_check: [u8; 8],
    /// The terminal its KSI finds.
    pub found_by_ksi: Option<TerminalRowId>,
}

/// For one merchant and card BIN, the rules that can apply and whether each came as naming
/// the merchant.
pub type Candidates = (MerchantId, [u8; 6], Vec<(RuleId, bool)>);

/// What [`Snapshot::contents`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// The reference version.
    pub version: u64,
    /// Tiers by id, printed.
    pub tiers: Vec<(TierId, String)>,
    /// The earnable tiers, best first.
    pub ladder: Vec<TierId>,
    /// Merchants by id, printed.
    pub merchants: Vec<String>,
    /// Terminals by id.
    pub terminals: Vec<TerminalView>,
    /// Previous keys: KSI, terminal, end of overlap, key check.
    pub previous: Vec<(String, TerminalRowId, UnixMillis, [u8; 8])>,
    /// Members by id.
    pub members: Vec<Member>,
    /// Cards by id.
    pub cards: Vec<Card>,
    /// Whether every card is found by its token.
    pub by_token_agrees: bool,
    /// [`Snapshot::card_count`].
    pub card_count: usize,
    /// Rules by id, printed.
    pub rules: Vec<String>,
    /// For each merchant and card BIN, the rules that can apply (after the BIN check pricing
    /// makes) and whether each came as naming the merchant.
    pub candidates: Vec<Candidates>,
}
