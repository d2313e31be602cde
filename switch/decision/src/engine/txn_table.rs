//! [`TxnTable`]: the engine's transactions by id, in chunks of consecutive ids.
//!
//! Why not a `HashMap<TxnId, Txn>`: the engine hands ids out in order, and a map scatters
//! them, so every approved purchase wrote its 300-byte row into a random bucket, five cache
//! lines fetched from memory before they could be written. Here transaction `n + 1` lands next
//! to transaction `n`, in a line just written. The chunks are found through a small map (a few
//! thousand entries for ten million transactions, so it stays cached), which keeps ids from
//! another process or a gap in the sequence cheap: a chunk is allocated only when one of its
//! ids is used.

use crate::engine::state::{Txn, TxnId};
use crate::fast_hash::HashMap;

/// Ids per chunk: big enough that the chunk map stays small, small enough that a lone id far
/// from the others wastes little.
const CHUNK: u64 = 256;

/// Transactions by id.
#[derive(Debug, Default)]
pub struct TxnTable {
    /// Each chunk holds its slots up to the highest used, so filling it in order writes each
    /// slot once (a chunk written out in full when made cost a burst of cold writes).
    chunks: HashMap<u64, Vec<Option<Txn>>>,
    len: usize,
}

/// The chunk number and the slot within it of `id` (ids are row ids: never negative).
fn place(id: TxnId) -> Option<(u64, usize)> {
    let id = u64::try_from(id.0).ok()?;
    let slot = usize::try_from(id % CHUNK).ok()?;
    Some((id / CHUNK, slot))
}

impl TxnTable {
    /// The transaction `id`.
    pub fn get(&self, id: &TxnId) -> Option<&Txn> {
        let (chunk, slot) = place(*id)?;
        self.chunks.get(&chunk)?.get(slot)?.as_ref()
    }

    /// The transaction `id`, to change it.
    pub fn get_mut(&mut self, id: &TxnId) -> Option<&mut Txn> {
        let (chunk, slot) = place(*id)?;
        self.chunks.get_mut(&chunk)?.get_mut(slot)?.as_mut()
    }

    /// Whether transaction `id` is known.
    pub fn contains_key(&self, id: &TxnId) -> bool {
        self.get(id).is_some()
    }

    /// Puts `txn` under its id, returning the one it replaces. An id the table cannot place (a
    /// negative one, which the store never assigns) is refused: `Err` gives the row back.
    ///
    /// # Errors
    /// The transaction, when its id is negative.
    pub fn insert(&mut self, txn: Txn) -> Result<Option<Txn>, Box<Txn>> {
        let Some((chunk, slot)) = place(txn.id) else {
            return Err(Box::new(txn));
        };
        let slots = self
            .chunks
            .entry(chunk)
            .or_insert_with(|| Vec::with_capacity(usize::try_from(CHUNK).unwrap_or(1)));
        if slots.len() <= slot {
            slots.resize_with(slot + 1, || None);
        }
        let Some(cell) = slots.get_mut(slot) else {
            return Err(Box::new(txn));
        };
        let old = cell.replace(txn);
        if old.is_none() {
            self.len += 1;
        }
        Ok(old)
    }

    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every transaction with its id, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (TxnId, &Txn)> + '_ {
        self.chunks
            .values()
            .flat_map(|slots| slots.iter().flatten())
            .map(|txn| (txn.id, txn))
    }

    /// Forgets every transaction.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use protocol::{Mti, ProcessingCode, Rrn, Stan};

    use super::*;
    use crate::domain::{CardId, MemberId, MerchantId, Rials, TerminalRowId, UnixMillis};
    use crate::engine::state::{Amounts, Capture, MessageKey, TxnState};

    /// A pending transaction of `id` (and G of `id` rials), for tests.
    pub(crate) fn txn(id: i64) -> Txn {
        let zero = Rials::ZERO;
        Txn {
            id: TxnId(id),
            key: MessageKey {
                ksi: [b'0'; 16],
                mti: Mti::AuthorizationRequest,
                stan: Stan::new(1).unwrap(),
                transmitted: [b'0'; 10],
            },
            terminal: TerminalRowId::new(1),
            merchant: MerchantId::new(1),
            card: CardId::new(1),
            member: MemberId::new(1),
            code: ProcessingCode::ClubPurchase,
            amounts: Amounts {
                gross: Rials::new(id).unwrap(),
                discount: zero,
                fee: zero,
                store_credit: zero,
                club: zero,
                bank_rest: zero,
                cashback: zero,
            },
            rule: None,
            coupon: None,
            snapshot_version: 1,
            rrn: Rrn::parse(b"000000000001").unwrap(),
            state: TxnState::Pending,
            created_at: UnixMillis::new(0),
            hold_expires_at: UnixMillis::new(0),
            capture: Capture::none(),
            local_day: 0,
        }
    }

    #[test]
    fn finds_what_it_holds_across_chunks_and_gaps() {
        let mut table = TxnTable::default();
        // Consecutive ids across a chunk border, one far away, and id 0.
        let ids = [0, 1, 255, 256, 257, 1_000_000_007];
        for id in ids {
            assert!(table.insert(txn(id)).unwrap().is_none());
        }
        assert_eq!(table.len(), ids.len());
        for id in ids {
            assert_eq!(table.get(&TxnId(id)).unwrap().id, TxnId(id));
            assert!(table.contains_key(&TxnId(id)));
        }
        for absent in [2, 254, 258, 1_000_000_006] {
            assert!(table.get(&TxnId(absent)).is_none(), "{absent}");
        }
        let mut listed: Vec<i64> = table
            .iter()
            .map(|(id, txn)| {
                assert_eq!(id, txn.id);
                id.0
            })
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, ids);
    }

    #[test]
    fn replaces_changes_and_refuses_negative_ids() {
        let mut table = TxnTable::default();
        assert!(table.insert(txn(7)).unwrap().is_none());
        table.get_mut(&TxnId(7)).unwrap().state = TxnState::Confirmed;
        assert_eq!(table.get(&TxnId(7)).unwrap().state, TxnState::Confirmed);
        let old = table.insert(txn(7)).unwrap().unwrap();
        assert_eq!(old.state, TxnState::Confirmed);
        assert_eq!(table.get(&TxnId(7)).unwrap().state, TxnState::Pending);
        assert_eq!(table.len(), 1);
        let negative = Txn {
            id: TxnId(-1),
            ..txn(1)
        };
        assert!(table.insert(negative).is_err());
        assert!(table.get(&TxnId(-1)).is_none());
        assert_eq!(table.len(), 1);
        table.clear();
        assert!(table.is_empty());
        assert!(table.get(&TxnId(7)).is_none());
    }
}
