//! Transactions, holds, captures, the idempotency window and tombstones: loading the engine's
//! state on start and applying a batch of effects in one database transaction (docs/design.md
//! section 6).
//!
//! Every balance update is a conditional delta (`… WHERE ledger_rials - held_rials >= ?`), and
//! every state change names the state it leaves (`… WHERE state = 'pending'`): an update that
//! touches no row means the database and the engine disagree, and the whole batch is rolled
//! back rather than counting anything twice.

use std::collections::HashMap;

use crate::store::direct::Direct;
use crate::store::packed::{self, Packing};
use crate::store::{Conn, DbRow, Pool};
use futures_util::TryStreamExt;
use protocol::{Mti, ProcessingCode, Rrn, Stan};
use sqlx::Row;

use crate::domain::{
    CardId, CouponId, CouponKind, CouponTerms, MemberId, MerchantId, Percent, Rials, RuleId,
    RuleKind, TerminalRowId, TierId, UnixMillis,
};
use crate::engine::answer::AnswerFields;
use crate::engine::coupon::{Coupon, CouponState};
use crate::engine::effect::Effect;
use crate::engine::referral::Referral;
use crate::engine::state::{
    Amounts, Capture, ClubAccount, Lot, LotId, MessageKey, State, Txn, TxnId, TxnState,
};
use crate::engine::Fingerprint;
use crate::store::batch::Plan;

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// An update touched another number of rows than it named: the database and the engine
    /// disagree, and the batch is rolled back.
    #[error("{what}: {rows} rows changed, {wanted} expected")]
    RowCount {
        /// Which update.
        what: &'static str,
        /// Rows it named.
        wanted: u64,
        /// Rows it changed.
        rows: u64,
    },
    /// A table read in packed chunks failed.
    #[error("{0}")]
    Packed(#[from] crate::store::packed::PackedError),
    /// A row holds a value the engine cannot represent.
    #[error("corrupt row in {table}: {field}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        field: &'static str,
    },
}

