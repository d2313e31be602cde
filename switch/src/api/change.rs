//! How the API changes reference data, under the change lock: read the stored records the
//! change names (through their indexes, in a read transaction), validate the change against
//! them, then in one short write transaction check that the version read is still the stored
//! one, save the change with its audit rows and commit; read back what it touched, and apply
//! that to the live snapshot as a delta. A change that fails anywhere before the commit
//! changes nothing.

use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::MutexGuard;
use tracing::{info, warn};

use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::domain::{LoadedReference, ReferenceData};
use crate::snapshot::delta::OVERLAY_MAX;
use crate::snapshot::Snapshot;
use crate::store::audit;
use crate::store::reference::{self, ImportOutcome};
use crate::store::{Conn, StoreError};

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

/// A change in progress: holds the change lock, a connection for the handler's own checks,
/// and the stored records it may change or name, read through their indexes.
pub struct Change<'s> {
    state: &'s ApiState,
    _lock: MutexGuard<'s, ()>,
    conn: sqlx::pool::PoolConnection<crate::store::Db>,
    names: Vec<String>,
    /// The stored records the change is validated against: those whose code is one of the
    /// change's names (see [`Change::begin`]), with every tier and group.
    pub current: LoadedReference,
}

/// Every string in `value` (a request's body): the codes a change may name, whatever field
/// names them. Reading a few records too many costs an index lookup each.
pub fn names_in(value: &Value, names: &mut Vec<String>) {
    match value {
        Value::String(text) => names.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| names_in(item, names)),
        Value::Object(fields) => fields.values().for_each(|item| names_in(item, names)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl<'s> Change<'s> {
    /// Takes the change lock and reads the stored records whose code is one of `names` (the
    /// path's code and every string of the body, see [`names_in`]), each through its index:
    /// never the whole reference data. The read is a read transaction: validating a change
    /// holds no write lock, so the group commit never waits for it (the write checks that the
    /// version read here is still the stored one).
    ///
    /// # Errors
    /// [`ApiError::Store`] when the database fails.
    pub async fn begin(
        state: &'s ApiState,
        mut names: Vec<String>,
    ) -> Result<Change<'s>, ApiError> {
        names.sort_unstable();
        names.dedup();
        let lock = state.changes.lock().await;
        let mut tx = state.pool.begin().await.map_err(ApiError::store)?;
        let current = reference::load_named(&mut tx, &state.kek, &names)
            .await
            .map_err(ApiError::store)?;
        tx.commit().await.map_err(ApiError::store)?;
        let conn = state.pool.acquire().await.map_err(ApiError::store)?;
        Ok(Change {
            state,
            _lock: lock,
            conn,
            names,
            current,
        })
    }

    /// A connection for the handler's own checks (a KSI or PAN already taken): they run under
    /// the change lock, so no other change of this switch comes between them and the save; the
    /// database's unique keys refuse what another process might.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
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
        self.save_all(operator, data, vec![entry], keys).await
    }

    /// [`Change::save`] of several records with an audit row each (a bulk card operation),
    /// in one transaction and one delta.
    ///
    /// # Errors
    /// As [`Change::save`].
    pub async fn save_many(
        self,
        operator: &Operator,
        data: &ReferenceData,
        entries: Vec<AuditEntry>,
    ) -> Result<ImportOutcome, ApiError> {
        self.save_all(operator, data, entries, KeyChange::None)
            .await
    }

    async fn save_all(
        self,
        operator: &Operator,
        data: &ReferenceData,
        entries: Vec<AuditEntry>,
        keys: KeyChange,
    ) -> Result<ImportOutcome, ApiError> {
        let Change {
            state,
            _lock,
            conn,
            names,
            current,
        } = self;
        drop(conn);
        let mut tx = crate::store::begin_write(&state.pool)
            .await
            .map_err(ApiError::store)?;
        let stored = reference::stored_version(&mut tx)
            .await
            .map_err(ApiError::store)?;
        if stored != current.version {
            // An import or another switch changed the reference data between the read and
            // this write (this switch's own changes wait for the change lock).
            return Err(ApiError::Conflict {
                message: "the reference data changed while this change was checked; send it again"
                    .to_owned(),
            });
        }
        let now = state.clock.now();
        let details: Vec<String> = entries.iter().map(|e| e.detail.to_string()).collect();
        let mut hash = Sha256::new();
        for detail in &details {
            hash.update(detail.as_bytes());
        }
        let digest: [u8; 32] = hash.finalize().into();
        match &keys {
            KeyChange::None => Ok(()),
            // The current key becomes the previous one before the new key replaces it.
            KeyChange::KeepPrevious {
                terminal,
                valid_until_ms,
            } => reference::keep_previous_key(&mut tx, terminal, *valid_until_ms).await,
            KeyChange::DropPrevious { terminal } => {
                reference::drop_previous_key(&mut tx, terminal).await
            }
        }
        .map_err(ApiError::store)?;
        let saved = reference::save_over(&mut tx, data, &current, &digest, &state.kek, now).await;
        let outcome = match saved {
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
        for (entry, detail) in entries.iter().zip(&details) {
            let row = audit::Audited {
                at_ms: now.get(),
                operator: &operator.name,
                action: entry.action,
                resource: entry.resource,
                code: &entry.code,
                detail,
            };
            audit::record(&mut tx, &row)
                .await
                .map_err(ApiError::store)?;
        }
        tx.commit().await.map_err(ApiError::store)?;
        let changed = !outcome.is_noop() || keys != KeyChange::None;
        // What the change touched, read back after the commit as a whole rebuild would read
        // it (pair assertion: the delta is made from the stored rows, not from the request).
        let touched = if changed {
            Some(read_back(state, names, data, &current, &entries).await?)
        } else {
            None
        };
        if let [entry] = entries.as_slice() {
            info!(
                operator = %operator.name,
                action = entry.action,
                resource = entry.resource,
                code = %entry.code,
                version = outcome.version,
                "reference data changed"
            );
        } else {
            info!(
                operator = %operator.name,
                records = entries.len(),
                version = outcome.version,
                "reference data changed in bulk"
            );
        }
        if let Some(touched) = touched {
            // A key change alone changes no record, so it keeps the version.
            let expected = if outcome.is_noop() {
                current.version
            } else {
                current.version + 1
            };
            if touched.version == expected {
                publish(state, touched, current.version).await?;
            } else {
                // Another process changed the reference data right after this commit: the
                // read-back is of a later version than this change's, so catch up instead.
                catch_up(state).await?;
            }
        }
        Ok(outcome)
    }
}

/// What a change touched, read back after its commit as a whole rebuild would read it (pair
/// assertion: the delta is made from the stored rows, not from the request): the records the
/// change named or wrote, and the members read before it (a card that changed hands leaves its
/// old member to recompute as well).
async fn read_back(
    state: &ApiState,
    mut names: Vec<String>,
    data: &ReferenceData,
    current: &LoadedReference,
    entries: &[AuditEntry],
) -> Result<LoadedReference, ApiError> {
    names.extend(codes_of(data));
    names.extend(
        current
            .data
            .members
            .iter()
            .map(|m| m.code.as_str().to_owned()),
    );
    names.extend(entries.iter().map(|entry| entry.code.clone()));
    names.sort_unstable();
    names.dedup();
    let mut read = state.pool.begin().await.map_err(ApiError::store)?;
    let touched = reference::load_named(&mut read, &state.kek, &names)
        .await
        .map_err(ApiError::store)?;
    read.commit().await.map_err(ApiError::store)?;
    Ok(touched)
}

/// The codes of every record in `data`.
fn codes_of(data: &ReferenceData) -> impl Iterator<Item = String> + '_ {
    let codes = data
        .merchants
        .iter()
        .map(|r| &r.code)
        .chain(data.members.iter().map(|r| &r.code))
        .chain(data.cards.iter().map(|r| &r.code))
        .chain(data.rules.iter().map(|r| &r.code))
        .chain(data.tiers.iter().map(|r| &r.code))
        .map(|code| code.as_str().to_owned());
    let terminals = data
        .terminals
        .iter()
        .map(|r| r.terminal_id.as_str().to_owned());
    codes.chain(terminals)
}

