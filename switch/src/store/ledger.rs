//! Transactions, holds, captures, the idempotency window and tombstones: loading the engine's
//! state on start and applying a batch of effects in one database transaction (DESIGN.md
//! section 6).
//!
//! Every balance update is a conditional delta (`… WHERE ledger_rials - held_rials >= ?`), and
//! every state change names the state it leaves (`… WHERE state = 'pending'`): an update that
//! touches no row means the database and the engine disagree, and the whole batch is rolled
//! back rather than counting anything twice.

use std::collections::HashMap;

use bytes::Bytes;
use protocol::{Mti, ProcessingCode, Rrn, Stan};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::domain::{CardId, MemberId, MerchantId, Rials, RuleId, TerminalRowId, UnixMillis};
use crate::engine::effect::{Effect, NewLot, ReleaseReason};
use crate::engine::state::{
    Amounts, Answered, Capture, ClubAccount, Lot, LotId, MessageKey, State, StoreAccount, Txn,
    TxnId, TxnState,
};

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A conditional update touched no row: the database and the engine disagree.
    #[error("conditional update refused: {what} (txn {txn})")]
    Refused {
        /// Which update.
        what: &'static str,
        /// The transaction concerned.
        txn: i64,
    },
    /// A row holds a value the engine cannot represent.
    #[error("corrupt row in {table}: {field}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        field: &'static str,
    },
}

