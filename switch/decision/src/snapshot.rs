//! [`Snapshot`]: the reference data in memory, immutable, meant to be shared in an `Arc` and
//! swapped whole when an import changes it (docs/design.md section 3).
//!
//! Built once per reference version, it answers every lookup the engine makes in O(1): terminal
//! by KSI, merchant by id, card by PAN token, member and tier by id, and the candidate rules of
//! a merchant, indexed at build time so a decision never scans every rule.
//!
//! Memory, for 1M cards, 10k merchants and 1k rules: a [`Card`] is about 100 bytes and its two
//! index entries about 35, so cards take about 135 MB; members with a few groups about 60 MB;
//! merchants, terminals (with their derived key schedules, about 1 KB each) and rules a few MB.

pub mod delta;
mod row_index;
mod token_index;

use protocol::WorkingKeys;

use std::sync::Arc;

use crate::domain::reference::{
    CardRecord, MemberRecord, MerchantRecord, PreviousKey, RuleRecord, TerminalRecord, TierRecord,
};
use crate::domain::{
    Activity, Card, CardId, CardStatus, Code, GroupId, LoadedReference, Member, MemberId, Merchant,
    MerchantId, PanToken, Percent, ReadRows, Rials, RowIds, Rule, RuleId, Terminal, TerminalRowId,
    Tier, TierId, UnixMillis,
};
use crate::fast_hash::HashMap;
use crate::pricing::{Candidate, Purchase};
use row_index::RowIndex;
use token_index::TokenIndex;

/// The immutable reference data of one version.
///
/// Each part sits in its own `Arc`, so a change to one record copies only its part (and the
/// million-row parts, cards and members, not even that: see [`delta`]). Cloning a snapshot
/// clones nine pointers.
#[derive(Debug, Clone)]
pub struct Snapshot {
    version: u64,
    merchants: Arc<Merchants>,
    terminals: Arc<Terminals>,
    /// Members as built (or last compacted); `member_overlay` holds those changed since.
    members: Arc<HashMap<MemberId, Member>>,
    member_overlay: Arc<HashMap<MemberId, Member>>,
    /// Cards as built (or last compacted); `card_overlay` holds those changed since.
    cards: Arc<Cards>,
    card_overlay: Arc<CardOverlay>,
    tiers: Arc<Tiers>,
    rules: Arc<Rules>,
}

/// Merchants, and their positions by row id.
#[derive(Debug, Clone)]
struct Merchants {
    list: Vec<Merchant>,
    /// Positions in `list` by row id (see [`RowIndex`] for why not a `HashMap`).
    by_id: RowIndex,
}

/// Terminals, with their current and previous keys' KSIs.
#[derive(Debug, Clone)]
struct Terminals {
    list: Vec<Terminal>,
    by_ksi: HashMap<[u8; 16], u32>,
    /// Previous keys during a rotation's overlap, by their KSI.
    previous_keys: HashMap<[u8; 16], PreviousKeys>,
    by_id: HashMap<TerminalRowId, u32>,
}

/// The cards of a build or a compaction: read-only afterwards.
#[derive(Debug)]
struct Cards {
    list: Vec<Card>,
    /// Card rows by PAN token (see [`TokenIndex`] for why not a `HashMap`).
    by_token: TokenIndex,
    by_id: HashMap<CardId, u32>,
}

/// The cards changed or added since [`Cards`] was built. A card here hides its row in
/// [`Cards`] whatever its token: a lookup by a token the card no longer has finds nothing.
#[derive(Debug, Clone, Default)]
struct CardOverlay {
    list: Vec<Card>,
    by_token: HashMap<PanToken, u32>,
    by_id: HashMap<CardId, u32>,
    /// How many of `list` are not in [`Cards`] at all (issued since).
    added: usize,
    /// A bit per value of a token's first two bytes (a token is keyed hash output, so they are
    /// uniform), set for every token the overlay has held; and the same for the low 16 bits of
    /// card ids. A lookup whose bit is clear skips the overlay's maps: with a few thousand rows
    /// in the overlay, nineteen lookups in twenty read one word of this filter instead
    /// (`engine_decide_1m_cards` with `LSW_BENCH_OVERLAY`). Empty until the first row.
    token_bits: Vec<u64>,
    id_bits: Vec<u64>,
}

/// Words of [`CardOverlay`]'s filters: 2^16 bits, 8 KiB each.
const OVERLAY_FILTER_WORDS: usize = 1 << 10;

/// The word and bit of a 16-bit filter value.
fn filter_slot(value: u16) -> (usize, u64) {
    (usize::from(value >> 6), 1_u64 << (value & 63))
}

impl CardOverlay {
    fn token_filter(token: &PanToken) -> u16 {
        let bytes = token.as_bytes();
        u16::from_le_bytes([bytes[0], bytes[1]])
    }