/// Applies what a change touched to the live snapshot as a delta and swaps it in: connection
/// tasks take it for their next request, and requests already handed to the committer keep the
/// one they have. When the live snapshot is not the one the change was validated against (an
/// import or another switch changed the store meanwhile), it catches up through the change log
/// instead ([`catch_up`], which reads after this change's commit and so includes it). Both run
/// on a blocking thread, never on the engine's or a connection's task.
async fn publish(
    state: &ApiState,
    touched: LoadedReference,
    base_version: u64,
) -> Result<(), ApiError> {
    let live = state.snapshots.borrow().clone();
    if live.version() != base_version {
        return catch_up(state).await;
    }
    let next = applied(live, touched).await?;
    swap_in(state, next);
    Ok(())
}

/// `live` with `touched` applied, compacted when its overlay is past [`OVERLAY_MAX`]: on a
/// blocking thread, never on the engine's or a connection's task.
async fn applied(live: Arc<Snapshot>, touched: LoadedReference) -> Result<Snapshot, ApiError> {
    tokio::task::spawn_blocking(move || {
        let next = live.apply(&touched)?;
        if next.overlay_len() > OVERLAY_MAX {
            next.compacted()
        } else {
            Ok(next)
        }
    })
    .await
    .map_err(ApiError::store)?
    .map_err(ApiError::store)
}

