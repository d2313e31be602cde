//! [`Snapshot`]: the reference data in memory, immutable, meant to be shared in an `Arc` and
//! swapped whole when an import changes it (DESIGN.md section 3).
//!
//! Built once per reference version, it answers every lookup the engine makes in O(1): terminal
//! by KSI, merchant by id, card by PAN token, member and tier by id, and the candidate rules of
//! a merchant, indexed at build time so a decision never scans every rule.
//!
//! Memory, for 1M cards, 10k merchants and 1k rules: a [`Card`] is about 100 bytes and its two
//! index entries about 35, so cards take about 135 MB; members with a few groups about 60 MB;
//! merchants, terminals (with their derived key schedules, about 1 KB each) and rules a few MB.

mod row_index;
mod token_index;

use protocol::WorkingKeys;

use crate::domain::reference::{CardRecord, MerchantRecord, RuleRecord, TerminalRecord};
use crate::domain::{
    Activity, Card, CardId, CardStatus, Code, GroupId, LoadedReference, Member, MemberId, Merchant,
    MerchantId, PanToken, Percent, Rials, Rule, RuleId, Terminal, TerminalRowId, Tier, TierId,
    UnixMillis,
};
use crate::fast_hash::HashMap;
use crate::pricing::{Candidate, Purchase};
use row_index::RowIndex;
use token_index::TokenIndex;

/// The immutable reference data of one version.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    merchants: Vec<Merchant>,
    /// Positions in `merchants` by row id (see [`RowIndex`] for why not a `HashMap`).
    merchant_by_id: RowIndex,
    terminals: Vec<Terminal>,
    terminal_by_ksi: HashMap<[u8; 16], u32>,
    /// Previous keys during a rotation's overlap, by their KSI.
    previous_keys: HashMap<[u8; 16], PreviousKeys>,
    terminal_by_id: HashMap<TerminalRowId, u32>,
    members: HashMap<MemberId, Member>,
    cards: Vec<Card>,
    /// Card rows by PAN token (see [`TokenIndex`] for why not a `HashMap`).
    card_by_token: TokenIndex,
    card_by_id: HashMap<CardId, u32>,
    tiers: HashMap<TierId, Tier>,
    /// The tiers activity can earn, best first (rank descending, then id ascending). Empty
    /// when the network has no earnable tier: then no confirm recomputes anything.
    ladder: Vec<TierId>,
    /// Every rule, ascending by id.
    rules: Vec<Rule>,
    /// Indices into `rules` of the rules open to every merchant.
    rules_any_merchant: Box<[u32]>,
    /// Of those, the rules open to every card BIN.
    rules_any_unbinned: Box<[u32]>,
    /// Of those, the rules limited to BIN ranges.
    rules_any_binned: Box<[u32]>,
    /// For each BIN of a card in the snapshot, the rules of `rules_any_binned` with a range
    /// that contains it. Network-wide campaigns are narrowed by BIN, so a purchase looks only
    /// at the few that can apply to its card.
    rules_any_by_bin: HashMap<[u8; 6], Box<[u32]>>,
    /// Indices into `rules` of the rules naming a merchant, directly or by group.
    rules_by_merchant: HashMap<MerchantId, Box<[u32]>>,
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
#[derive(Debug)]
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
}