    fn id_filter(id: CardId) -> u16 {
        u16::try_from(id.get() & 0xffff).unwrap_or(0)
    }

    fn may_hold(bits: &[u64], value: u16) -> bool {
        let (word, bit) = filter_slot(value);
        bits.get(word).is_some_and(|w| w & bit != 0)
    }

    fn may_hold_token(&self, token: &PanToken) -> bool {
        CardOverlay::may_hold(&self.token_bits, CardOverlay::token_filter(token))
    }

    fn may_hold_id(&self, id: CardId) -> bool {
        CardOverlay::may_hold(&self.id_bits, CardOverlay::id_filter(id))
    }

    /// Sets the filters' bits for `card`.
    fn mark(&mut self, card: &Card) {
        for (bits, value) in [
            (&mut self.token_bits, CardOverlay::token_filter(&card.token)),
            (&mut self.id_bits, CardOverlay::id_filter(card.id)),
        ] {
            if bits.is_empty() {
                bits.resize(OVERLAY_FILTER_WORDS, 0);
            }
            let (word, bit) = filter_slot(value);
            if let Some(word) = bits.get_mut(word) {
                *word |= bit;
            }
        }
    }
}

/// Tiers, and the ladder of those activity can earn.
#[derive(Debug, Clone)]
struct Tiers {
    map: HashMap<TierId, Tier>,
    /// The tiers activity can earn, best first (rank descending, then id ascending). Empty
    /// when the network has no earnable tier: then no confirm recomputes anything.
    ladder: Vec<TierId>,
}

/// Rules, and the indexes that give a purchase its candidates.
#[derive(Debug, Clone)]
struct Rules {
    /// Every rule, ascending by id.
    list: Vec<Rule>,
    /// Indices into `list` of the rules open to every merchant.
    any_merchant: Box<[u32]>,
    /// Of those, the rules open to every card BIN.
    any_unbinned: Box<[u32]>,
    /// Of those, the rules limited to BIN ranges.
    any_binned: Box<[u32]>,
    /// For each BIN of a card in the snapshot, the rules of `any_binned` with a range
    /// that contains it. Network-wide campaigns are narrowed by BIN, so a purchase looks only
    /// at the few that can apply to its card.
    any_by_bin: HashMap<[u8; 6], Box<[u32]>>,
    /// Indices into `list` of the rules naming a merchant, directly or by group.
    by_merchant: HashMap<MerchantId, Box<[u32]>>,
}

/// A terminal with the keys of one of its KSIs.
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'s> {
    /// The terminal.
    pub terminal: &'s Terminal,
    /// The working keys of the KSI asked for.
    pub keys: &'s WorkingKeys,
    /// For a previous key, when it stops working; `None` for the current key.
    pub valid_until: Option<UnixMillis>,
}

/// A previous key of a terminal, during a rotation's overlap.
#[derive(Debug, Clone)]
struct PreviousKeys {
    terminal: u32,
    keys: WorkingKeys,
    valid_until: UnixMillis,
}

/// Why reference data cannot become a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A record names a code that has no row id.
    #[error("{kind} {code} has no row id")]
    Unresolved {
        /// What kind of record the code names.
        kind: &'static str,
        /// The code.
        code: String,
    },
    /// Two records share a key that must be unique.
    #[error("two {kind} share the key {key}")]
    Duplicate {
        /// What kind of record.
        kind: &'static str,
        /// The shared key (never a PAN or a key: a KSI, a token prefix or an id).
        key: String,
    },
    /// More records than a 32-bit index can hold.
    #[error("more than 4294967295 {kind}")]
    TooMany {
        /// What kind of record.
        kind: &'static str,
    },
    /// A thread the build split its work onto stopped without an answer (a defect).
    #[error("a snapshot build thread failed")]
    Thread,
}

impl Snapshot {
    /// Builds the snapshot of `reference`: resolves every code to its row id, derives each
    /// terminal's working keys from its TMK and indexes rules by merchant.
    ///
    /// # Errors
    /// [`SnapshotError`] when a code has no row id or a unique key repeats.
    pub fn build(reference: &LoadedReference) -> Result<Snapshot, SnapshotError> {
        Snapshot::build_with(reference, None)
    }