/// How far back answered messages are loaded (docs/protocol.md section 7: at least 24 hours).
pub const ANSWERED_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Loads balances, transactions, the answered window and tombstones into an engine state.
///
/// # Errors
/// [`LedgerError`] on a database failure or a row that does not fit the engine's types.
pub async fn load(pool: &Pool, now: UnixMillis) -> Result<State, LedgerError> {
    let mut state = State::default();
    let mut conn = pool.acquire().await?;
    // First: whatever another process writes from here on is read back by the next batch.
    state.batch_seq = crate::store::shared::current_seq(&mut conn).await?;
    // The large tables are read straight from a SQLite file, packed otherwise; directly only
    // from a connection that sees the batch sequence this one saw.
    let direct = match Direct::open(&mut conn).await? {
        Some(direct) => {
            let seq = direct.integer("SELECT seq FROM batch_sequence WHERE id = 1")?;
            (seq == Some(state.batch_seq)).then_some(direct)
        }
        None => None,
    };
    let direct = direct.as_ref();
    load_balances(&mut conn, direct, &mut state).await?;
    load_transactions(&mut conn, direct, &mut state).await?;
    state.settled_cycle =
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(cycle_id) FROM transactions")
            .fetch_one(&mut *conn)
            .await?
            .unwrap_or(0);
    state.fence_ms =
        sqlx::query_scalar::<_, i64>("SELECT fence_asked_ms FROM journal_progress WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0);
    load_windows(&mut conn, direct, &mut state, now).await?;
    load_credits_and_loyalty(&mut conn, &mut state).await?;
    state.finish_loading();
    Ok(state)
}

/// Club balances, store-credit accounts and their lots, into `state`.
async fn load_balances(
    conn: &mut Conn,
    direct: Option<&Direct>,
    state: &mut State,
) -> Result<(), LedgerError> {
    // The large tables are read packed, a chunk at a time (docs/benchmarks.md, "Restart").
    let club = Packing {
        table: "club_balances",
        columns: &["card_id", "ledger_rials", "held_rials"],
        from: "FROM club_balances WHERE 1 = 1",
        key: "card_id",
        ordered: false,
    };
    let stores = Packing {
        table: "store_credit_accounts",
        columns: &["card_id", "merchant_id", "ledger_rials", "held_rials"],
        from: "FROM store_credit_accounts WHERE 1 = 1",
        key: "card_id",
        ordered: false,
    };
    state.reserve_accounts(
        packed::rows_at_most(&mut *conn, &club).await?,
        packed::rows_at_most(&mut *conn, &stores).await?,
    );
    packed::read(&mut *conn, &club, true, direct, sqlx::query, |row| {
        let (card, ledger, held): (i64, i64, i64) = row.parse()?;
        let account = ClubAccount {
            ledger: amount(ledger, "ledger_rials", club.table)?,
            held: amount(held, "held_rials", club.table)?,
        };
        state.load_club(CardId::new(card), account);
        Ok::<(), LedgerError>(())
    })
    .await?;
    packed::read(&mut *conn, &stores, true, direct, sqlx::query, |row| {
        let (card, merchant, ledger, held): (i64, i64, i64, i64) = row.parse()?;
        state.load_store_account(
            CardId::new(card),
            MerchantId::new(merchant),
            amount(ledger, "ledger_rials", stores.table)?,
            amount(held, "held_rials", stores.table)?,
        );
        Ok::<(), LedgerError>(())
    })
    .await?;
    let lots = Packing {
        table: "store_credit_lots",
        columns: &[
            "id",
            "card_id",
            "merchant_id",
            "remaining_rials",
            "expires_at_ms",
        ],
        from: "FROM store_credit_lots WHERE 1 = 1",
        key: "id",
        ordered: false,
    };
    packed::read(&mut *conn, &lots, true, direct, sqlx::query, |row| {
        let (id, card, merchant, remaining, expires_at): (i64, i64, i64, i64, Option<i64>) =
            row.parse()?;
        let lot = Lot {
            id: LotId(id),
            remaining: amount(remaining, "remaining_rials", lots.table)?,
            expires_at: expires_at.map(UnixMillis::new),
        };
        // A lot without its account (never the case: a foreign key) is not loaded.
        state.load_lot(CardId::new(card), MerchantId::new(merchant), lot);
        Ok::<(), LedgerError>(())
    })
    .await
}

/// Operator credits' idempotency keys, card replacements, coupons, referrals and earned tiers.
async fn load_credits_and_loyalty(conn: &mut Conn, state: &mut State) -> Result<(), LedgerError> {
    for row in sqlx::query(
        "SELECT idempotency_key, card_id, merchant_id, amount_rials FROM balance_credits",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let (idempotency_key, key) = credit_from_row(&row)?;
        state.load_credit(idempotency_key, key);
    }
    for row in sqlx::query("SELECT from_card_id, to_card_id FROM card_replacements")
        .fetch_all(&mut *conn)
        .await?
    {
        let (from, to) = replacement_from_row(&row)?;
        state.load_replacement(from, to);
    }
    for row in sqlx::query(COUPON_COLUMNS).fetch_all(&mut *conn).await? {
        let (coupon, key) = coupon_from_row(&row)?;
        state.add_coupon(coupon, key);
    }
    for row in sqlx::query(REFERRAL_COLUMNS).fetch_all(&mut *conn).await? {
        let (referred, referral) = referral_from_row(&row)?;
        state.load_referral(referred, referral);
    }
    for row in sqlx::query("SELECT member_id, tier_id FROM member_tiers")
        .fetch_all(&mut *conn)
        .await?
    {
        let (member, tier) = earned_tier_from_row(&row)?;
        state.load_earned_tier(member, tier);
    }
    Ok(())
}

/// A `balance_credits` row: its idempotency key and what it credited.
pub(crate) fn credit_from_row(
    row: &DbRow,
) -> Result<(String, crate::engine::credit::CreditKey), LedgerError> {
    let key = crate::engine::credit::CreditKey {
        card: CardId::new(row.try_get("card_id")?),
        merchant: row
            .try_get::<Option<i64>, _>("merchant_id")?
            .map(MerchantId::new),
        amount: rials(row, "amount_rials", "balance_credits")?,
    };
    Ok((row.try_get("idempotency_key")?, key))
}

/// A `card_replacements` row: the card replaced and the card that replaced it.
pub(crate) fn replacement_from_row(row: &DbRow) -> Result<(CardId, CardId), LedgerError> {
    Ok((
        CardId::new(row.try_get("from_card_id")?),
        CardId::new(row.try_get("to_card_id")?),
    ))
}

/// The coupon columns the engine keeps, ending in `FROM coupons` (a caller may add a `WHERE`).
pub(crate) const COUPON_COLUMNS: &str = "SELECT id, idempotency_key, member_id, kind, percent, \
     fixed_rials, basket_rials_min, discount_rials_max, merchant_id, expires_at_ms, state, txn_id \
     FROM coupons";

/// A `coupons` row as the engine keeps it, with its idempotency key.
pub(crate) fn coupon_from_row(row: &DbRow) -> Result<(Coupon, String), LedgerError> {
    let table = "coupons";
    let corrupt = |field| LedgerError::Corrupt { table, field };
    let kind_text: String = row.try_get("kind")?;
    let kind = CouponKind::parse(&kind_text).ok_or(corrupt("kind"))?;
    let percent: Option<String> = row.try_get("percent")?;
    let fixed: Option<i64> = row.try_get("fixed_rials")?;
    let discount = match (percent, fixed) {
        (Some(rate), None) => {
            RuleKind::Percent(Percent::parse(&rate).map_err(|_| corrupt("percent"))?)
        }
        (None, Some(_)) => RuleKind::Fixed(rials(row, "fixed_rials", table)?),
        _ => return Err(corrupt("percent")),
    };
    let cap: Option<i64> = row.try_get("discount_rials_max")?;
    let terms = CouponTerms {
        kind: discount,
        basket_rials_min: rials(row, "basket_rials_min", table)?,
        discount_rials_max: match cap {
            Some(_) => Some(rials(row, "discount_rials_max", table)?),
            None => None,
        },
        merchant: row
            .try_get::<Option<i64>, _>("merchant_id")?
            .map(MerchantId::new),
        expires_at: UnixMillis::new(row.try_get("expires_at_ms")?),
    };
    let state_text: String = row.try_get("state")?;
    let txn = row.try_get::<Option<i64>, _>("txn_id")?.map(TxnId);
    let state = match (state_text.as_str(), txn) {
        ("available", None) => CouponState::Available,
        ("held", Some(txn)) => CouponState::Held(txn),
        ("used", Some(txn)) => CouponState::Used(txn),
        ("withdrawn", None) => CouponState::Withdrawn,
        _ => return Err(corrupt("state")),
    };
    let coupon = Coupon {
        id: CouponId::new(row.try_get("id")?),
        member: MemberId::new(row.try_get("member_id")?),
        kind,
        terms,
        state,
    };
    Ok((coupon, row.try_get("idempotency_key")?))
}

/// The referral columns the engine keeps, ending in `FROM referral_rewards`.
pub(crate) const REFERRAL_COLUMNS: &str = "SELECT referred_member_id, referrer_member_id, txn_id, \
     referred_coupon_id, referrer_coupon_id, reversed_at_ms FROM referral_rewards";

/// A `referral_rewards` row: the referred member and the reward.
pub(crate) fn referral_from_row(row: &DbRow) -> Result<(MemberId, Referral), LedgerError> {
    let reversed: Option<i64> = row.try_get("reversed_at_ms")?;
    let referral = Referral {
        txn: TxnId(row.try_get("txn_id")?),
        referrer: MemberId::new(row.try_get("referrer_member_id")?),
        coupons: [
            CouponId::new(row.try_get("referred_coupon_id")?),
            CouponId::new(row.try_get("referrer_coupon_id")?),
        ],
        reversed: reversed.is_some(),
    };
    Ok((MemberId::new(row.try_get("referred_member_id")?), referral))
}

/// A `member_tiers` row: the member and the tier their activity earned.
pub(crate) fn earned_tier_from_row(row: &DbRow) -> Result<(MemberId, Option<TierId>), LedgerError> {
    Ok((
        MemberId::new(row.try_get("member_id")?),
        row.try_get::<Option<i64>, _>("tier_id")?.map(TierId::new),
    ))
}

async fn load_transactions(
    conn: &mut Conn,
    direct: Option<&Direct>,
    state: &mut State,
) -> Result<(), LedgerError> {
    // Every transaction is loaded: a late confirm or reversal of any of them must find it
    // (to answer `00`, or `12` once settled). At scale this wants a bound (README, notes).
    let taken = sqlx::query("SELECT txn_id, lot_id, taken_rials FROM capture_lots ORDER BY lot_id")
        .fetch_all(&mut *conn)
        .await?;
    let lots_by_txn = lots_by_txn(&taken)?;
    // The card's member comes by a join: reading the whole card table for it would cost a
    // million rows at a million cards, where the transactions are far fewer.
    let sql = "SELECT t.*, c.club_rials AS captured_club, k.member_id AS card_member, \
         m.utc_offset_minutes AS merchant_utc_offset \
         FROM transactions t LEFT JOIN captures c ON c.txn_id = t.id \
         LEFT JOIN cards k ON k.id = t.card_id \
         JOIN merchants m ON m.id = t.merchant_id ORDER BY t.id";
    let mut load = TxnLoad {
        state,
        lots_by_txn,
        member_of: HashMap::new(),
    };
    each_row(conn, direct, sql, &mut load).await
}

/// The capture lots of `rows` (`txn_id`, `lot_id`, `taken_rials`, in lot order) by transaction.
pub(crate) fn lots_by_txn(
    rows: &[DbRow],
) -> Result<HashMap<i64, Vec<(LotId, Rials)>>, LedgerError> {
    let mut lots: HashMap<i64, Vec<(LotId, Rials)>> = HashMap::new();
    for row in rows {
        lots.entry(row.try_get("txn_id")?).or_default().push((
            LotId(row.try_get("lot_id")?),
            rials(row, "taken_rials", "capture_lots")?,
        ));
    }
    Ok(lots)
}

/// What takes the rows of [`each_row`], one at a time, from either driver.
trait RowSink {
    fn take(&mut self, row: &impl Columns) -> Result<(), LedgerError>;
}

/// Gives every row `sql` selects to `sink`: stepped on the `direct` connection when there is
/// one, through the driver otherwise. `sql` binds no parameter.
async fn each_row(
    conn: &mut Conn,
    direct: Option<&Direct>,
    sql: &str,
    sink: &mut impl RowSink,
) -> Result<(), LedgerError> {
    match direct {
        Some(direct) => direct.each(sql, |row| sink.take(row)),
        None => {
            let mut rows = sqlx::query(sql).fetch(&mut *conn);
            while let Some(row) = rows.try_next().await? {
                sink.take(&row)?;
            }
            Ok(())
        }
    }
}

/// Transactions into a loading state, with what [`load_transactions`] keeps between rows.
struct TxnLoad<'s> {
    state: &'s mut State,
    lots_by_txn: HashMap<i64, Vec<(LotId, Rials)>>,
    member_of: HashMap<i64, i64>,
}