impl Snapshot {
    /// Builds the snapshot of `reference`: resolves every code to its row id, derives each
    /// terminal's working keys from its TMK and indexes rules by merchant.
    ///
    /// # Errors
    /// [`SnapshotError`] when a code has no row id or a unique key repeats.
    pub fn build(reference: &LoadedReference) -> Result<Snapshot, SnapshotError> {
        let data = &reference.data;
        let ids = &reference.ids;
        let mut tiers = HashMap::with_capacity_and_hasher(data.tiers.len(), Default::default());
        for record in &data.tiers {
            let id = resolve(&ids.tiers, &record.code, "tier")?;
            let tier = Tier {
                id,
                code: record.code.clone(),
                name: record.name.clone(),
                cashback_rate: record.cashback_rate,
                rank: record.rank,
                spend_rials_min: record.spend_rials_min,
                purchases_min: record.purchases_min,
            };
            unique(tiers.insert(id, tier).is_none(), "tiers", id.get())?;
        }
        let mut ladder: Vec<&Tier> = tiers.values().filter(|t| t.is_earnable()).collect();
        ladder.sort_by_key(|tier| (std::cmp::Reverse(tier.rank), tier.id));
        let ladder = ladder.into_iter().map(|tier| tier.id).collect();
        let (merchants, merchant_by_id) = build_merchants(reference)?;
        let mut members = HashMap::with_capacity_and_hasher(data.members.len(), Default::default());
        for record in &data.members {
            let id = resolve(&ids.members, &record.code, "member")?;
            let groups = resolve_groups(&ids.member_groups, &record.groups)?;
            let member = Member {
                id,
                code: record.code.clone(),
                groups,
                referred_by: record
                    .referred_by
                    .as_ref()
                    .map(|code| resolve(&ids.members, code, "member"))
                    .transpose()?,
                card: None,
            };
            unique(members.insert(id, member).is_none(), "members", id.get())?;
        }
        let mut snapshot = Snapshot {
            version: reference.version,
            merchants,
            merchant_by_id,
            terminals: Vec::with_capacity(data.terminals.len()),
            previous_keys: HashMap::default(),
            terminal_by_ksi: HashMap::with_capacity_and_hasher(
                data.terminals.len(),
                Default::default(),
            ),
            terminal_by_id: HashMap::with_capacity_and_hasher(
                data.terminals.len(),
                Default::default(),
            ),
            members,
            cards: Vec::with_capacity(data.cards.len()),
            card_by_token: TokenIndex::with_capacity(data.cards.len()),
            card_by_id: HashMap::with_capacity_and_hasher(data.cards.len(), Default::default()),
            tiers,
            ladder,
            rules: Vec::with_capacity(data.rules.len()),
            rules_any_merchant: Box::new([]),
            rules_any_unbinned: Box::new([]),
            rules_any_binned: Box::new([]),
            rules_any_by_bin: HashMap::default(),
            rules_by_merchant: HashMap::default(),
        };
        for record in &data.terminals {
            snapshot.add_terminal(record, reference)?;
        }
        for record in &data.cards {
            snapshot.add_card(record, reference)?;
        }
        snapshot.add_rules(&data.rules, reference)?;
        snapshot.add_previous_keys(reference)?;
        Ok(snapshot)
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
        if let Some(index) = self.terminal_by_ksi.get(ksi) {
            let terminal = self.terminals.get(usize::try_from(*index).ok()?)?;
            return Some(Keyed {
                terminal,
                keys: &terminal.keys,
                valid_until: None,
            });
        }
        let previous = self.previous_keys.get(ksi)?;
        let terminal = self
            .terminals
            .get(usize::try_from(previous.terminal).ok()?)?;
        Some(Keyed {
            terminal,
            keys: &previous.keys,
            valid_until: Some(previous.valid_until),
        })
    }

    /// The terminal with row id `id`.
    pub fn terminal(&self, id: TerminalRowId) -> Option<&Terminal> {
        let index = self.terminal_by_id.get(&id)?;
        self.terminals.get(usize::try_from(*index).ok()?)
    }

    /// The merchant with row id `id`.
    pub fn merchant(&self, id: MerchantId) -> Option<&Merchant> {
        let index = self.merchant_by_id.get(id.get())?;
        self.merchants.get(usize::try_from(index).ok()?)
    }

    /// The card whose PAN has token `token`.
    pub fn card_by_token(&self, token: &PanToken) -> Option<&Card> {
        let index = self.card_by_token.get(token, |row| self.token_at(row))?;
        self.cards.get(usize::try_from(index).ok()?)
    }

    /// Reads the first slot a lookup of `token` reads, and returns it as a word: for reading
    /// ahead ([`crate::engine::prefetch`]), not for finding the card.
    pub fn card_slot(&self, token: &PanToken) -> u64 {
        self.card_by_token.first_slot(token)
    }

    fn token_at(&self, row: u32) -> Option<&PanToken> {
        let card = self.cards.get(usize::try_from(row).ok()?)?;
        Some(&card.token)
    }

    /// The card with row id `id`.
    pub fn card(&self, id: CardId) -> Option<&Card> {
        let index = self.card_by_id.get(&id)?;
        self.cards.get(usize::try_from(*index).ok()?)
    }

    /// The member with row id `id`.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The tier with row id `id`.
    pub fn tier(&self, id: TierId) -> Option<&Tier> {
        self.tiers.get(&id)
    }

    /// Whether any tier can be earned by activity (else tiers are only given by hand).
    pub fn has_tier_ladder(&self) -> bool {
        !self.ladder.is_empty()
    }