    /// [`Snapshot::build`] of a whole read that came with its members' and cards' row ids in
    /// the order of its records (the switch's `store::reference::Fresh`): no code of a member or
    /// card is looked up. Row ids that do not match the records in number are not used (a
    /// defect, logged); in a debug build each is checked against its code's.
    ///
    /// # Errors
    /// As [`Snapshot::build`].
    pub fn build_read(
        reference: &LoadedReference,
        rows: &ReadRows,
    ) -> Result<Snapshot, SnapshotError> {
        let data = &reference.data;
        if rows.members.len() != data.members.len() || rows.cards.len() != data.cards.len() {
            tracing::warn!(
                members = data.members.len(),
                member_rows = rows.members.len(),
                cards = data.cards.len(),
                card_rows = rows.cards.len(),
                "snapshot: the row ids read do not match the records; looking codes up instead"
            );
            return Snapshot::build(reference);
        }
        if cfg!(debug_assertions) {
            let ids = &reference.ids;
            for (record, id) in data.members.iter().zip(&rows.members) {
                debug_assert_eq!(ids.members.get(&record.code), Some(id), "member row id");
            }
            for (record, (id, member)) in data.cards.iter().zip(&rows.cards) {
                debug_assert_eq!(ids.cards.get(&record.code), Some(id), "card row id");
                debug_assert_eq!(ids.members.get(&record.member), Some(member), "its member");
            }
        }
        Snapshot::build_with(reference, Some(rows))
    }

    fn build_with(
        reference: &LoadedReference,
        rows: Option<&ReadRows>,
    ) -> Result<Snapshot, SnapshotError> {
        let data = &reference.data;
        let ids = &reference.ids;
        let mut tiers = Tiers {
            map: HashMap::with_capacity_and_hasher(data.tiers.len(), Default::default()),
            ladder: Vec::new(),
        };
        for record in &data.tiers {
            let tier = tier_of(record, ids)?;
            let id = tier.id;
            unique(tiers.map.insert(id, tier).is_none(), "tiers", id.get())?;
        }
        tiers.rank();
        let merchants = build_merchants(reference)?;
        let mut members = HashMap::with_capacity_and_hasher(data.members.len(), Default::default());
        for (n, record) in data.members.iter().enumerate() {
            let id = match rows.and_then(|rows| rows.members.get(n)) {
                Some(id) => *id,
                None => resolve(&ids.members, &record.code, "member")?,
            };
            let member = member_of(record, id, ids)?;
            unique(members.insert(id, member).is_none(), "members", id.get())?;
        }
        let mut terminals = Terminals {
            list: Vec::with_capacity(data.terminals.len()),
            by_ksi: HashMap::with_capacity_and_hasher(data.terminals.len(), Default::default()),
            previous_keys: HashMap::default(),
            by_id: HashMap::with_capacity_and_hasher(data.terminals.len(), Default::default()),
        };
        for record in &data.terminals {
            terminals.upsert(terminal_of(record, ids)?)?;
        }
        terminals.add_previous_keys(&reference.previous_keys, ids)?;
        let mut cards = Cards {
            list: Vec::with_capacity(data.cards.len()),
            by_token: TokenIndex::with_capacity(data.cards.len()),
            by_id: HashMap::with_capacity_and_hasher(data.cards.len(), Default::default()),
        };
        let card_rows = match rows {
            Some(rows) => std::borrow::Cow::Borrowed(rows.cards.as_slice()),
            None => std::borrow::Cow::Owned(card_ids(&data.cards, ids)?),
        };
        for (record, row) in data.cards.iter().zip(card_rows.iter()) {
            cards.push(card_of(record, *row, ids, &mut members)?)?;
        }
        let mut rule_list = data
            .rules
            .iter()
            .map(|record| resolve_rule(record, reference))
            .collect::<Result<Vec<_>, _>>()?;
        rule_list.sort_by_key(|rule| rule.id);
        let bins = cards.list.iter().map(|card| card.bin);
        let rules = Rules::build(rule_list, &merchants.list, bins)?;
        Ok(Snapshot {
            version: reference.version,
            merchants: Arc::new(merchants),
            terminals: Arc::new(terminals),
            members: Arc::new(members),
            member_overlay: Arc::default(),
            cards: Arc::new(cards),
            card_overlay: Arc::default(),
            tiers: Arc::new(tiers),
            rules: Arc::new(rules),
        })
    }

    /// The reference version this snapshot was built from; every priced transaction records
    /// it.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The terminal whose KSI is `ksi` (16 ASCII bytes): its current KSI, or its previous one
    /// during a rotation's overlap (see [`Snapshot::keys_by_ksi`] for which keys).
    pub fn terminal_by_ksi(&self, ksi: &[u8; 16]) -> Option<&Terminal> {
        self.keys_by_ksi(ksi).map(|keyed| keyed.terminal)
    }