impl RowSink for TxnLoad<'_> {
    fn take(&mut self, row: &impl Columns) -> Result<(), LedgerError> {
        if let Some(member) = row.column::<Option<i64>>("card_member")? {
            self.member_of.insert(row.column("card_id")?, member);
        }
        let txn = txn_from_row(row, &mut self.lots_by_txn, &self.member_of)?;
        self.state.load_txn(txn);
        Ok(())
    }
}

/// Answered messages into a loading state.
struct AnswerLoad<'s>(&'s mut State);

impl RowSink for AnswerLoad<'_> {
    fn take(&mut self, row: &impl Columns) -> Result<(), LedgerError> {
        let (key, fingerprint, answer, at) = answered_from_row(row)?;
        self.0.remember_answer(key, fingerprint, answer, at);
        Ok(())
    }
}

pub(crate) fn txn_from_row(
    row: &impl Columns,
    lots_by_txn: &mut HashMap<i64, Vec<(LotId, Rials)>>,
    member_of: &HashMap<i64, i64>,
) -> Result<Txn, LedgerError> {
    let table = "transactions";
    let corrupt = |field| LedgerError::Corrupt { table, field };
    let id: i64 = row.column("id")?;
    let code_text: String = row.column("processing_code")?;
    let code = ProcessingCode::parse(code_text.as_bytes()).ok_or(corrupt("processing_code"))?;
    let rrn_text: String = row.column("rrn")?;
    let rrn = Rrn::parse(rrn_text.as_bytes()).map_err(|_| corrupt("rrn"))?;
    let cycle: Option<i64> = row.column("cycle_id")?;
    let state_text: String = row.column("state")?;
    let state = match (state_text.as_str(), cycle) {
        ("pending", _) => TxnState::Pending,
        ("confirmed", Some(_)) => TxnState::Settled,
        ("confirmed", None) => TxnState::Confirmed,
        ("reversed", _) => TxnState::Reversed,
        ("expired", _) => TxnState::Expired,
        _ => return Err(corrupt("state")),
    };
    let amounts = Amounts {
        gross: rials(row, "gross_rials", table)?,
        discount: rials(row, "discount_rials", table)?,
        fee: rials(row, "fee_rials", table)?,
        store_credit: rials(row, "store_credit_rials", table)?,
        club: rials(row, "club_rials", table)?,
        bank_rest: rials(row, "bank_rest_rials", table)?,
        cashback: rials(row, "cashback_rials", table)?,
    };
    let card: i64 = row.column("card_id")?;
    // No `captures` row: not captured (yet), nothing taken from the club.
    let captured_club = match row.column::<Option<i64>>("captured_club")? {
        Some(club) => amount(club, "club_rials", "captures")?,
        None => Rials::ZERO,
    };
    let capture = Capture {
        club: captured_club,
        lots: lots_by_txn.remove(&id).unwrap_or_default(),
        cashback_lot: row.column::<Option<i64>>("cashback_lot_id")?.map(LotId),
        at: UnixMillis::new(row.column::<Option<i64>>("confirmed_at_ms")?.unwrap_or(0)),
    };
    let version: i64 = row.column("snapshot_version")?;
    Ok(Txn {
        id: TxnId(id),
        key: key_from_row(row)?,
        terminal: TerminalRowId::new(row.column("terminal_id")?),
        merchant: MerchantId::new(row.column("merchant_id")?),
        card: CardId::new(card),
        member: MemberId::new(member_of.get(&card).copied().unwrap_or(0)),
        code,
        amounts,
        rule: row.column::<Option<i64>>("rule_id")?.map(RuleId::new),
        coupon: match row.column::<Option<i64>>("coupon_id")? {
            // The coupon's part of the discount is at most the discount (`Txn::rule_discount`
            // relies on it).
            Some(coupon) => match rials(row, "coupon_rials", table)? {
                part if part <= amounts.discount => Some((CouponId::new(coupon), part)),
                _ => return Err(corrupt("coupon_rials")),
            },
            None => None,
        },
        snapshot_version: u64::try_from(version).map_err(|_| corrupt("snapshot_version"))?,
        rrn,
        state,
        created_at: UnixMillis::new(row.column("created_at_ms")?),
        hold_expires_at: UnixMillis::new(row.column("hold_expires_at_ms")?),
        local_day: {
            let offset: i64 = row.column("merchant_utc_offset")?;
            let offset = i32::try_from(offset).map_err(|_| corrupt("merchant_utc_offset"))?;
            crate::domain::LocalDateTime::at(UnixMillis::new(row.column("created_at_ms")?), offset)
                .date
                .days_since_epoch()
        },
        capture,
    })
}