/// How far back answered messages are loaded (PROTOCOL.md section 7: at least 24 hours).
pub const ANSWERED_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Loads balances, transactions, the answered window and tombstones into an engine state.
///
/// # Errors
/// [`LedgerError`] on a database failure or a row that does not fit the engine's types.
pub async fn load(pool: &SqlitePool, now: UnixMillis) -> Result<State, LedgerError> {
    let mut state = State::default();
    let mut conn = pool.acquire().await?;
    let clubs = sqlx::query("SELECT card_id, ledger_rials, held_rials FROM club_balances")
        .fetch_all(&mut *conn)
        .await?;
    for row in clubs {
        let account = ClubAccount {
            ledger: rials(&row, "ledger_rials", "club_balances")?,
            held: rials(&row, "held_rials", "club_balances")?,
        };
        state
            .club
            .insert(CardId::new(row.try_get("card_id")?), account);
    }
    let stores = sqlx::query(
        "SELECT card_id, merchant_id, ledger_rials, held_rials FROM store_credit_accounts",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in stores {
        let key = (
            CardId::new(row.try_get("card_id")?),
            MerchantId::new(row.try_get("merchant_id")?),
        );
        let account = StoreAccount {
            ledger: rials(&row, "ledger_rials", "store_credit_accounts")?,
            held: rials(&row, "held_rials", "store_credit_accounts")?,
            lots: Vec::new(),
        };
        state.store.insert(key, account);
    }
    let lots = sqlx::query(
        "SELECT id, card_id, merchant_id, remaining_rials, expires_at_ms FROM store_credit_lots",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut lot_max = 0_i64;
    for row in lots {
        let id: i64 = row.try_get("id")?;
        lot_max = lot_max.max(id);
        let key = (
            CardId::new(row.try_get("card_id")?),
            MerchantId::new(row.try_get("merchant_id")?),
        );
        let lot = Lot {
            id: LotId(id),
            remaining: rials(&row, "remaining_rials", "store_credit_lots")?,
            expires_at: row
                .try_get::<Option<i64>, _>("expires_at_ms")?
                .map(UnixMillis::new),
        };
        if let Some(account) = state.store.get_mut(&key) {
            account.lots.push(lot);
        }
    }
    for account in state.store.values_mut() {
        account.sort_lots();
    }
    load_transactions(&mut conn, &mut state).await?;
    load_windows(&mut conn, &mut state, now).await?;
    state.next_lot = lot_max + 1;
    Ok(state)
}

async fn load_transactions(
    conn: &mut SqliteConnection,
    state: &mut State,
) -> Result<(), LedgerError> {
    // Every transaction is loaded: a late confirm or reversal of any of them must find it
    // (to answer `00`, or `12` once settled). At scale this wants a bound (README, notes).
    let rows = sqlx::query(
        "SELECT t.*, c.club_rials AS captured_club FROM transactions t \
         LEFT JOIN captures c ON c.txn_id = t.id ORDER BY t.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut lots_by_txn: HashMap<i64, Vec<(LotId, Rials)>> = HashMap::new();
    let taken = sqlx::query("SELECT txn_id, lot_id, taken_rials FROM capture_lots ORDER BY lot_id")
        .fetch_all(&mut *conn)
        .await?;
    for row in taken {
        lots_by_txn
            .entry(row.try_get("txn_id")?)
            .or_default()
            .push((
                LotId(row.try_get("lot_id")?),
                rials(&row, "taken_rials", "capture_lots")?,
            ));
    }
    let mut member_of: HashMap<i64, i64> = HashMap::new();
    for row in sqlx::query("SELECT id, member_id FROM cards")
        .fetch_all(&mut *conn)
        .await?
    {
        member_of.insert(row.try_get("id")?, row.try_get("member_id")?);
    }
    let mut txn_max = 0_i64;
    let mut rrn_max = 0_u64;
    for row in rows {
        let txn = txn_from_row(&row, &mut lots_by_txn, &member_of)?;
        txn_max = txn_max.max(txn.id.0);
        rrn_max = rrn_max.max(txn.rrn.as_str().parse::<u64>().unwrap_or(0));
        state.track(&txn);
    }
    state.next_txn = txn_max + 1;
    state.next_rrn = rrn_max + 1;
    Ok(())
}

fn txn_from_row(
    row: &SqliteRow,
    lots_by_txn: &mut HashMap<i64, Vec<(LotId, Rials)>>,
    member_of: &HashMap<i64, i64>,
) -> Result<Txn, LedgerError> {
    let table = "transactions";
    let corrupt = |field| LedgerError::Corrupt { table, field };
    let id: i64 = row.try_get("id")?;
    let code_text: String = row.try_get("processing_code")?;
    let code = ProcessingCode::parse(code_text.as_bytes()).ok_or(corrupt("processing_code"))?;
    let rrn_text: String = row.try_get("rrn")?;
    let rrn = Rrn::parse(rrn_text.as_bytes()).map_err(|_| corrupt("rrn"))?;
    let cycle: Option<i64> = row.try_get("cycle_id")?;
    let state_text: String = row.try_get("state")?;
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
    let card: i64 = row.try_get("card_id")?;
    let captured_club: Option<i64> = row.try_get("captured_club")?;
    let capture = Capture {
        club: captured_club.and_then(Rials::new).unwrap_or(Rials::ZERO),
        lots: lots_by_txn.remove(&id).unwrap_or_default(),
        cashback_lot: row.try_get::<Option<i64>, _>("cashback_lot_id")?.map(LotId),
    };
    let version: i64 = row.try_get("snapshot_version")?;
    Ok(Txn {
        id: TxnId(id),
        key: key_from_row(row)?,
        terminal: TerminalRowId::new(row.try_get("terminal_id")?),
        merchant: MerchantId::new(row.try_get("merchant_id")?),
        card: CardId::new(card),
        member: MemberId::new(member_of.get(&card).copied().unwrap_or(0)),
        code,
        amounts,
        rule: row.try_get::<Option<i64>, _>("rule_id")?.map(RuleId::new),
        snapshot_version: u64::try_from(version).map_err(|_| corrupt("snapshot_version"))?,
        rrn,
        state,
        created_at: UnixMillis::new(row.try_get("created_at_ms")?),
        hold_expires_at: UnixMillis::new(row.try_get("hold_expires_at_ms")?),
        capture,
    })
}

async fn load_windows(
    conn: &mut SqliteConnection,
    state: &mut State,
    now: UnixMillis,
) -> Result<(), LedgerError> {
    let rows = sqlx::query(
        "SELECT ksi, mti, stan, transmitted, fingerprint, response, at_ms \
         FROM answered_messages WHERE at_ms >= ?",
    )
    .bind(now.get() - ANSWERED_WINDOW_MS)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let key = key_from_row(&row)?;
        let fingerprint: Vec<u8> = row.try_get("fingerprint")?;
        let fingerprint: [u8; 32] = fingerprint.try_into().map_err(|_| LedgerError::Corrupt {
            table: "answered_messages",
            field: "fingerprint",
        })?;
        let response: Vec<u8> = row.try_get("response")?;
        let at = UnixMillis::new(row.try_get("at_ms")?);
        state.answered.insert(
            key,
            Answered {
                fingerprint,
                response: Bytes::from(response),
                at,
            },
        );
    }
    let tombstones = sqlx::query("SELECT ksi, mti, stan, transmitted, at_ms FROM tombstones")
        .fetch_all(&mut *conn)
        .await?;
    for row in tombstones {
        state
            .tombstones
            .insert(key_from_row(&row)?, UnixMillis::new(row.try_get("at_ms")?));
    }
    Ok(())
}

fn key_from_row(row: &SqliteRow) -> Result<MessageKey, LedgerError> {
    let corrupt = |field| LedgerError::Corrupt {
        table: "message key",
        field,
    };
    let ksi: String = row.try_get("ksi")?;
    let mti: String = row.try_get("mti")?;
    let stan: i64 = row.try_get("stan")?;
    let transmitted: String = row.try_get("transmitted")?;
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

fn rials(row: &SqliteRow, column: &'static str, table: &'static str) -> Result<Rials, LedgerError> {
    let value: i64 = row.try_get(column)?;
    Rials::new(value).ok_or(LedgerError::Corrupt {
        table,
        field: column,
    })
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// Applies a batch of effects in one database transaction: all or nothing.
///
/// # Errors
/// [`LedgerError`]; the transaction is rolled back and nothing is changed.
pub async fn apply(pool: &SqlitePool, effects: &[Effect]) -> Result<(), LedgerError> {
    let mut tx = pool.begin().await?;
    for effect in effects {
        apply_one(&mut tx, effect).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn apply_one(conn: &mut SqliteConnection, effect: &Effect) -> Result<(), LedgerError> {
    match effect {
        Effect::Hold { txn } => hold(conn, txn).await,
        Effect::Capture { .. } => capture(conn, effect).await,
        Effect::Release {
            txn,
            card,
            merchant,
            club,
            store_credit,
            reason,
            at,
        } => {
            release_held(conn, txn.0, *card, *merchant, *club, *store_credit).await?;
            let sql = match reason {
                ReleaseReason::Reversal => {
                    "UPDATE transactions SET state = 'reversed', reversed_at_ms = ? \
                     WHERE id = ? AND state = 'pending'"
                }
                ReleaseReason::Expiry => {
                    "UPDATE transactions SET state = 'expired', expired_at_ms = ? \
                     WHERE id = ? AND state = 'pending'"
                }
            };
            let done = sqlx::query(sql)
                .bind(at.get())
                .bind(txn.0)
                .execute(&mut *conn)
                .await?;
            refused(done.rows_affected(), "release state", txn.0)
        }
        Effect::Return { .. } => give_back(conn, effect).await,
        Effect::MarkReversed { txn, at } => {
            let done = sqlx::query(
                "UPDATE transactions SET state = 'reversed', reversed_at_ms = ? \
                 WHERE id = ? AND state = 'expired'",
            )
            .bind(at.get())
            .bind(txn.0)
            .execute(&mut *conn)
            .await?;
            refused(done.rows_affected(), "mark reversed", txn.0)
        }
        Effect::LateReversal { txn, club, at } => {
            exception(conn, "late_reversal", txn.0, "club", *club, *at).await
        }
        Effect::Tombstone { key, at } => {
            sqlx::query(
                "INSERT INTO tombstones (ksi, mti, stan, transmitted, at_ms) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(text(&key.ksi))
            .bind(key.mti.as_str())
            .bind(i64::from(key.stan.get()))
            .bind(text(&key.transmitted))
            .bind(at.get())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        Effect::Answer {
            key,
            fingerprint,
            response,
            at,
        } => {
            sqlx::query(
                "INSERT INTO answered_messages \
                 (ksi, mti, stan, transmitted, fingerprint, response, at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(text(&key.ksi))
            .bind(key.mti.as_str())
            .bind(i64::from(key.stan.get()))
            .bind(text(&key.transmitted))
            .bind(&fingerprint[..])
            .bind(&response[..])
            .bind(at.get())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    }
}

async fn hold(conn: &mut SqliteConnection, txn: &Txn) -> Result<(), LedgerError> {
    let a = &txn.amounts;
    sqlx::query(
        "INSERT INTO transactions (id, ksi, mti, stan, transmitted, terminal_id, merchant_id, \
         card_id, processing_code, gross_rials, discount_rials, fee_rials, store_credit_rials, \
         club_rials, bank_rest_rials, cashback_rials, rule_id, snapshot_version, rrn, state, \
         created_at_ms, hold_expires_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
    )
    .bind(txn.id.0)
    .bind(text(&txn.key.ksi))
    .bind(txn.key.mti.as_str())
    .bind(i64::from(txn.key.stan.get()))
    .bind(text(&txn.key.transmitted))
    .bind(txn.terminal.get())
    .bind(txn.merchant.get())
    .bind(txn.card.get())
    .bind(txn.code.as_str())
    .bind(a.gross.get())
    .bind(a.discount.get())
    .bind(a.fee.get())
    .bind(a.store_credit.get())
    .bind(a.club.get())
    .bind(a.bank_rest.get())
    .bind(a.cashback.get())
    .bind(txn.rule.map(RuleId::get))
    .bind(i64::try_from(txn.snapshot_version).unwrap_or(i64::MAX))
    .bind(txn.rrn.as_str())
    .bind(txn.created_at.get())
    .bind(txn.hold_expires_at.get())
    .execute(&mut *conn)
    .await?;
    if a.club > Rials::ZERO {
        let done = sqlx::query(
            "UPDATE club_balances SET held_rials = held_rials + ?1 \
             WHERE card_id = ?2 AND ledger_rials - held_rials >= ?1",
        )
        .bind(a.club.get())
        .bind(txn.card.get())
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "club hold", txn.id.0)?;
    }
    if a.store_credit > Rials::ZERO {
        let done = sqlx::query(
            "UPDATE store_credit_accounts SET held_rials = held_rials + ?1 \
             WHERE card_id = ?2 AND merchant_id = ?3 AND ledger_rials - held_rials >= ?1",
        )
        .bind(a.store_credit.get())
        .bind(txn.card.get())
        .bind(txn.merchant.get())
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "store credit hold", txn.id.0)?;
    }
    Ok(())
}

async fn capture(conn: &mut SqliteConnection, effect: &Effect) -> Result<(), LedgerError> {
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
    } = effect
    else {
        return Ok(());
    };
    release_held(conn, txn.0, *card, *merchant, *club_held, *store_held).await?;
    if *club > Rials::ZERO {
        let done = sqlx::query(
            "UPDATE club_balances SET ledger_rials = ledger_rials - ?1 \
             WHERE card_id = ?2 AND ledger_rials - held_rials >= ?1",
        )
        .bind(club.get())
        .bind(card.get())
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "club capture", txn.0)?;
        movement(conn, *card, None, -club.get(), "capture", txn.0, *at).await?;
    }
    let mut store_total = 0_i64;
    for (lot, amount) in lots {
        take_lot(
            conn,
            txn.0,
            (*card, *merchant),
            *lot,
            *amount,
            "capture",
            *at,
        )
        .await?;
        sqlx::query("INSERT INTO capture_lots (txn_id, lot_id, taken_rials) VALUES (?, ?, ?)")
            .bind(txn.0)
            .bind(lot.0)
            .bind(amount.get())
            .execute(&mut *conn)
            .await?;
        store_total += amount.get();
    }
    sqlx::query(
        "INSERT INTO captures (txn_id, at_ms, club_rials, store_credit_rials) VALUES (?, ?, ?, ?)",
    )
    .bind(txn.0)
    .bind(at.get())
    .bind(club.get())
    .bind(store_total)
    .execute(&mut *conn)
    .await?;
    for (account, shortfall) in shortfalls {
        exception(
            conn,
            "advice_shortfall",
            txn.0,
            account.as_str(),
            *shortfall,
            *at,
        )
        .await?;
    }
    if let Some(lot) = cashback {
        issue_lot(conn, txn.0, lot, *at).await?;
    }
    let done = sqlx::query(
        "UPDATE transactions SET state = 'confirmed', confirmed_at_ms = ?, cashback_lot_id = ? \
         WHERE id = ? AND state IN ('pending', 'expired')",
    )
    .bind(at.get())
    .bind(cashback.map(|lot| lot.id.0))
    .bind(txn.0)
    .execute(&mut *conn)
    .await?;
    refused(done.rows_affected(), "confirm state", txn.0)
}

async fn issue_lot(
    conn: &mut SqliteConnection,
    txn: i64,
    lot: &NewLot,
    at: UnixMillis,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO store_credit_accounts (card_id, merchant_id, ledger_rials, held_rials) \
         VALUES (?, ?, 0, 0) ON CONFLICT (card_id, merchant_id) DO NOTHING",
    )
    .bind(lot.card.get())
    .bind(lot.merchant.get())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO store_credit_lots (id, card_id, merchant_id, remaining_rials, \
         original_rials, expires_at_ms, source, txn_id) VALUES (?, ?, ?, ?, ?, ?, 'cashback', ?)",
    )
    .bind(lot.id.0)
    .bind(lot.card.get())
    .bind(lot.merchant.get())
    .bind(lot.amount.get())
    .bind(lot.amount.get())
    .bind(lot.expires_at.map(UnixMillis::get))
    .bind(txn)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE store_credit_accounts SET ledger_rials = ledger_rials + ? \
         WHERE card_id = ? AND merchant_id = ?",
    )
    .bind(lot.amount.get())
    .bind(lot.card.get())
    .bind(lot.merchant.get())
    .execute(&mut *conn)
    .await?;
    store_movement(
        conn,
        (lot.card, lot.merchant),
        lot.amount.get(),
        "cashback",
        txn,
        at,
    )
    .await
}

async fn give_back(conn: &mut SqliteConnection, effect: &Effect) -> Result<(), LedgerError> {
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
        return Ok(());
    };
    if *club > Rials::ZERO {
        let done = sqlx::query(
            "UPDATE club_balances SET ledger_rials = ledger_rials + ? WHERE card_id = ?",
        )
        .bind(club.get())
        .bind(card.get())
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "club return", txn.0)?;
        movement(conn, *card, None, club.get(), "return", txn.0, *at).await?;
    }
    for (lot, amount) in lots {
        let done = sqlx::query(
            "UPDATE store_credit_lots SET remaining_rials = remaining_rials + ? WHERE id = ?",
        )
        .bind(amount.get())
        .bind(lot.0)
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "lot return", txn.0)?;
        sqlx::query(
            "UPDATE store_credit_accounts SET ledger_rials = ledger_rials + ? \
             WHERE card_id = ? AND merchant_id = ?",
        )
        .bind(amount.get())
        .bind(card.get())
        .bind(merchant.get())
        .execute(&mut *conn)
        .await?;
        store_movement(conn, (*card, *merchant), amount.get(), "return", txn.0, *at).await?;
    }
    if let Some((lot, amount)) = clawback.filter(|(_, amount)| *amount > Rials::ZERO) {
        take_lot(
            conn,
            txn.0,
            (*card, *merchant),
            lot,
            amount,
            "cashback_clawback",
            *at,
        )
        .await?;
    }
    if *clawback_shortfall > Rials::ZERO {
        let kind = "cashback_clawback_shortfall";
        exception(conn, kind, txn.0, "store_credit", *clawback_shortfall, *at).await?;
    }
    sqlx::query("UPDATE captures SET returned_at_ms = ? WHERE txn_id = ?")
        .bind(at.get())
        .bind(txn.0)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query(
        "UPDATE transactions SET state = 'reversed', reversed_at_ms = ? \
         WHERE id = ? AND state = 'confirmed' AND cycle_id IS NULL",
    )
    .bind(at.get())
    .bind(txn.0)
    .execute(&mut *conn)
    .await?;
    refused(done.rows_affected(), "return state", txn.0)
}