    /// The terminal `ksi` names and the working keys of that KSI: the current ones, or the
    /// previous ones with the end of their overlap window. The switch verifies a request and
    /// MACs its response with the keys of the KSI the request carries.
    pub fn keys_by_ksi(&self, ksi: &[u8; 16]) -> Option<Keyed<'_>> {
        let terminals = &*self.terminals;
        if let Some(index) = terminals.by_ksi.get(ksi) {
            let terminal = terminals.list.get(usize::try_from(*index).ok()?)?;
            return Some(Keyed {
                terminal,
                keys: &terminal.keys,
                valid_until: None,
            });
        }
        let previous = terminals.previous_keys.get(ksi)?;
        let terminal = terminals
            .list
            .get(usize::try_from(previous.terminal).ok()?)?;
        Some(Keyed {
            terminal,
            keys: &previous.keys,
            valid_until: Some(previous.valid_until),
        })
    }

    /// The terminal with row id `id`.
    pub fn terminal(&self, id: TerminalRowId) -> Option<&Terminal> {
        let index = self.terminals.by_id.get(&id)?;
        self.terminals.list.get(usize::try_from(*index).ok()?)
    }

    /// The merchant with row id `id`.
    pub fn merchant(&self, id: MerchantId) -> Option<&Merchant> {
        let index = self.merchants.by_id.get(id.get())?;
        self.merchants.list.get(usize::try_from(index).ok()?)
    }

    /// The card whose PAN has token `token`.
    #[inline]
    pub fn card_by_token(&self, token: &PanToken) -> Option<&Card> {
        // The common case stays small enough to inline into the engine's loops; the overlay's
        // lookup is a call of its own.
        if self.card_overlay.list.is_empty() {
            return self.cards.by_token(token);
        }
        self.card_by_token_overlaid(token)
    }

    #[inline(never)]
    fn card_by_token_overlaid(&self, token: &PanToken) -> Option<&Card> {
        let overlay = &*self.card_overlay;
        if overlay.may_hold_token(token) {
            if let Some(index) = overlay.by_token.get(token) {
                return overlay.list.get(usize::try_from(*index).ok()?);
            }
        }
        // A card changed since the build answers only to its current token.
        self.cards
            .by_token(token)
            .filter(|card| !(overlay.may_hold_id(card.id) && overlay.by_id.contains_key(&card.id)))
    }

    /// Reads the first slot a lookup of `token` reads, and returns it as a word: for reading
    /// ahead ([`crate::engine::prefetch`]), not for finding the card.
    pub fn card_slot(&self, token: &PanToken) -> u64 {
        self.cards.by_token.first_slot(token)
    }

    /// The card with row id `id`.
    pub fn card(&self, id: CardId) -> Option<&Card> {
        let overlay = &*self.card_overlay;
        if overlay.may_hold_id(id) {
            if let Some(index) = overlay.by_id.get(&id) {
                return overlay.list.get(usize::try_from(*index).ok()?);
            }
        }
        let index = self.cards.by_id.get(&id)?;
        self.cards.list.get(usize::try_from(*index).ok()?)
    }

    /// The member with row id `id`.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.member_overlay
            .get(&id)
            .or_else(|| self.members.get(&id))
    }

    /// The tier with row id `id`.
    pub fn tier(&self, id: TierId) -> Option<&Tier> {
        self.tiers.map.get(&id)
    }

    /// Whether any tier can be earned by activity (else tiers are only given by hand).
    pub fn has_tier_ladder(&self) -> bool {
        !self.tiers.ladder.is_empty()
    }

    /// The best tier `activity` earns, if any.
    pub fn earned_tier(&self, activity: Activity) -> Option<TierId> {
        self.tiers
            .ladder
            .iter()
            .copied()
            .find(|id| self.tier(*id).is_some_and(|tier| tier.earned_by(activity)))
    }

    /// The tier a member holds: the better of the one their card was given (a floor) and the
    /// one their activity earned. Better is the higher rank; on equal ranks, the card's.
    pub fn effective_tier(&self, given: Option<TierId>, earned: Option<TierId>) -> Option<TierId> {
        let rank = |id: Option<TierId>| id.and_then(|id| self.tier(id)).map(|tier| tier.rank);
        match (given, earned) {
            (Some(_), Some(_)) if rank(earned) > rank(given) => earned,
            (Some(_), _) => given,
            (None, earned) => earned,
        }
    }

    /// The rule with row id `id` (a binary search: rules are sorted by id).
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        let list = &self.rules.list;
        let index = list.binary_search_by_key(&id, |rule| rule.id).ok()?;
        list.get(index)
    }

    /// The rules that may apply at `merchant`: those open to every merchant and those naming
    /// it directly or by one of its groups. The other eligibility checks, the window and the
    /// amounts are pricing's ([`crate::pricing::discount`]). Each rule appears once; the order
    /// is not by id, which pricing does not need.
    pub fn rules_for_merchant(&self, merchant: MerchantId) -> impl Iterator<Item = &Rule> + '_ {
        let rules = &*self.rules;
        let named = rules
            .by_merchant
            .get(&merchant)
            .map_or(&[][..], |list| &list[..]);
        rules
            .any_merchant
            .iter()
            .chain(named)
            .filter_map(|index| rules.at(*index))
    }

    /// The rules that may apply to a purchase at `merchant` with a card of BIN `bin`: those of
    /// [`Snapshot::rules_for_merchant`] less the network-wide rules whose BIN ranges all miss
    /// `bin`. The engine prices from this list; pricing still checks every condition, BIN
    /// included. A BIN no card of the snapshot has (never the case for a card found in it)
    /// gets every BIN-limited network-wide rule. The rules naming the merchant (directly or by
    /// a group) come marked as such, so pricing does not read their merchant lists again.
    pub fn rules_for_purchase<'s>(
        &'s self,
        merchant: MerchantId,
        bin: &[u8; 6],
    ) -> impl Iterator<Item = Candidate<'s>> + 's {
        let rules = &*self.rules;
        let named = rules
            .by_merchant
            .get(&merchant)
            .map_or(&[][..], |list| &list[..]);
        let binned = rules
            .any_by_bin
            .get(bin)
            .map_or(&rules.any_binned[..], |list| &list[..]);
        let open = rules
            .any_unbinned
            .iter()
            .chain(binned)
            .filter_map(|index| rules.at(*index))
            .map(Candidate::from);
        let naming = named.iter().filter_map(|index| {
            Some(Candidate {
                rule: rules.at(*index)?,
                merchant_matched: true,
            })
        });
        open.chain(naming)
    }

    /// Every card, in no particular order.
    pub fn cards(&self) -> impl Iterator<Item = &Card> + '_ {
        let overlay = &*self.card_overlay;
        let unchanged = self
            .cards
            .list
            .iter()
            .filter(|card| !overlay.by_id.contains_key(&card.id));
        unchanged.chain(overlay.list.iter())
    }

    /// The cashback rate of `tier`, if there is one.
    pub fn tier_rate(&self, tier: Option<TierId>) -> Option<Percent> {
        tier.and_then(|id| self.tier(id))
            .map(|tier| tier.cashback_rate)
    }

    /// The facts pricing matches rules against, for `card` buying `gross` at `terminal` of
    /// `merchant` at `now`.
    pub fn purchase<'s>(
        &'s self,
        merchant: &'s Merchant,
        terminal: &'s Terminal,
        card: &'s Card,
        gross: Rials,
        now: UnixMillis,
    ) -> Purchase<'s> {
        let member_groups = &card.member_groups;
        Purchase {
            gross,
            merchant,
            terminal_groups: &terminal.groups,
            bin: &card.bin,
            tier: card.tier,
            member_groups,
            now,
        }
    }

    /// Number of cards.
    pub fn card_count(&self) -> usize {
        self.cards.list.len() + self.card_overlay.added
    }

    /// Number of terminals.
    pub fn terminal_count(&self) -> usize {
        self.terminals.list.len()
    }
}