async fn load_windows(
    conn: &mut Conn,
    direct: Option<&Direct>,
    state: &mut State,
    now: UnixMillis,
) -> Result<(), LedgerError> {
    let since = now.get() - ANSWERED_WINDOW_MS;
    let sql = format!(
        "SELECT ksi, mti, stan, transmitted, fingerprint, response, at_ms \
         FROM answered_messages WHERE at_ms >= {since}"
    );
    each_row(conn, direct, &sql, &mut AnswerLoad(state)).await?;
    let tombstones = sqlx::query("SELECT ksi, mti, stan, transmitted, at_ms FROM tombstones")
        .fetch_all(&mut *conn)
        .await?;
    for row in tombstones {
        state.load_tombstone(key_from_row(&row)?, UnixMillis::new(row.try_get("at_ms")?));
    }
    Ok(())
}

/// An `answered_messages` row: its key, fingerprint, answer and time.
pub(crate) fn answered_from_row(
    row: &impl Columns,
) -> Result<(MessageKey, Fingerprint, AnswerFields, UnixMillis), LedgerError> {
    let key = key_from_row(row)?;
    let fingerprint: Vec<u8> = row.column("fingerprint")?;
    let fingerprint: [u8; 32] = fingerprint.try_into().map_err(|_| LedgerError::Corrupt {
        table: "answered_messages",
        field: "fingerprint",
    })?;
    let response: Vec<u8> = row.column("response")?;
    let answer = AnswerFields::from_record(&response).map_err(|_| LedgerError::Corrupt {
        table: "answered_messages",
        field: "response",
    })?;
    let at = UnixMillis::new(row.column("at_ms")?);
    Ok((key, fingerprint, answer, at))
}