async fn release_held(
    conn: &mut SqliteConnection,
    txn: i64,
    card: CardId,
    merchant: MerchantId,
    club: Rials,
    store_credit: Rials,
) -> Result<(), LedgerError> {
    if club > Rials::ZERO {
        let done = sqlx::query(
            "UPDATE club_balances SET held_rials = held_rials - ?1 \
             WHERE card_id = ?2 AND held_rials >= ?1",
        )
        .bind(club.get())
        .bind(card.get())
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "club release", txn)?;
    }
    if store_credit > Rials::ZERO {
        let done = sqlx::query(
            "UPDATE store_credit_accounts SET held_rials = held_rials - ?1 \
             WHERE card_id = ?2 AND merchant_id = ?3 AND held_rials >= ?1",
        )
        .bind(store_credit.get())
        .bind(card.get())
        .bind(merchant.get())
        .execute(&mut *conn)
        .await?;
        refused(done.rows_affected(), "store credit release", txn)?;
    }
    Ok(())
}

async fn take_lot(
    conn: &mut SqliteConnection,
    txn: i64,
    (card, merchant): (CardId, MerchantId),
    lot: LotId,
    amount: Rials,
    kind: &'static str,
    at: UnixMillis,
) -> Result<(), LedgerError> {
    let done = sqlx::query(
        "UPDATE store_credit_lots SET remaining_rials = remaining_rials - ?1 \
         WHERE id = ?2 AND remaining_rials >= ?1",
    )
    .bind(amount.get())
    .bind(lot.0)
    .execute(&mut *conn)
    .await?;
    refused(done.rows_affected(), "lot take", txn)?;
    let done = sqlx::query(
        "UPDATE store_credit_accounts SET ledger_rials = ledger_rials - ?1 \
         WHERE card_id = ?2 AND merchant_id = ?3 AND ledger_rials - held_rials >= ?1",
    )
    .bind(amount.get())
    .bind(card.get())
    .bind(merchant.get())
    .execute(&mut *conn)
    .await?;
    refused(done.rows_affected(), "store credit take", txn)?;
    store_movement(conn, (card, merchant), -amount.get(), kind, txn, at).await
}

