//! The database as a projection of the journal (docs/design.md, "The journal"): a batch of
//! journal records is written in one transaction together with the last record's sequence
//! number, so every record is projected exactly once across crashes, and readers learn how
//! fresh the projection is from `journal_progress`.

use sqlx::Row;

use crate::engine::effect::Effect;
use crate::store::batch::Plan;
use crate::store::ledger::LedgerError;
use crate::store::Pool;

/// What `journal_progress` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The last journal record projected.
    pub applied_seq: u64,
    /// Every decision made before this time (Unix ms) is in the database.
    pub projected_before_ms: i64,
    /// A journal-mode switch is serving (false after a clean stop).
    pub running: bool,
    /// Settlement asked the switch to refuse reversals of transactions confirmed before this.
    pub fence_asked_ms: i64,
    /// The switch holds the fence and everything decided before it is projected.
    pub fence_held_ms: i64,
}

/// Reads the projection's progress.
///
/// # Errors
/// [`LedgerError`] when the database fails.
pub async fn progress(pool: &Pool) -> Result<Progress, LedgerError> {
    let row = sqlx::query(
        "SELECT applied_seq, projected_before_ms, running, fence_asked_ms, fence_held_ms \
         FROM journal_progress WHERE id = 1",
    )
    .fetch_one(pool)
    .await?;
    let applied: i64 = row.try_get("applied_seq")?;
    Ok(Progress {
        applied_seq: u64::try_from(applied).map_err(|_| LedgerError::Corrupt {
            table: "journal_progress",
            field: "applied_seq",
        })?,
        projected_before_ms: row.try_get("projected_before_ms")?,
        running: row.try_get::<i64, _>("running")? != 0,
        fence_asked_ms: row.try_get("fence_asked_ms")?,
        fence_held_ms: row.try_get("fence_held_ms")?,
    })
}

/// Writes the effects of journal records up to `through` in one transaction, with `through`
/// as the applied sequence number and `before` (if any) as the projected time. The records
/// must follow the last applied one: a record applied twice fails the whole transaction.
///
/// # Errors
/// [`LedgerError`]; nothing is changed.
pub async fn apply(
    pool: &Pool,
    effects: &[Effect],
    first: u64,
    through: u64,
    before: Option<i64>,
) -> Result<(), LedgerError> {
    let _turn = crate::store::write_turn(pool).await;
    let mut tx = pool.begin().await?;
    write(&mut tx, effects, first, through, before).await?;
    tx.commit().await?;
    Ok(())
}

/// [`apply`]'s writes, inside the caller's transaction (the simulation crashes inside one).
///
/// # Errors
/// [`LedgerError`]; the caller rolls back.
pub async fn write(
    conn: &mut crate::store::Conn,
    effects: &[Effect],
    first: u64,
    through: u64,
    before: Option<i64>,
) -> Result<(), LedgerError> {
    Plan::fold(effects).write(conn).await?;
    let done = sqlx::query(
        "UPDATE journal_progress SET applied_seq = $1, \
         projected_before_ms = CASE WHEN $2 > projected_before_ms THEN $2 \
                                    ELSE projected_before_ms END \
         WHERE id = 1 AND applied_seq = $3",
    )
    .bind(seq_i64(through)?)
    .bind(before.unwrap_or(i64::MIN))
    .bind(seq_i64(first.saturating_sub(1))?)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(LedgerError::RowCount {
            what: "journal progress (records not following the last applied one)",
            wanted: 1,
            rows: done.rows_affected(),
        });
    }
    Ok(())
}

/// Moves the projected time forward when no record needs projecting (an idle switch), and
/// records the fence the engine holds.
///
/// # Errors
/// [`LedgerError`] when the database fails.
pub async fn advance(pool: &Pool, before: i64, fence_held: Option<i64>) -> Result<(), LedgerError> {
    let _turn = crate::store::write_turn(pool).await;
    sqlx::query(
        "UPDATE journal_progress SET \
         projected_before_ms = CASE WHEN $1 > projected_before_ms THEN $1 \
                                    ELSE projected_before_ms END, \
         fence_held_ms = CASE WHEN $2 > fence_held_ms THEN $2 ELSE fence_held_ms END \
         WHERE id = 1",
    )
    .bind(before)
    .bind(fence_held.unwrap_or(i64::MIN))
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a journal-mode switch as serving (true) or cleanly stopped with everything projected
/// (false).
///
/// # Errors
/// [`LedgerError`] when the database fails.
pub async fn set_running(pool: &Pool, running: bool) -> Result<(), LedgerError> {
    let _turn = crate::store::write_turn(pool).await;
    sqlx::query("UPDATE journal_progress SET running = $1 WHERE id = 1")
        .bind(i64::from(running))
        .execute(pool)
        .await?;
    Ok(())
}

/// Settlement asks the switch for a fence at `cutoff`.
///
/// # Errors
/// [`LedgerError`] when the database fails.
pub async fn ask_fence(pool: &Pool, cutoff: i64) -> Result<(), LedgerError> {
    let _turn = crate::store::write_turn(pool).await;
    sqlx::query(
        "UPDATE journal_progress SET fence_asked_ms = $1 WHERE id = 1 AND fence_asked_ms < $1",
    )
    .bind(cutoff)
    .execute(pool)
    .await?;
    Ok(())
}

fn seq_i64(seq: u64) -> Result<i64, LedgerError> {
    i64::try_from(seq).map_err(|_| LedgerError::Corrupt {
        table: "journal_progress",
        field: "applied_seq",
    })
}