impl Member {
    /// Takes `card` as the member's card when it is active and has a lower id than the one
    /// they have: a member goes by their lowest-id active card.
    fn take_card(&mut self, status: CardStatus, card: CardId) {
        if status == CardStatus::Active && self.card.is_none_or(|held| card < held) {
            self.card = Some(card);
        }
    }
}

impl Tiers {
    /// Orders the ladder from `map`.
    fn rank(&mut self) {
        let mut ladder: Vec<&Tier> = self.map.values().filter(|t| t.is_earnable()).collect();
        ladder.sort_by_key(|tier| (std::cmp::Reverse(tier.rank), tier.id));
        self.ladder = ladder.into_iter().map(|tier| tier.id).collect();
    }
}

impl Terminals {
    /// Adds `terminal`, or replaces the one with its row id (its old KSI then names nothing).
    fn upsert(&mut self, terminal: Terminal) -> Result<(), SnapshotError> {
        let ksi = *terminal.ksi.as_bytes();
        let index = match self.by_id.get(&terminal.id).copied() {
            Some(index) => {
                let slot = self
                    .list
                    .get_mut(usize::try_from(index).map_err(|_| too_many("terminals"))?)
                    .ok_or_else(|| too_many("terminals"))?;
                let old = *slot.ksi.as_bytes();
                if old != ksi {
                    self.by_ksi.remove(&old);
                }
                *slot = terminal;
                index
            }
            None => {
                let index = index_of(self.list.len(), "terminals")?;
                self.by_id.insert(terminal.id, index);
                self.list.push(terminal);
                index
            }
        };
        let taken = self
            .by_ksi
            .insert(ksi, index)
            .is_some_and(|was| was != index)
            || self.previous_keys.contains_key(&ksi);
        unique(!taken, "terminals", String::from_utf8_lossy(&ksi))
    }

