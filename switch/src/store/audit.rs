//! The audit log's rows: who changed what, when, with the change's detail as JSON text.

use crate::store::Conn;

/// One audit log row, written in the transaction of the change it records.
#[derive(Debug, Clone, Copy)]
pub struct Audited<'a> {
    /// When, in Unix milliseconds.
    pub at_ms: i64,
    /// The operator's name (or the token's).
    pub operator: &'a str,
    /// What was done (`create`, `replace`, `assign`, ...).
    pub action: &'a str,
    /// The kind of record (`card`, `survey`, `tag`, ...).
    pub resource: &'a str,
    /// The record's code.
    pub code: &'a str,
    /// The change's detail, JSON text.
    pub detail: &'a str,
}

/// Writes `entry` on `conn` (inside the change's transaction).
///
/// # Errors
/// The database's error.
pub async fn record(conn: &mut Conn, entry: &Audited<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.at_ms)
    .bind(entry.operator)
    .bind(entry.action)
    .bind(entry.resource)
    .bind(entry.code)
    .bind(entry.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `create` or `replace`, as a record `existed` before the change or not.
pub fn create_or_replace(existed: bool) -> &'static str {
    if existed {
        "replace"
    } else {
        "create"
    }
}