/// Brings the live snapshot up to the stored reference version: the records the versions
/// since changed (`reference_changes`) are read and applied as one delta, or, when the log
/// does not list them all (a large import, or a switch far behind), the snapshot is rebuilt
/// whole, off the runtime's threads. The caller holds the change lock, so no API change
/// publishes meanwhile.
///
/// # Errors
/// [`ApiError::Store`] when the store fails or the records do not make a snapshot; the live
/// snapshot is then left as it was.
pub async fn catch_up(state: &ApiState) -> Result<(), ApiError> {
    let live = state.snapshots.borrow().clone();
    let mut tx = state.pool.begin().await.map_err(ApiError::store)?;
    let (stored, codes) = reference::changes_since(&mut tx, live.version())
        .await
        .map_err(ApiError::store)?;
    if stored <= live.version() {
        return Ok(());
    }
    let next = match codes {
        Some(codes) => {
            let mut touched = reference::load_named(&mut tx, &state.kek, &codes)
                .await
                .map_err(ApiError::store)?;
            tx.commit().await.map_err(ApiError::store)?;
            touched.version = stored;
            info!(
                from = live.version(),
                to = stored,
                records = codes.len(),
                "reference data changed elsewhere; applying it as a delta"
            );
            applied(live, touched).await?
        }
        None => {
            drop(tx);
            warn!(
                from = live.version(),
                to = stored,
                "reference data changed elsewhere beyond the change log; rebuilding the snapshot"
            );
            let loaded = reference::load_records(&state.pool, &state.kek)
                .await
                .map_err(ApiError::store)?;
            tokio::task::spawn_blocking(move || {
                Snapshot::build_read(loaded.reference(), loaded.rows())
            })
            .await
            .map_err(ApiError::store)?
            .map_err(ApiError::store)?
        }
    };
    swap_in(state, next);
    Ok(())
}

/// Publishes `next` unless a newer version is live already.
fn swap_in(state: &ApiState, next: Snapshot) {
    state.snapshots.send_if_modified(|snapshot| {
        let newer = next.version() >= snapshot.version();
        if newer {
            *snapshot = Arc::new(next);
        }
        newer
    });
}