    fn add_previous_keys(
        &mut self,
        previous: &[PreviousKey],
        ids: &RowIds,
    ) -> Result<(), SnapshotError> {
        for previous in previous {
            let unresolved = || SnapshotError::Unresolved {
                kind: "terminal",
                code: previous.terminal.as_str().into(),
            };
            let terminal_id = ids
                .terminals
                .get(&previous.terminal)
                .copied()
                .ok_or_else(unresolved)?;
            let index = *self.by_id.get(&terminal_id).ok_or_else(unresolved)?;
            let ksi = *previous.ksi.as_bytes();
            unique(
                !self.by_ksi.contains_key(&ksi),
                "terminals",
                previous.ksi.as_str(),
            )?;
            let keys = PreviousKeys {
                terminal: index,
                keys: WorkingKeys::derive(&previous.tmk),
                valid_until: previous.valid_until,
            };
            unique(
                self.previous_keys.insert(ksi, keys).is_none(),
                "terminals",
                previous.ksi.as_str(),
            )?;
        }
        Ok(())
    }
}

impl Cards {
    #[inline]
    fn by_token(&self, token: &PanToken) -> Option<&Card> {
        let index = self.by_token.get(token, |row| self.token_at(row))?;
        self.list.get(usize::try_from(index).ok()?)
    }

    fn token_at(&self, row: u32) -> Option<&PanToken> {
        let card = self.list.get(usize::try_from(row).ok()?)?;
        Some(&card.token)
    }

    /// Adds `card`; refused when its token or id is taken.
    fn push(&mut self, card: Card) -> Result<(), SnapshotError> {
        let index = index_of(self.list.len(), "cards")?;
        // The row is pushed first: the token index compares tokens in the rows. A refused
        // card is taken off again, and the build fails.
        let (token, id) = (card.token, card.id);
        self.list.push(card);
        let list = &self.list;
        let token_at = |row: u32| {
            let card: &Card = list.get(usize::try_from(row).ok()?)?;
            Some(&card.token)
        };
        let fresh_token = self.by_token.insert(&token, index, token_at);
        let fresh_id = fresh_token && self.by_id.insert(id, index).is_none();
        if !fresh_id {
            self.list.pop();
        }
        // The token is written out only for the error: a million cards are pushed at start.
        if !fresh_token {
            unique(false, "cards", format!("{token:?}"))?;
        }
        unique(fresh_id, "cards", id.get())?;
        Ok(())
    }
}

impl Rules {
    /// The rule indexes of `list` (sorted by id) over `merchants`' groups and the BINs of the
    /// cards.
    fn build(
        list: Vec<Rule>,
        merchants: &[Merchant],
        bins: impl Iterator<Item = [u8; 6]>,
    ) -> Result<Rules, SnapshotError> {
        for pair in list.windows(2) {
            if let [left, right] = pair {
                unique(left.id != right.id, "rules", left.id.get())?;
            }
        }
        let mut by_group: HashMap<GroupId, Vec<MerchantId>> = HashMap::default();
        for merchant in merchants {
            for group in merchant.groups.iter() {
                by_group.entry(*group).or_default().push(merchant.id);
            }
        }
        let mut any = Vec::new();
        let mut named: HashMap<MerchantId, Vec<u32>> = HashMap::default();
        for (position, rule) in list.iter().enumerate() {
            let index = index_of(position, "rules")?;
            if rule.eligibility.any_merchant() {
                any.push(index);
                continue;
            }
            let grouped = rule.eligibility.merchant_groups.iter();
            let via_groups = grouped.filter_map(|group| by_group.get(group)).flatten();
            for merchant in rule.eligibility.merchants.iter().chain(via_groups) {
                let entry = named.entry(*merchant).or_default();
                // Rules are visited in order, so a repeat can only be the last entry.
                if entry.last() != Some(&index) {
                    entry.push(index);
                }
            }
        }
        let (binned, unbinned): (Vec<u32>, Vec<u32>) = any.iter().partition(|index| {
            list.get(usize::try_from(**index).unwrap_or(usize::MAX))
                .is_some_and(|rule| !rule.eligibility.bins.is_empty())
        });
        let mut rules = Rules {
            list,
            any_merchant: any.into_boxed_slice(),
            any_unbinned: unbinned.into_boxed_slice(),
            any_binned: binned.into_boxed_slice(),
            any_by_bin: HashMap::default(),
            by_merchant: named
                .into_iter()
                .map(|(id, list)| (id, list.into_boxed_slice()))
                .collect(),
        };
        for bin in bins {
            rules.add_bin(bin);
        }
        Ok(rules)
    }

    fn at(&self, index: u32) -> Option<&Rule> {
        self.list.get(usize::try_from(index).ok()?)
    }

    /// Indexes the BIN-limited network-wide rules whose ranges contain `bin`, once per BIN.
    fn add_bin(&mut self, bin: [u8; 6]) {
        if self.any_by_bin.contains_key(&bin) {
            return;
        }
        let matching: Vec<u32> = self
            .any_binned
            .iter()
            .copied()
            .filter(|index| {
                self.at(*index).is_some_and(|rule| {
                    rule.eligibility
                        .bins
                        .iter()
                        .any(|range| range.contains(&bin))
                })
            })
            .collect();
        self.any_by_bin.insert(bin, matching.into_boxed_slice());
    }
}

