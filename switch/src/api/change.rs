//! How the API changes reference data: under the change lock, read what is stored, validate
//! the change against it, save the change and its audit row in one transaction, then rebuild
//! the snapshot and publish it. A change that fails anywhere before the commit changes
//! nothing.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::MutexGuard;
use tracing::info;

use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::domain::{LoadedReference, ReferenceData};
use crate::snapshot::Snapshot;
use crate::store::reference::{self, ImportOutcome};
use crate::store::StoreError;

/// One audit row: what was done to which resource, with the request's fields (never a PAN, a
/// TMK or a token: callers pass only the fields that are safe to keep).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// `create`, `replace`, `block`, ...
    pub action: &'static str,
    /// `merchant`, `terminal`, `card`.
    pub resource: &'static str,
    /// The resource's code (terminal id for terminals).
    pub code: String,
    /// The fields of the change.
    pub detail: Value,
}

/// What a change does to a terminal's previous key (key rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// Nothing.
    None,
    /// The terminal's current key becomes its previous key, valid until then.
    KeepPrevious {
        /// The terminal id.
        terminal: String,
        /// When the previous key stops working.
        valid_until_ms: i64,
    },
    /// The terminal's previous key stops working now.
    DropPrevious {
        /// The terminal id.
        terminal: String,
    },
}

/// A change in progress: holds the change lock and what was stored when it began.
pub struct Change<'s> {
    state: &'s ApiState,
    _lock: MutexGuard<'s, ()>,
    /// The stored reference data the change is validated against.
    pub current: LoadedReference,
}

impl<'s> Change<'s> {
    /// Takes the change lock and reads the stored reference data.
    ///
    /// # Errors
    /// [`ApiError::Store`] when the database fails.
    pub async fn begin(state: &'s ApiState) -> Result<Change<'s>, ApiError> {
        let lock = state.changes.lock().await;
        let current = reference::load(&state.pool, &state.kek)
            .await
            .map_err(ApiError::store)?;
        Ok(Change {
            state,
            _lock: lock,
            current,
        })
    }

    /// Saves `data` (the changed records only) with its audit row, and publishes the new
    /// snapshot when anything changed.
    ///
    /// # Errors
    /// [`ApiError::Conflict`] when the store refuses the change, [`ApiError::Store`] when it
    /// fails; nothing is changed either way. A failure to publish after the commit is also
    /// [`ApiError::Store`]: the change is saved and goes live at the next change or restart.
    pub async fn save(
        self,
        operator: &Operator,
        data: &ReferenceData,
        entry: AuditEntry,
    ) -> Result<ImportOutcome, ApiError> {
        self.save_with(operator, data, entry, KeyChange::None).await
    }

    /// [`Change::save`], first keeping or dropping a terminal's previous key in the same
    /// transaction (key rotation).
    ///
    /// # Errors
    /// As [`Change::save`].
    pub async fn save_with(
        self,
        operator: &Operator,
        data: &ReferenceData,
        entry: AuditEntry,
        keys: KeyChange,
    ) -> Result<ImportOutcome, ApiError> {
        let state = self.state;
        let now = state.clock.now();
        let detail = entry.detail.to_string();
        let digest: [u8; 32] = Sha256::digest(detail.as_bytes()).into();
        let mut tx = crate::store::begin_write(&state.pool)
            .await
            .map_err(ApiError::store)?;
        match &keys {
            KeyChange::None => {}
            KeyChange::KeepPrevious {
                terminal,
                valid_until_ms,
            } => {
                // The current key becomes the previous one before the new key replaces it.
                sqlx::query(
                    "INSERT INTO terminal_previous_keys (terminal_id, ksi, tmk_sealed, valid_until_ms) \
                     SELECT id, ksi, tmk_sealed, $1 FROM terminals WHERE terminal_id = $2 \
                     ON CONFLICT (terminal_id) DO UPDATE SET ksi = excluded.ksi, \
                     tmk_sealed = excluded.tmk_sealed, valid_until_ms = excluded.valid_until_ms",
                )
                .bind(valid_until_ms)
                .bind(terminal)
                .execute(&mut *tx)
                .await
                .map_err(ApiError::store)?;
            }
            KeyChange::DropPrevious { terminal } => {
                sqlx::query(
                    "DELETE FROM terminal_previous_keys WHERE terminal_id = \
                     (SELECT id FROM terminals WHERE terminal_id = $1)",
                )
                .bind(terminal)
                .execute(&mut *tx)
                .await
                .map_err(ApiError::store)?;
            }
        }
        let outcome = match reference::save_in(&mut tx, data, &digest, &state.kek, now).await {
            Ok(outcome) => outcome,
            Err(StoreError::Rejected { problems }) => {
                return Err(ApiError::Conflict {
                    message: problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                })
            }
            Err(error) => return Err(ApiError::store(error)),
        };
        sqlx::query(
            "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now.get())
        .bind(&operator.name)
        .bind(entry.action)
        .bind(entry.resource)
        .bind(&entry.code)
        .bind(&detail)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::store)?;
        tx.commit().await.map_err(ApiError::store)?;
        info!(
            operator = %operator.name,
            action = entry.action,
            resource = entry.resource,
            code = %entry.code,
            version = outcome.version,
            "reference data changed"
        );
        if !outcome.is_noop() || keys != KeyChange::None {
            publish(state).await?;
        }
        Ok(outcome)
    }
}

/// Rebuilds the snapshot from the store and swaps it in: connection tasks take it for their
/// next request, and requests already handed to the committer keep the one they have.
async fn publish(state: &ApiState) -> Result<(), ApiError> {
    let loaded = reference::load(&state.pool, &state.kek)
        .await
        .map_err(ApiError::store)?;
    let snapshot = Snapshot::build(&loaded).map_err(ApiError::store)?;
    state.snapshots.send_replace(Arc::new(snapshot));
    Ok(())
}