    /// The best tier `activity` earns, if any.
    pub fn earned_tier(&self, activity: Activity) -> Option<TierId> {
        self.ladder
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

    fn rule_at(&self, index: u32) -> Option<&Rule> {
        self.rules.get(usize::try_from(index).ok()?)
    }

    /// The rule with row id `id` (a binary search: rules are sorted by id).
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        let index = self.rules.binary_search_by_key(&id, |rule| rule.id).ok()?;
        self.rules.get(index)
    }

    /// The rules that may apply at `merchant`: those open to every merchant and those naming
    /// it directly or by one of its groups. The other eligibility checks, the window and the
    /// amounts are pricing's ([`crate::pricing::discount`]). Each rule appears once; the order
    /// is not by id, which pricing does not need.
    pub fn rules_for_merchant(&self, merchant: MerchantId) -> impl Iterator<Item = &Rule> + '_ {
        let named = self
            .rules_by_merchant
            .get(&merchant)
            .map_or(&[][..], |list| &list[..]);
        self.rules_any_merchant
            .iter()
            .chain(named)
            .filter_map(|index| self.rules.get(usize::try_from(*index).ok()?))
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
        let named = self
            .rules_by_merchant
            .get(&merchant)
            .map_or(&[][..], |list| &list[..]);
        let binned = self
            .rules_any_by_bin
            .get(bin)
            .map_or(&self.rules_any_binned[..], |list| &list[..]);
        let open = self
            .rules_any_unbinned
            .iter()
            .chain(binned)
            .filter_map(|index| self.rule_at(*index))
            .map(Candidate::from);
        let naming = named.iter().filter_map(|index| {
            Some(Candidate {
                rule: self.rule_at(*index)?,
                merchant_matched: true,
            })
        });
        open.chain(naming)
    }

    /// Every card, in no particular order.
    pub fn cards(&self) -> &[Card] {
        &self.cards
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
        self.cards.len()
    }

    /// Number of terminals.
    pub fn terminal_count(&self) -> usize {
        self.terminals.len()
    }

    fn add_previous_keys(&mut self, reference: &LoadedReference) -> Result<(), SnapshotError> {
        for previous in &reference.previous_keys {
            let terminal_id = reference
                .ids
                .terminals
                .get(&previous.terminal)
                .copied()
                .ok_or_else(|| SnapshotError::Unresolved {
                    kind: "terminal",
                    code: previous.terminal.as_str().into(),
                })?;
            let index = *self.terminal_by_id.get(&terminal_id).ok_or_else(|| {
                SnapshotError::Unresolved {
                    kind: "terminal",
                    code: previous.terminal.as_str().into(),
                }
            })?;
            let ksi = *previous.ksi.as_bytes();
            unique(
                !self.terminal_by_ksi.contains_key(&ksi),
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

    fn add_terminal(
        &mut self,
        record: &TerminalRecord,
        reference: &LoadedReference,
    ) -> Result<(), SnapshotError> {
        let ids = &reference.ids;
        let id = ids
            .terminals
            .get(&record.terminal_id)
            .copied()
            .ok_or_else(|| SnapshotError::Unresolved {
                kind: "terminal",
                code: record.terminal_id.as_str().into(),
            })?;
        let terminal = Terminal {
            id,
            terminal_id: record.terminal_id,
            ksi: record.ksi,
            merchant: resolve(&ids.merchants, &record.merchant, "merchant")?,
            status: record.status,
            keys: WorkingKeys::derive(&record.tmk),
            groups: resolve_groups(&ids.terminal_groups, &record.groups)?,
        };
        let index = index_of(self.terminals.len(), "terminals")?;
        let fresh_ksi = self
            .terminal_by_ksi
            .insert(*record.ksi.as_bytes(), index)
            .is_none();
        unique(fresh_ksi, "terminals", record.ksi.as_str())?;
        unique(
            self.terminal_by_id.insert(id, index).is_none(),
            "terminals",
            id.get(),
        )?;
        self.terminals.push(terminal);
        Ok(())
    }

    fn add_card(
        &mut self,
        record: &CardRecord,
        reference: &LoadedReference,
    ) -> Result<(), SnapshotError> {
        let ids = &reference.ids;
        let member = resolve(&ids.members, &record.member, "member")?;
        let id = resolve(&ids.cards, &record.code, "card")?;
        let member_groups = match self.members.get_mut(&member) {
            Some(found) => {
                if record.status == CardStatus::Active && found.card.is_none_or(|card| id < card) {
                    found.card = Some(id);
                }
                found.groups.clone()
            }
            None => Box::new([]),
        };
        let card = Card {
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
        };
        let index = index_of(self.cards.len(), "cards")?;
        // The row is pushed first: the token index compares tokens in the rows. A refused
        // card is taken off again, and the build fails.
        let (token, id) = (card.token, card.id);
        self.cards.push(card);
        let cards = &self.cards;
        let token_at = |row: u32| {
            let card: &Card = cards.get(usize::try_from(row).ok()?)?;
            Some(&card.token)
        };
        let fresh_token = self.card_by_token.insert(&token, index, token_at);
        let fresh_id = fresh_token && self.card_by_id.insert(id, index).is_none();
        if !fresh_id {
            self.cards.pop();
        }
        unique(fresh_token, "cards", format!("{token:?}"))?;
        unique(fresh_id, "cards", id.get())?;
        Ok(())
    }

    fn add_rules(
        &mut self,
        records: &[RuleRecord],
        reference: &LoadedReference,
    ) -> Result<(), SnapshotError> {
        for record in records {
            self.rules.push(resolve_rule(record, reference)?);
        }
        self.rules.sort_by_key(|rule| rule.id);
        for pair in self.rules.windows(2) {
            if let [left, right] = pair {
                unique(left.id != right.id, "rules", left.id.get())?;
            }
        }
        let mut by_group: HashMap<GroupId, Vec<MerchantId>> = HashMap::default();
        for merchant in &self.merchants {
            for group in merchant.groups.iter() {
                by_group.entry(*group).or_default().push(merchant.id);
            }
        }
        let mut any = Vec::new();
        let mut named: HashMap<MerchantId, Vec<u32>> = HashMap::default();
        for (position, rule) in self.rules.iter().enumerate() {
            let index = index_of(position, "rules")?;
            if rule.eligibility.any_merchant() {
                any.push(index);
                continue;
            }
            let grouped = rule.eligibility.merchant_groups.iter();
            let via_groups = grouped.filter_map(|group| by_group.get(group)).flatten();
            for merchant in rule.eligibility.merchants.iter().chain(via_groups) {
                let list = named.entry(*merchant).or_default();
                // Rules are visited in order, so a repeat can only be the last entry.
                if list.last() != Some(&index) {
                    list.push(index);
                }
            }
        }
        let (binned, unbinned): (Vec<u32>, Vec<u32>) = any.iter().partition(|index| {
            self.rule_at(**index)
                .is_some_and(|rule| !rule.eligibility.bins.is_empty())
        });
        let mut by_bin: HashMap<[u8; 6], Box<[u32]>> = HashMap::default();
        for card in &self.cards {
            if by_bin.contains_key(&card.bin) {
                continue;
            }
            let matching: Vec<u32> = binned
                .iter()
                .copied()
                .filter(|index| {
                    self.rule_at(*index).is_some_and(|rule| {
                        rule.eligibility
                            .bins
                            .iter()
                            .any(|range| range.contains(&card.bin))
                    })
                })
                .collect();
            by_bin.insert(card.bin, matching.into_boxed_slice());
        }
        self.rules_any_merchant = any.into_boxed_slice();
        self.rules_any_unbinned = unbinned.into_boxed_slice();
        self.rules_any_binned = binned.into_boxed_slice();
        self.rules_any_by_bin = by_bin;
        self.rules_by_merchant = named
            .into_iter()
            .map(|(id, list)| (id, list.into_boxed_slice()))
            .collect();
        Ok(())
    }
}

fn build_merchants(
    reference: &LoadedReference,
) -> Result<(Vec<Merchant>, RowIndex), SnapshotError> {
    let ids = &reference.ids;
    let mut merchants = Vec::with_capacity(reference.data.merchants.len());
    let mut by_id = RowIndex::with_rows(reference.data.merchants.len());
    for record in &reference.data.merchants {
        let MerchantRecord {
            code,
            profile,
            groups,
        } = record;
        let id = resolve(&ids.merchants, code, "merchant")?;
        let merchant = Merchant {
            id,
            code: code.clone(),
            profile: profile.clone(),
            groups: resolve_groups(&ids.merchant_groups, groups)?,
        };
        let index = index_of(merchants.len(), "merchants")?;
        unique(by_id.insert(id.get(), index), "merchants", id.get())?;
        merchants.push(merchant);
    }
    Ok((merchants, by_id))
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
    ids: &std::collections::HashMap<Code, Id>,
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
    ids: &std::collections::HashMap<Code, GroupId>,
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
    u32::try_from(position).map_err(|_| SnapshotError::TooMany { kind })
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