async fn movement(
    conn: &mut SqliteConnection,
    card: CardId,
    merchant: Option<MerchantId>,
    delta: i64,
    kind: &'static str,
    txn: i64,
    at: UnixMillis,
) -> Result<(), LedgerError> {
    let account = if merchant.is_some() {
        "store_credit"
    } else {
        "club"
    };
    sqlx::query(
        "INSERT INTO balance_movements (card_id, merchant_id, account, delta_rials, kind, txn_id, \
         at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(card.get())
    .bind(merchant.map(MerchantId::get))
    .bind(account)
    .bind(delta)
    .bind(kind)
    .bind(txn)
    .bind(at.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn store_movement(
    conn: &mut SqliteConnection,
    (card, merchant): (CardId, MerchantId),
    delta: i64,
    kind: &'static str,
    txn: i64,
    at: UnixMillis,
) -> Result<(), LedgerError> {
    movement(conn, card, Some(merchant), delta, kind, txn, at).await
}

async fn exception(
    conn: &mut SqliteConnection,
    kind: &'static str,
    txn: i64,
    account: &'static str,
    shortfall: Rials,
    at: UnixMillis,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO exceptions (kind, txn_id, account, amount_rials, at_ms) \
         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(kind)
    .bind(txn)
    .bind(account)
    .bind(shortfall.get())
    .bind(at.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn refused(rows: u64, what: &'static str, txn: i64) -> Result<(), LedgerError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(LedgerError::Refused { what, txn })
    }
}