fn tier_of(record: &TierRecord, ids: &RowIds) -> Result<Tier, SnapshotError> {
    Ok(Tier {
        id: resolve(&ids.tiers, &record.code, "tier")?,
        code: record.code.clone(),
        name: record.name.clone(),
        cashback_rate: record.cashback_rate,
        rank: record.rank,
        spend_rials_min: record.spend_rials_min,
        purchases_min: record.purchases_min,
    })
}

/// The member of `record`, whose row id is `id`, with no card yet: the build gives it its
/// lowest-id active card.
fn member_of(record: &MemberRecord, id: MemberId, ids: &RowIds) -> Result<Member, SnapshotError> {
    Ok(Member {
        id,
        code: record.code.clone(),
        groups: resolve_groups(&ids.member_groups, &record.groups)?,
        referred_by: record
            .referred_by
            .as_ref()
            .map(|code| resolve(&ids.members, code, "member"))
            .transpose()?,
        card: None,
    })
}

fn terminal_of(record: &TerminalRecord, ids: &RowIds) -> Result<Terminal, SnapshotError> {
    Ok(Terminal {
        id: ids
            .terminals
            .get(&record.terminal_id)
            .copied()
            .ok_or_else(|| SnapshotError::Unresolved {
                kind: "terminal",
                code: record.terminal_id.as_str().into(),
            })?,
        terminal_id: record.terminal_id,
        ksi: record.ksi,
        merchant: resolve(&ids.merchants, &record.merchant, "merchant")?,
        status: record.status,
        keys: WorkingKeys::derive(&record.tmk),
        groups: resolve_groups(&ids.terminal_groups, &record.groups)?,
    })
}

/// The row ids of each card of `records` and of its member, in order. Each code is looked up
/// once, and at a million cards every lookup is a cache miss, so a large list is resolved on
/// two threads (the maps are only read).
fn card_ids(
    records: &[CardRecord],
    ids: &RowIds,
) -> Result<Vec<(CardId, MemberId)>, SnapshotError> {
    let resolve_all = |part: &[CardRecord]| {
        part.iter()
            .map(|record| {
                Ok((
                    resolve(&ids.cards, &record.code, "card")?,
                    resolve(&ids.members, &record.member, "member")?,
                ))
            })
            .collect::<Result<Vec<_>, SnapshotError>>()
    };
    if records.len() < PARALLEL_CARDS_MIN {
        return resolve_all(records);
    }
    let (first, second) = records.split_at(records.len() / 2);
    let (first, second) = std::thread::scope(|scope| {
        let other = scope.spawn(|| resolve_all(second));
        let mine = resolve_all(first);
        (mine, other.join())
    });
    let mut out = first?;
    match second {
        Ok(second) => out.extend(second?),
        // A lookup cannot panic; if the thread did, the build fails rather than the switch.
        Err(_) => return Err(SnapshotError::Thread),
    }
    Ok(out)
}

/// Fewest cards [`card_ids`] resolves on two threads.
const PARALLEL_CARDS_MIN: usize = 100_000;

/// The card of `record`, whose row id and member's are `id` and `member`, with its member's
/// groups when its member is in `members` (which then takes the card as its own, if it is
/// the member's active one).
fn card_of(
    record: &CardRecord,
    (id, member): (CardId, MemberId),
    ids: &RowIds,
    members: &mut HashMap<MemberId, Member>,
) -> Result<Card, SnapshotError> {
    let member_groups = match members.get_mut(&member) {
        Some(found) => {
            found.take_card(record.status, id);
            found.groups.clone()
        }
        None => Box::new([]),
    };
    Ok(Card {
        id,
        member,
        token: record.token,
        bin: record.bin,
        last4: record.last4,
        status: record.status,
        expiry: record.expiry,
        tier: record
            .tier
            .as_ref()
            .map(|code| resolve(&ids.tiers, code, "tier"))
            .transpose()?,
        member_groups,
    })
}

fn merchant_of(record: &MerchantRecord, ids: &RowIds) -> Result<Merchant, SnapshotError> {
    let MerchantRecord {
        code,
        profile,
        groups,
    } = record;
    Ok(Merchant {
        id: resolve(&ids.merchants, code, "merchant")?,
        code: code.clone(),
        profile: profile.clone(),
        groups: resolve_groups(&ids.merchant_groups, groups)?,
    })
}