pub(crate) fn key_from_row(row: &impl Columns) -> Result<MessageKey, LedgerError> {
    let corrupt = |field| LedgerError::Corrupt {
        table: "message key",
        field,
    };
    let ksi: String = row.column("ksi")?;
    let mti: String = row.column("mti")?;
    let stan: i64 = row.column("stan")?;
    let transmitted: String = row.column("transmitted")?;
    Ok(MessageKey {
        ksi: ksi.as_bytes().try_into().map_err(|_| corrupt("ksi"))?,
        mti: Mti::parse(mti.as_bytes()).ok_or(corrupt("mti"))?,
        stan: u32::try_from(stan)
            .ok()
            .and_then(|s| Stan::new(s).ok())
            .ok_or(corrupt("stan"))?,
        transmitted: transmitted
            .as_bytes()
            .try_into()
            .map_err(|_| corrupt("transmitted"))?,
    })
}

pub(crate) fn rials(
    row: &impl Columns,
    column: &'static str,
    table: &'static str,
) -> Result<Rials, LedgerError> {
    amount(row.column(column)?, column, table)
}

/// The columns of a row, by name: a row of the driver's, or of a direct read
/// (`store::direct`), so one function reads a table's row either way.
pub(crate) trait Columns {
    /// The value of column `name`.
    fn column<T: ColumnValue>(&self, name: &str) -> Result<T, LedgerError>;
}

