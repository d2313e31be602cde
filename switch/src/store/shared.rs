//! Several switch processes on one PostgreSQL database (docs/design.md section 6; `docs/config.md`,
//! "Several processes").
//!
//! Each process keeps the engine's state in memory, as with SQLite. What keeps them in step:
//! - **Batches take turns.** The first statement of every group commit is
//!   [`begin_batch`]: `UPDATE batch_sequence SET seq = seq + 1 … RETURNING seq`. The row lock
//!   it takes is held until the commit, so the batches of all processes are written one after
//!   the other, and each gets a number.
//! - **Every row a batch writes is stamped with that number** (`change_seq`, by a trigger that
//!   reads the transaction's `lsw.batch_seq`).
//! - **Before deciding, a process reads what the others wrote** since its own last batch
//!   ([`refresh`]): balances, lots, transactions, answered messages, tombstones, credits and
//!   replacements stamped in between. Its engine then decides on the database's current
//!   state, under the lock, so a hold the card cannot cover is declined `51` by the engine's
//!   usual rule, a confirm or reversal of a transaction another process holds finds it, and
//!   a hold another process already released or captured is not released again.
//! - The database's own guards (balance `CHECK`s, the state-transition trigger, primary keys
//!   on captures and answers) still refuse anything that slipped through: the batch fails
//!   whole, is answered `96`, and the process reloads its state.

use std::collections::HashMap;

use sqlx::Row;

use crate::domain::{CardId, MerchantId, UnixMillis};
use crate::engine::state::{ClubAccount, Lot, LotId, State};
use crate::store::ledger::{self, LedgerError};
use crate::store::Conn;