fn build_merchants(reference: &LoadedReference) -> Result<Merchants, SnapshotError> {
    let records = &reference.data.merchants;
    let mut merchants = Merchants {
        list: Vec::with_capacity(records.len()),
        by_id: RowIndex::with_rows(records.len()),
    };
    for record in records {
        let merchant = merchant_of(record, &reference.ids)?;
        let index = index_of(merchants.list.len(), "merchants")?;
        unique(
            merchants.by_id.insert(merchant.id.get(), index),
            "merchants",
            merchant.id.get(),
        )?;
        merchants.list.push(merchant);
    }
    Ok(merchants)
}

fn resolve_rule(record: &RuleRecord, reference: &LoadedReference) -> Result<Rule, SnapshotError> {
    let ids = &reference.ids;
    let who = &record.eligibility;
    let mut merchants = who
        .merchants
        .iter()
        .map(|code| resolve(&ids.merchants, code, "merchant"))
        .collect::<Result<Vec<_>, _>>()?;
    merchants.sort_unstable();
    let mut tiers = who
        .tiers
        .iter()
        .map(|code| resolve(&ids.tiers, code, "tier"))
        .collect::<Result<Vec<_>, _>>()?;
    tiers.sort_unstable();
    let mut eligibility = crate::domain::Eligibility {
        merchants,
        merchant_groups: resolve_groups(&ids.merchant_groups, &who.merchant_groups)?.into_vec(),
        tiers,
        member_groups: resolve_groups(&ids.member_groups, &who.member_groups)?.into_vec(),
        terminal_groups: resolve_groups(&ids.terminal_groups, &who.terminal_groups)?.into_vec(),
        bins: who.bins.clone(),
    };
    eligibility.bins.sort_unstable();
    Ok(Rule {
        id: resolve(&ids.rules, &record.code, "rule")?,
        code: record.code.clone(),
        terms: record.terms.clone(),
        eligibility,
    })
}

fn resolve<Id: Copy>(
    ids: &crate::fast_hash::CodeMap<Code, Id>,
    code: &Code,
    kind: &'static str,
) -> Result<Id, SnapshotError> {
    ids.get(code)
        .copied()
        .ok_or_else(|| SnapshotError::Unresolved {
            kind,
            code: code.as_str().into(),
        })
}

/// Group ids of `codes`, sorted ascending: pricing intersects sorted lists.
fn resolve_groups(
    ids: &crate::fast_hash::CodeMap<Code, GroupId>,
    codes: &[Code],
) -> Result<Box<[GroupId]>, SnapshotError> {
    let mut groups = codes
        .iter()
        .map(|code| resolve(ids, code, "group"))
        .collect::<Result<Vec<_>, _>>()?;
    groups.sort_unstable();
    groups.dedup();
    Ok(groups.into_boxed_slice())
}

fn index_of(position: usize, kind: &'static str) -> Result<u32, SnapshotError> {
    u32::try_from(position).map_err(|_| too_many(kind))
}

fn too_many(kind: &'static str) -> SnapshotError {
    SnapshotError::TooMany { kind }
}

fn unique(fresh: bool, kind: &'static str, key: impl ToString) -> Result<(), SnapshotError> {
    if fresh {
        Ok(())
    } else {
        Err(SnapshotError::Duplicate {
            kind,
            key: key.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::domain::{CardExpiry, CardStatus, PanToken};

    fn record(n: usize) -> CardRecord {
        CardRecord {
            code: Code::parse(&format!("C-{n:07}")).unwrap(),
            member: Code::parse(&format!("MB-{:07}", n / 2)).unwrap(),
            token: PanToken::from_bytes([0; 32]),
            bin: *b"603799",
            last4: *b"0000",
            status: CardStatus::Active,
            expiry: CardExpiry::new(2030, 1).unwrap(),
            tier: None,
        }
    }

    #[test]
    fn card_ids_resolve_in_order_on_two_threads() {
        let count = PARALLEL_CARDS_MIN + 7;
        let records: Vec<CardRecord> = (0..count).map(record).collect();
        let mut ids = RowIds::default();
        for (n, card) in records.iter().enumerate() {
            let n = i64::try_from(n).unwrap();
            ids.cards.insert(card.code.clone(), CardId::new(n + 1));
            ids.members
                .insert(card.member.clone(), MemberId::new(n / 2 + 10));
        }
        let rows = card_ids(&records, &ids).unwrap();
        assert_eq!(rows.len(), count);
        for (n, (card, member)) in rows.iter().enumerate() {
            let n = i64::try_from(n).unwrap();
            assert_eq!(*card, CardId::new(n + 1));
            assert_eq!(*member, MemberId::new(n / 2 + 10));
        }
        // A code without a row id in the second half (the other thread's) fails the build.
        let mut broken = records;
        broken[count - 1].code = Code::parse("C-missing").unwrap();
        let error = card_ids(&broken, &ids).unwrap_err();
        assert!(matches!(
            error,
            SnapshotError::Unresolved { kind: "card", .. }
        ));
    }
}