/// A value both drivers decode (integers, text, blobs, and their `Option`s).
pub(crate) trait ColumnValue:
    for<'r> sqlx::Decode<'r, crate::store::Db> + sqlx::Type<crate::store::Db> + rusqlite::types::FromSql
{
}

impl<T> ColumnValue for T where
    T: for<'r> sqlx::Decode<'r, crate::store::Db>
        + sqlx::Type<crate::store::Db>
        + rusqlite::types::FromSql
{
}

impl Columns for DbRow {
    fn column<T: ColumnValue>(&self, name: &str) -> Result<T, LedgerError> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn column<T: ColumnValue>(&self, name: &str) -> Result<T, LedgerError> {
        self.get(name)
            .map_err(|error| LedgerError::Packed(crate::store::packed::PackedError::Direct(error)))
    }
}

/// `value` of `column` in `table` as rials, or the row is corrupt.
fn amount(value: i64, column: &'static str, table: &'static str) -> Result<Rials, LedgerError> {
    Rials::new(value).ok_or(LedgerError::Corrupt {
        table,
        field: column,
    })
}

/// Transactions put in a settlement cycle newer than `cycle`, with the newest cycle seen.
///
/// # Errors
/// [`LedgerError::Database`].
pub async fn settled_since(pool: &Pool, cycle: i64) -> Result<(Vec<TxnId>, i64), LedgerError> {
    let rows = sqlx::query("SELECT id, cycle_id FROM transactions WHERE cycle_id > $1")
        .bind(cycle)
        .fetch_all(pool)
        .await?;
    let mut newest = cycle;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(TxnId(row.try_get("id")?));
        newest = newest.max(row.try_get::<i64, _>("cycle_id")?);
    }
    Ok((ids, newest))
}

/// Applies a batch of effects in one database transaction: all or nothing. The effects are
/// folded into set-based statements first ([`crate::store::batch::Plan`]).
///
/// # Errors
/// [`LedgerError`]; the transaction is rolled back and nothing is changed.
pub async fn apply(pool: &Pool, effects: &[Effect]) -> Result<(), LedgerError> {
    let plan = Plan::fold(effects);
    let _turn = crate::store::write_turn(pool).await;
    let mut tx = pool.begin().await?;
    plan.write(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}