/// Takes the batch lock, numbers the batch and stamps the transaction with it. The lock is
/// held until the transaction ends.
///
/// # Errors
/// [`LedgerError::Database`].
pub async fn begin_batch(conn: &mut Conn) -> Result<i64, LedgerError> {
    let seq: i64 =
        sqlx::query_scalar("UPDATE batch_sequence SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *conn)
            .await?;
    // The number is ours (an integer), not input: formatting it into the statement is safe.
    sqlx::query(&format!("SET LOCAL lsw.batch_seq = '{seq}'"))
        .execute(&mut *conn)
        .await?;
    Ok(seq)
}

/// The batch number the database is at (read before a full load, so nothing written after it
/// is missed).
///
/// # Errors
/// [`LedgerError::Database`].
pub async fn current_seq(conn: &mut Conn) -> Result<i64, LedgerError> {
    Ok(
        sqlx::query_scalar("SELECT seq FROM batch_sequence WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// What [`refresh`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Rows read, all tables together.
    pub rows: usize,
    /// Transactions among them.
    pub transactions: usize,
}

/// Reads into `state` every row stamped by a batch numbered after `after` and before
/// `before` (the other processes' batches since this one's last).
///
/// # Errors
/// [`LedgerError`] on a database failure or a row that does not fit the engine's types.
pub async fn refresh(
    conn: &mut Conn,
    state: &mut State,
    after: i64,
    before: i64,
) -> Result<Refreshed, LedgerError> {
    let mut out = Refreshed::default();
    refresh_balances(conn, state, after, before, &mut out).await?;
    refresh_transactions(conn, state, after, before, &mut out).await?;
    refresh_windows(conn, state, after, before, &mut out).await?;
    refresh_credits_and_loyalty(conn, state, after, before, &mut out).await?;
    Ok(out)
}

/// [`refresh`]: club balances, store-credit accounts and their lots.
async fn refresh_balances(
    conn: &mut Conn,
    state: &mut State,
    after: i64,
    before: i64,
    out: &mut Refreshed,
) -> Result<(), LedgerError> {
    for row in stamped(
        conn,
        "SELECT card_id, ledger_rials, held_rials FROM club_balances WHERE",
        after,
        before,
    )
    .await?
    {
        let account = ClubAccount {
            ledger: ledger::rials(&row, "ledger_rials", "club_balances")?,
            held: ledger::rials(&row, "held_rials", "club_balances")?,
        };
        state.load_club(CardId::new(row.try_get("card_id")?), account);
        out.rows += 1;
    }

    for row in stamped(
        conn,
        "SELECT card_id, merchant_id, ledger_rials, held_rials FROM store_credit_accounts WHERE",
        after,
        before,
    )
    .await?
    {
        let key = (
            CardId::new(row.try_get("card_id")?),
            MerchantId::new(row.try_get("merchant_id")?),
        );
        let ledger_rials = ledger::rials(&row, "ledger_rials", "store_credit_accounts")?;
        let held = ledger::rials(&row, "held_rials", "store_credit_accounts")?;
        state.load_store_account(key.0, key.1, ledger_rials, held);
        out.rows += 1;
    }

    for row in stamped(
        conn,
        "SELECT id, card_id, merchant_id, remaining_rials, expires_at_ms FROM store_credit_lots WHERE",
        after,
        before,
    )
    .await?
    {
        let key = (
            CardId::new(row.try_get("card_id")?),
            MerchantId::new(row.try_get("merchant_id")?),
        );
        let lot = Lot {
            id: LotId(row.try_get("id")?),
            remaining: ledger::rials(&row, "remaining_rials", "store_credit_lots")?,
            expires_at: row
                .try_get::<Option<i64>, _>("expires_at_ms")?
                .map(UnixMillis::new),
        };
        state.load_lot(key.0, key.1, lot);
        out.rows += 1;
    }
    Ok(())
}

/// [`refresh`]: transactions, with what their captures took from lots.
async fn refresh_transactions(
    conn: &mut Conn,
    state: &mut State,
    after: i64,
    before: i64,
    out: &mut Refreshed,
) -> Result<(), LedgerError> {
    let rows = sqlx::query(
        "SELECT t.*, c.club_rials AS captured_club, k.member_id AS card_member, \
         m.utc_offset_minutes AS merchant_utc_offset \
         FROM transactions t LEFT JOIN captures c ON c.txn_id = t.id \
         JOIN cards k ON k.id = t.card_id JOIN merchants m ON m.id = t.merchant_id WHERE t.change_seq > $1 AND t.change_seq < $2 ORDER BY t.id",
    )
    .bind(after)
    .bind(before)
    .fetch_all(&mut *conn)
    .await?;
    if !rows.is_empty() {
        let taken = sqlx::query(
            "SELECT l.txn_id, l.lot_id, l.taken_rials FROM capture_lots l \
             JOIN transactions t ON t.id = l.txn_id WHERE t.change_seq > $1 AND t.change_seq < $2 ORDER BY l.lot_id",
        )
        .bind(after)
        .bind(before)
        .fetch_all(&mut *conn)
        .await?;
        let mut lots_by_txn = ledger::lots_by_txn(&taken)?;
        let mut member_of: HashMap<i64, i64> = HashMap::new();
        for row in &rows {
            member_of.insert(row.try_get("card_id")?, row.try_get("card_member")?);
        }
        for row in &rows {
            let txn = ledger::txn_from_row(row, &mut lots_by_txn, &member_of)?;
            state.refresh_txn(txn);
            out.transactions += 1;
            out.rows += 1;
        }
    }
    Ok(())
}

/// [`refresh`]: answered messages and tombstones.
async fn refresh_windows(
    conn: &mut Conn,
    state: &mut State,
    after: i64,
    before: i64,
    out: &mut Refreshed,
) -> Result<(), LedgerError> {
    for row in stamped(
        conn,
        "SELECT ksi, mti, stan, transmitted, fingerprint, response, at_ms \
         FROM answered_messages WHERE",
        after,
        before,
    )
    .await?
    {
        let (key, fingerprint, answer, at) = ledger::answered_from_row(&row)?;
        state.remember_answer(key, fingerprint, answer, at);
        out.rows += 1;
    }

    for row in stamped(
        conn,
        "SELECT ksi, mti, stan, transmitted, at_ms FROM tombstones WHERE",
        after,
        before,
    )
    .await?
    {
        state.load_tombstone(
            ledger::key_from_row(&row)?,
            UnixMillis::new(row.try_get("at_ms")?),
        );
        out.rows += 1;
    }
    Ok(())
}

/// [`refresh`]: credits' keys, card replacements, coupons, referrals and earned tiers.
async fn refresh_credits_and_loyalty(
    conn: &mut Conn,
    state: &mut State,
    after: i64,
    before: i64,
    out: &mut Refreshed,
) -> Result<(), LedgerError> {
    for row in stamped(
        conn,
        "SELECT idempotency_key, card_id, merchant_id, amount_rials FROM balance_credits WHERE",
        after,
        before,
    )
    .await?
    {
        let (idempotency_key, key) = ledger::credit_from_row(&row)?;
        state.load_credit(idempotency_key, key);
        out.rows += 1;
    }

    for row in stamped(
        conn,
        "SELECT from_card_id, to_card_id FROM card_replacements WHERE",
        after,
        before,
    )
    .await?
    {
        let (from, to) = ledger::replacement_from_row(&row)?;
        state.load_replacement(from, to);
        out.rows += 1;
    }

    let coupons = format!("{} WHERE", ledger::COUPON_COLUMNS);
    for row in stamped(conn, &coupons, after, before).await? {
        let (coupon, key) = ledger::coupon_from_row(&row)?;
        state.add_coupon(coupon, key);
        out.rows += 1;
    }

    let referrals = format!("{} WHERE", ledger::REFERRAL_COLUMNS);
    for row in stamped(conn, &referrals, after, before).await? {
        let (referred, referral) = ledger::referral_from_row(&row)?;
        state.load_referral(referred, referral);
        out.rows += 1;
    }

    for row in stamped(
        conn,
        "SELECT member_id, tier_id FROM member_tiers WHERE",
        after,
        before,
    )
    .await?
    {
        let (member, tier) = ledger::earned_tier_from_row(&row)?;
        state.load_earned_tier(member, tier);
        out.rows += 1;
    }
    Ok(())
}

/// The rows of `select` (ending in `WHERE`) stamped by a batch after `after` and before
/// `before`.
async fn stamped(
    conn: &mut Conn,
    select: &str,
    after: i64,
    before: i64,
) -> Result<Vec<crate::store::DbRow>, LedgerError> {
    Ok(
        sqlx::query(&format!("{select} change_seq > $1 AND change_seq < $2"))
            .bind(after)
            .bind(before)
            .fetch_all(&mut *conn)
            .await?,
    )
}
