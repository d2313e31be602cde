//! Reference data in SQLite: [`save`] an import in one transaction, [`load`] it back.
//!
//! Records are upserted by code (terminals by terminal id), so row ids stay stable across
//! imports; nothing is deleted (an operator retires a record by its status). A record is
//! written only when it differs from the stored one, and `reference_meta.version` goes up only
//! when something was written, so importing the same file twice is a no-op. Balances in a file
//! are openings: each creates an account that does not exist yet; the same opening again is a
//! no-op, and another amount for an existing account is refused.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::store::direct::Direct;
use crate::store::packed::{self, Packing};
use crate::store::sql::QueryBuilder;
use crate::store::{Backend, Conn, Db, DbRow, Pool};
use futures_util::TryStreamExt;
use protocol::Tmk;
use rand::RngCore;
use serde::Deserialize;
use sqlx::Row;

use crate::domain::reference::{
    CardRecord, ClubOpening, GroupRecord, MemberRecord, MerchantRecord, PreviousKey, RuleRecord,
    StoreCreditOpening, TerminalRecord, TierRecord,
};
use crate::domain::{
    BinRange, CardExpiry, CardId, CardStatus, CivilDate, Code, CurrencyCode, Eligibility,
    FeeSchedule, GroupId, Iban, Invalid, Kek, KeySetId, LoadedReference, Locale, MemberId,
    MerchantId, MerchantProfile, MerchantStatus, MinuteWindow, PanToken, Percent, Phone, ReadRows,
    ReferenceData, Rials, RowIds, RuleId, RuleKind, RuleTerms, TerminalCode, TerminalRowId,
    TerminalStatus, TierId, UnixMillis, Weekdays, Window,
};
use crate::import::Problem;
use crate::store::StoreError;

/// What an import changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The reference version after the import.
    pub version: u64,
    /// Records that did not exist before.
    pub inserted: u64,
    /// Records that existed and differed.
    pub updated: u64,
    /// Opening balances created.
    pub openings: u64,
}

impl ImportOutcome {
    /// Whether the import changed nothing.
    pub fn is_noop(&self) -> bool {
        self.inserted == 0 && self.updated == 0 && self.openings == 0
    }
}

impl fmt::Display for ImportOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_noop() {
            write!(f, "no changes; reference version {}", self.version)
        } else {
            write!(
                f,
                "reference version {}: {} inserted, {} updated, {} opening balances",
                self.version, self.inserted, self.updated, self.openings
            )
        }
    }
}

/// Loads every reference record, its row id and the reference version, in one read
/// transaction, opening each sealed TMK with `kek`.
///
/// # Errors
/// [`StoreError`] when the database fails, a row is invalid or a TMK does not open.
pub async fn load(pool: &Pool, kek: &Kek) -> Result<LoadedReference, StoreError> {
    let mut tx = pool.begin().await?;
    let mut loaded = read_all(&mut tx, kek).await?;
    loaded.previous_keys = read_previous_keys(&mut tx, kek, Select::All).await?;
    tx.commit().await?;
    Ok(loaded)
}

/// [`load`] without the opening balances: every record, row id, previous key and the version,
/// which is all a [`crate::snapshot::Snapshot`] is built from (start-up). The openings are an
/// import's business (a re-import compares them) and, at a million cards, a million and a
/// half rows more to read.
///
/// # Errors
/// [`StoreError`] when the database fails, a row is invalid or a TMK does not open.
pub async fn load_records(pool: &Pool, kek: &Kek) -> Result<Fresh, StoreError> {
    let mut tx = pool.begin().await?;
    let mut rows = ReadRows::default();
    // The members and cards are read straight from a SQLite file (`store::direct`), on a
    // second connection: it must see what this transaction sees. Every change of reference
    // data bumps the version in the change's own transaction, so the same version in both
    // is the same reference data.
    let version = read_version(&mut tx).await?.version;
    let direct = match Direct::open(&mut tx).await? {
        Some(direct) => {
            let seen = direct.integer("SELECT version FROM reference_meta WHERE id = 1")?;
            let seen = seen.and_then(|seen| u64::try_from(seen).ok()).unwrap_or(0);
            (seen == version).then_some(direct)
        }
        None => None,
    };
    let mut reference =
        read_selected(&mut tx, kek, Select::All, &mut rows, direct.as_ref()).await?;
    reference.previous_keys = read_previous_keys(&mut tx, kek, Select::All).await?;
    tx.commit().await?;
    Ok(Fresh { reference, rows })
}

/// A whole read of the reference data ([`load_records`]) with the row ids of its members and
/// cards in the order of its records, as they were read. It lends the read and never lets it
/// be edited, so the row ids cannot go stale: [`Snapshot::build_read`] takes them instead of
/// looking every code up again (about a second at a million cards).
///
/// [`Snapshot::build_read`]: crate::snapshot::Snapshot::build_read
#[derive(Debug)]
pub struct Fresh {
    reference: LoadedReference,
    rows: ReadRows,
}

impl Fresh {
    /// The records and their row ids by code.
    pub fn reference(&self) -> &LoadedReference {
        &self.reference
    }

    /// The row ids of the members and cards, in the order of their records.
    pub fn rows(&self) -> &ReadRows {
        &self.rows
    }

    /// The records alone, to edit.
    pub fn into_reference(self) -> LoadedReference {
        self.reference
    }
}

/// Which rows of one kind of record a read takes.
#[derive(Debug, Clone, Copy)]
pub enum Select<'a> {
    /// Every row: start-up, a rebuild, an import.
    All,
    /// The rows whose code is one of these, and (for members and cards) every card of each
    /// member named or holding a named card: what one operator change touches. Never a scan:
    /// each kind is read through its code's unique index.
    Named(&'a [String]),
    /// One page by code: codes after `after` ("" for the first), ascending, at most `limit`.
    Page {
        /// The last code of the page before.
        after: &'a str,
        /// Rows at most.
        limit: u32,
    },
}

impl Select<'_> {
    /// The condition on `column` this selection puts (`1 = 1` for every row).
    fn filter(&self, column: &str) -> String {
        match self {
            Select::All => "1 = 1".to_owned(),
            Select::Named([]) => "1 = 0".to_owned(),
            Select::Named(names) => {
                let params: Vec<String> = (1..=names.len()).map(|n| format!("${n}")).collect();
                format!("{column} IN ({})", params.join(", "))
            }
            Select::Page { .. } => format!("{column} > $1"),
        }
    }

    /// The order (and for a page, the limit) of the rows.
    fn order(&self, id: &str, column: &str) -> String {
        match self {
            Select::All | Select::Named(_) => format!(" ORDER BY {id}"),
            Select::Page { limit, .. } => format!(" ORDER BY {column} LIMIT {limit}"),
        }
    }

    /// The condition on a link table's `owner` column that takes the links of the rows of
    /// `table` this selection takes (none for [`Select::All`]: every link).
    fn owners(&self, owner: &str, table: &str, column: &str) -> String {
        match self {
            Select::All => "1 = 1".to_owned(),
            Select::Named(_) | Select::Page { .. } => format!(
                "{owner} IN (SELECT id FROM {table} WHERE {}{})",
                self.filter(column),
                self.order("id", column)
            ),
        }
    }

    /// The condition on `member` (a member id column) that takes the members this selection
    /// takes: for [`Select::Named`], the members named and those holding a named card, so
    /// that a change to a card reads its member and the member's other cards too.
    fn members(&self, member: &str) -> String {
        match self {
            Select::All => "1 = 1".to_owned(),
            Select::Named(_) => format!(
                "{member} IN (SELECT id FROM members WHERE {} UNION \
                 SELECT member_id FROM cards WHERE {})",
                self.filter("code"),
                self.filter("code")
            ),
            Select::Page { .. } => self.owners(member, "members", "code"),
        }
    }

    /// Whether this selection takes every row: a packed read then goes in key ranges.
    fn whole(&self) -> bool {
        matches!(self, Select::All)
    }

    /// The order of a packed read: the row id, or for a page its code.
    fn key<'k>(&self, id: &'k str, code: &'k str) -> &'k str {
        match self {
            Select::Page { .. } => code,
            Select::All | Select::Named(_) => id,
        }
    }

    /// Binds this selection's parameters to `sql`.
    fn query<'q>(&self, sql: &'q str) -> sqlx::query::Query<'q, Db, sqlx::any::AnyArguments<'q>> {
        let mut query = sqlx::query(sql);
        match self {
            Select::All => {}
            Select::Named(names) => {
                for name in names.iter() {
                    query = query.bind(name.clone());
                }
            }
            Select::Page { after, .. } => query = query.bind((*after).to_owned()),
        }
        query
    }
}

/// Most codes one [`Select::Named`] read takes: far above what one API body names (a body is
/// at most 64 KiB), and below both databases' limits on a statement's parameters.
pub const NAMED_MAX: usize = 10_000;

/// The stored records named by `names` (merchants, terminals, members, cards and rules whose
/// code is one of them, every card of each member named or holding a named card, and the
/// terminals' previous keys), with every tier and group, the row ids of all they reference,
/// and the reference version; each kind read through its indexes, never whole. No openings.
///
/// # Errors
/// [`StoreError`] when the database fails, a row is invalid, a TMK does not open, or more
/// than [`NAMED_MAX`] names are given.
pub async fn load_named(
    conn: &mut Conn,
    kek: &Kek,
    names: &[String],
) -> Result<LoadedReference, StoreError> {
    if names.len() > NAMED_MAX {
        return Err(StoreError::Rejected {
            problems: vec![Problem {
                path: "names".to_owned(),
                message: format!("more than {NAMED_MAX} codes in one change"),
            }],
        });
    }
    read_selected(
        conn,
        kek,
        Select::Named(names),
        &mut ReadRows::default(),
        None,
    )
    .await
}

/// One page of one section's records by code (`section` as in the import file: `merchants`,
/// `terminals`, `members`, `cards`, `rules`), with every tier and group; the other sections
/// are empty.
///
/// # Errors
/// [`StoreError`] when the database fails or a row is invalid.
pub async fn load_page(
    pool: &Pool,
    kek: &Kek,
    section: &str,
    after: &str,
    limit: u32,
) -> Result<LoadedReference, StoreError> {
    let mut tx = pool.begin().await?;
    let page = Select::Page { after, limit };
    let none = Select::Named(&[]);
    let out = read_sections(
        &mut tx,
        kek,
        |wanted| if wanted == section { page } else { none },
        &mut ReadRows::default(),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// The previous keys (key rotation) of the terminals `select` takes, each TMK opened with
/// `kek`.
async fn read_previous_keys(
    conn: &mut Conn,
    kek: &Kek,
    select: Select<'_>,
) -> Result<Vec<PreviousKey>, StoreError> {
    let sql = format!(
        "SELECT p.terminal_id AS id, t.terminal_id, p.ksi, p.tmk_sealed, p.valid_until_ms \
         FROM terminal_previous_keys p JOIN terminals t ON t.id = p.terminal_id WHERE {} \
         ORDER BY p.terminal_id",
        select.filter("t.terminal_id")
    );
    let rows = select.query(&sql).fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let table = "terminal_previous_keys";
        let terminal = column(&row, table, id, "terminal_id", |s| {
            TerminalCode::parse(s.as_bytes())
        })?;
        let sealed: Vec<u8> = row.try_get("tmk_sealed")?;
        let tmk = kek
            .open_tmk(&terminal, &sealed)
            .map_err(|source| StoreError::Sealed { id, source })?;
        out.push(PreviousKey {
            terminal,
            ksi: column(&row, table, id, "ksi", |s| KeySetId::parse(s.as_bytes()))?,
            tmk,
            valid_until: UnixMillis::new(row.try_get("valid_until_ms")?),
        });
    }
    Ok(out)
}

/// Saves `data` in one transaction: upserts every record that is new or differs, creates the
/// opening balances of accounts that do not exist yet, and bumps the reference version (with
/// `file_sha256` and `now`) when anything changed.
///
/// # Errors
/// [`StoreError::Rejected`] when an opening balance differs from a stored account's;
/// other [`StoreError`]s when the database fails. Nothing is changed on any error.
pub async fn save(
    pool: &Pool,
    data: &ReferenceData,
    file_sha256: &[u8; 32],
    kek: &Kek,
    now: UnixMillis,
) -> Result<ImportOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    if crate::store::Backend::of_pool(pool) == crate::store::Backend::Sqlite {
        // A million cards insert at random places in the PAN token's unique index: with the
        // switch's 32 MiB page cache most of those inserts read a page back from disk. This
        // connection (the import's, not the switch's) may use up to 512 MiB, allocated only
        // as pages are read.
        sqlx::query("PRAGMA cache_size = -524288")
            .execute(&mut *tx)
            .await?;
    }
    let outcome = save_in(&mut tx, data, file_sha256, kek, now).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// [`save`] inside the caller's transaction, so that the operator API writes its audit row in
/// the same transaction as the change. Nothing is committed here.
///
/// # Errors
/// As [`save`]; the caller rolls back.
pub async fn save_in(
    tx: &mut Conn,
    data: &ReferenceData,
    file_sha256: &[u8; 32],
    kek: &Kek,
    now: UnixMillis,
) -> Result<ImportOutcome, StoreError> {
    let current = read_all(&mut *tx, kek).await?;
    save_over(tx, data, &current, file_sha256, kek, now).await
}

/// [`save_in`] against `current`, the stored records `data` may change or name (all of them,
/// or those [`load_named`] read for it), read in this transaction: the operator API's change
/// of a few records, which reads only those.
///
/// # Errors
/// As [`save`]; the caller rolls back.
pub async fn save_over(
    tx: &mut Conn,
    data: &ReferenceData,
    current: &LoadedReference,
    file_sha256: &[u8; 32],
    kek: &Kek,
    now: UnixMillis,
) -> Result<ImportOutcome, StoreError> {
    // Every balance account is read only when the change opens balances (an import file);
    // the API's changes never do.
    let accounts = if data.club_openings.is_empty() && data.store_credit_openings.is_empty() {
        Accounts::none()
    } else {
        Accounts::read(&mut *tx).await?
    };
    check_openings(data, current, &accounts)?;
    let mut writer = Writer {
        conn: &mut *tx,
        ids: current.ids.clone(),
        count: Count::default(),
        logged: Vec::new(),
    };
    writer.tiers(&data.tiers, &current.data.tiers).await?;
    writer
        .groups(
            "merchant",
            &data.merchant_groups,
            &current.data.merchant_groups,
        )
        .await?;
    writer
        .groups("member", &data.member_groups, &current.data.member_groups)
        .await?;
    writer
        .groups(
            "terminal",
            &data.terminal_groups,
            &current.data.terminal_groups,
        )
        .await?;
    writer
        .merchants(&data.merchants, &current.data.merchants)
        .await?;
    writer
        .terminals(&data.terminals, &current.data.terminals, kek)
        .await?;
    writer.members(&data.members, &current.data.members).await?;
    writer.cards(&data.cards, &current.data.cards).await?;
    writer.rules(&data.rules, &current.data.rules).await?;
    writer.openings(data, &accounts, now).await?;
    let count = writer.count;
    let logged = writer.logged;
    let changed = count.inserted + count.updated + count.openings > 0;
    let version = if changed {
        current.version + 1
    } else {
        current.version
    };
    if changed {
        sqlx::query(
            "INSERT INTO reference_meta (id, version, imported_at_ms, file_sha256) VALUES (1, $1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                 imported_at_ms = excluded.imported_at_ms, file_sha256 = excluded.file_sha256",
        )
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .bind(now.get())
        .bind(hex::encode(file_sha256))
        .execute(&mut *tx)
        .await?;
        log_changes(tx, version, logged).await?;
    }
    Ok(ImportOutcome {
        version,
        inserted: count.inserted,
        updated: count.updated,
        openings: count.openings,
    })
}

/// Records one version's changes may name in `reference_changes` before it is logged as
/// "rebuild whole": a running switch applies up to this many as one delta. Not more: the
/// catch-up reads them by name with `$n` parameters, which SQLite binds at a cost that grows
/// with the square of their number (a few milliseconds a statement at 1,000).
pub const CHANGES_LOGGED_MAX: usize = 1_000;
/// Versions whose changes are kept: a switch further behind than this rebuilds whole.
pub const CHANGE_VERSIONS_KEPT: i64 = 1_000;
/// The code that stands for "this version changed too much to list: rebuild whole".
pub const REBUILD_MARK: &str = "*";

/// Logs which records `version` changed (or [`REBUILD_MARK`] when more than
/// [`CHANGES_LOGGED_MAX`]), and prunes versions older than [`CHANGE_VERSIONS_KEPT`].
async fn log_changes(
    tx: &mut Conn,
    version: u64,
    mut codes: Vec<String>,
) -> Result<(), StoreError> {
    let version = i64::try_from(version).unwrap_or(i64::MAX);
    if codes.len() > CHANGES_LOGGED_MAX {
        codes = vec![REBUILD_MARK.to_owned()];
    } else if codes.is_empty() {
        // A version that changed no record (openings only) is logged as the empty code, so
        // that the log still shows the version complete.
        codes.push(String::new());
    }
    // Two kinds of record may share a code; the log keeps each code once a version.
    codes.sort_unstable();
    codes.dedup();
    for chunk in codes.chunks(BULK_ROWS) {
        let mut query = QueryBuilder::new("INSERT INTO reference_changes (version, code) ");
        query.push_values(chunk, |mut row, code| {
            row.push_bind(version).push_bind(code.as_str());
        });
        query.build(Backend::of_conn(tx)).execute(&mut *tx).await?;
    }
    sqlx::query("DELETE FROM reference_changes WHERE version < $1")
        .bind(version - CHANGE_VERSIONS_KEPT)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The codes the versions after `after` changed, up to and including the stored version,
/// which is returned with them: `None` for the codes when a version's changes are not all
/// listed (a large import, or versions pruned or made before the log), so the caller rebuilds
/// whole.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn changes_since(
    conn: &mut Conn,
    after: u64,
) -> Result<(u64, Option<Vec<String>>), StoreError> {
    let stored = read_version(&mut *conn).await?.version;
    if stored <= after {
        return Ok((stored, Some(Vec::new())));
    }
    let after_i = i64::try_from(after).unwrap_or(i64::MAX);
    let stored_i = i64::try_from(stored).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT version, code FROM reference_changes WHERE version > $1 AND version <= $2",
    )
    .bind(after_i)
    .bind(stored_i)
    .fetch_all(&mut *conn)
    .await?;
    let mut versions = HashSet::new();
    let mut codes = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i64 = row.try_get("version")?;
        let code: String = row.try_get("code")?;
        if code == REBUILD_MARK {
            return Ok((stored, None));
        }
        versions.insert(version);
        if !code.is_empty() {
            codes.push(code);
        }
    }
    let complete = (after_i + 1..=stored_i).all(|version| versions.contains(&version));
    if !complete {
        return Ok((stored, None));
    }
    codes.sort_unstable();
    codes.dedup();
    Ok((stored, Some(codes)))
}

/// The balance accounts that exist, whatever created them.
struct Accounts {
    club: HashSet<i64>,
    store_credit: HashSet<(i64, i64)>,
}

impl Accounts {
    fn none() -> Accounts {
        Accounts {
            club: HashSet::new(),
            store_credit: HashSet::new(),
        }
    }

    async fn read(conn: &mut Conn) -> Result<Accounts, StoreError> {
        let club = sqlx::query("SELECT card_id FROM club_balances")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let store_credit = sqlx::query("SELECT card_id, merchant_id FROM store_credit_accounts")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Accounts { club, store_credit })
    }
}

const OPENINGS_ONLY: &str = "balances are openings only; use a top-up";

/// Refuses openings for accounts that exist with another opening (or none).
fn check_openings(
    data: &ReferenceData,
    current: &LoadedReference,
    accounts: &Accounts,
) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    let club: HashMap<&Code, &ClubOpening> = current
        .data
        .club_openings
        .iter()
        .map(|o| (&o.card, o))
        .collect();
    for (index, opening) in data.club_openings.iter().enumerate() {
        let Some(card) = current.ids.cards.get(&opening.card) else {
            continue;
        };
        if accounts.club.contains(&card.get()) && club.get(&opening.card) != Some(&opening) {
            problems.push(Problem {
                path: format!("balances.club[{index}].amount_rials"),
                message: OPENINGS_ONLY.to_string(),
            });
        }
    }
    let store: HashMap<(&Code, &Code), &StoreCreditOpening> = current
        .data
        .store_credit_openings
        .iter()
        .map(|o| ((&o.card, &o.merchant), o))
        .collect();
    for (index, opening) in data.store_credit_openings.iter().enumerate() {
        let card = current.ids.cards.get(&opening.card);
        let merchant = current.ids.merchants.get(&opening.merchant);
        let (Some(card), Some(merchant)) = (card, merchant) else {
            continue;
        };
        let exists = accounts
            .store_credit
            .contains(&(card.get(), merchant.get()));
        if exists && store.get(&(&opening.card, &opening.merchant)) != Some(&opening) {
            problems.push(Problem {
                path: format!("balances.store_credit[{index}].amount_rials"),
                message: OPENINGS_ONLY.to_string(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Rejected { problems })
    }
}

#[derive(Default, Clone, Copy)]
struct Count {
    inserted: u64,
    updated: u64,
    openings: u64,
}

/// Rows one multi-row `INSERT` of an import writes: a million cards take 4,000 statements
/// instead of a million, and 256 rows of at most 9 columns stay far below both databases'
/// limits on a statement's parameters (32,766 and 65,535). The statements are built with
/// [`QueryBuilder`], whose positional parameters keep SQLite's binding linear (with `$n`, a
/// 500-row statement made a 100k-card import slower than one row a statement).
const BULK_ROWS: usize = 256;

/// Writes records inside the import's transaction, keeping the code → id maps current.
struct Writer<'c> {
    conn: &'c mut Conn,
    ids: RowIds,
    count: Count,
    /// The codes of the records written, for `reference_changes`; past
    /// [`CHANGES_LOGGED_MAX`] no more are kept (the version is logged as "rebuild whole").
    logged: Vec<String>,
}

/// How a record compares with the stored one of the same code.
enum Change<Id> {
    Same,
    Insert,
    Update(Id),
}

fn change<'a, K, R, Id>(
    key: &K,
    record: &R,
    stored: &HashMap<&'a K, &'a R>,
    ids: &crate::fast_hash::CodeMap<K, Id>,
) -> Change<Id>
where
    K: std::hash::Hash + Eq,
    R: PartialEq,
    Id: Copy,
{
    match (stored.get(key), ids.get(key)) {
        (Some(old), Some(_)) if *old == record => Change::Same,
        (_, Some(id)) => Change::Update(*id),
        (_, None) => Change::Insert,
    }
}

fn by_code<'a, R>(records: &'a [R], key: impl Fn(&'a R) -> &'a Code) -> HashMap<&'a Code, &'a R> {
    records.iter().map(|record| (key(record), record)).collect()
}

impl Writer<'_> {
    /// `verdict`, having noted `code` for the change log when the record is written.
    fn noted<Id>(&mut self, code: &str, verdict: Change<Id>) -> Change<Id> {
        let written = !matches!(verdict, Change::Same);
        if written && self.logged.len() <= CHANGES_LOGGED_MAX {
            self.logged.push(code.to_owned());
        }
        verdict
    }

    async fn tiers(&mut self, new: &[TierRecord], old: &[TierRecord]) -> Result<(), StoreError> {
        let stored = by_code(old, |r| &r.code);
        for record in new {
            let rate = record.cashback_rate.to_string();
            match self.noted(
                record.code.as_str(),
                change(&record.code, record, &stored, &self.ids.tiers),
            ) {
                Change::Same => {}
                Change::Insert => {
                    let id = sqlx::query_scalar::<_, i64>(
                        "INSERT INTO tiers (code, name, cashback_rate, rank, spend_rials_min, \
                         purchases_min) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    )
                    .bind(record.code.as_str())
                    .bind(&record.name)
                    .bind(rate)
                    .bind(i64::from(record.rank))
                    .bind(record.spend_rials_min.map(Rials::get))
                    .bind(record.purchases_min.map(i64::from))
                    .fetch_one(&mut *self.conn)
                    .await?;
                    self.ids.tiers.insert(record.code.clone(), TierId::new(id));
                    self.count.inserted += 1;
                }
                Change::Update(id) => {
                    sqlx::query(
                        "UPDATE tiers SET name = $1, cashback_rate = $2, rank = $3, \
                         spend_rials_min = $4, purchases_min = $5 WHERE id = $6",
                    )
                    .bind(&record.name)
                    .bind(rate)
                    .bind(i64::from(record.rank))
                    .bind(record.spend_rials_min.map(Rials::get))
                    .bind(record.purchases_min.map(i64::from))
                    .bind(id.get())
                    .execute(&mut *self.conn)
                    .await?;
                    self.count.updated += 1;
                }
            }
        }
        Ok(())
    }

    async fn groups(
        &mut self,
        kind: &'static str,
        new: &[GroupRecord],
        old: &[GroupRecord],
    ) -> Result<(), StoreError> {
        let stored = by_code(old, |r| &r.code);
        for record in new {
            let ids = self.group_ids(kind);
            match self.noted(
                record.code.as_str(),
                change(&record.code, record, &stored, ids),
            ) {
                Change::Same => {}
                Change::Insert => {
                    let id = sqlx::query_scalar::<_, i64>(
                        "INSERT INTO groups (kind, code, name) VALUES ($1, $2, $3) RETURNING id",
                    )
                    .bind(kind)
                    .bind(record.code.as_str())
                    .bind(&record.name)
                    .fetch_one(&mut *self.conn)
                    .await?;
                    self.group_ids_mut(kind)
                        .insert(record.code.clone(), GroupId::new(id));
                    self.count.inserted += 1;
                }
                Change::Update(id) => {
                    sqlx::query("UPDATE groups SET name = $1 WHERE id = $2")
                        .bind(&record.name)
                        .bind(id.get())
                        .execute(&mut *self.conn)
                        .await?;
                    self.count.updated += 1;
                }
            }
        }
        Ok(())
    }

    fn group_ids(&self, kind: &str) -> &crate::fast_hash::CodeMap<Code, GroupId> {
        match kind {
            "merchant" => &self.ids.merchant_groups,
            "member" => &self.ids.member_groups,
            _ => &self.ids.terminal_groups,
        }
    }

    fn group_ids_mut(&mut self, kind: &str) -> &mut crate::fast_hash::CodeMap<Code, GroupId> {
        match kind {
            "merchant" => &mut self.ids.merchant_groups,
            "member" => &mut self.ids.member_groups,
            _ => &mut self.ids.terminal_groups,
        }
    }

    async fn merchants(
        &mut self,
        new: &[MerchantRecord],
        old: &[MerchantRecord],
    ) -> Result<(), StoreError> {
        let stored = by_code(old, |r| &r.code);
        for record in new {
            let id = match self.noted(
                record.code.as_str(),
                change(&record.code, record, &stored, &self.ids.merchants),
            ) {
                Change::Same => continue,
                Change::Insert => {
                    // A placeholder row claims the id; the one UPDATE below writes every
                    // column for new and changed merchants alike, inside this transaction.
                    let id = sqlx::query_scalar::<_, i64>("INSERT INTO merchants (code, name, iban, status, currency, fee_rate, fee_rials_min, fee_rials_max, amount_rials_max, cashback_allowed, credit_expiry_days, utc_offset_minutes) VALUES ($1, '', '', 'inactive', 364, '0', 0, 0, 0, 0, 1, 0) RETURNING id")
                        .bind(record.code.as_str())
                        .fetch_one(&mut *self.conn)
                        .await?;
                    self.ids
                        .merchants
                        .insert(record.code.clone(), MerchantId::new(id));
                    self.count.inserted += 1;
                    id
                }
                Change::Update(id) => {
                    self.count.updated += 1;
                    id.get()
                }
            };
            let profile = &record.profile;
            let fee = &profile.fee;
            sqlx::query(
                "UPDATE merchants SET name = $1, iban = $2, status = $3, currency = $4, fee_rate = $5,
                 fee_rials_min = $6, fee_rials_max = $7, amount_rials_max = $8, cashback_allowed = $9,
                 credit_expiry_days = $10, utc_offset_minutes = $11 WHERE id = $12",
            )
            .bind(&profile.name)
            .bind(profile.iban.as_str())
            .bind(merchant_status_text(profile.status))
            .bind(i64::from(profile.currency.get()))
            .bind(fee.rate().to_string())
            .bind(fee.fee_rials_min().get())
            .bind(fee.fee_rials_max().get())
            .bind(profile.amount_rials_max.get())
            .bind(i64::from(profile.cashback_allowed))
            .bind(i64::from(profile.credit_expiry_days))
            .bind(i64::from(profile.utc_offset_minutes))
            .bind(id)
            .execute(&mut *self.conn)
            .await?;
            let groups = resolve_all(&self.ids.merchant_groups, &record.groups, |g| g.get())?;
            self.links(
                "merchant_group_members",
                "merchant_id",
                id,
                "group_id",
                &groups,
            )
            .await?;
        }
        Ok(())
    }

    /// Replaces the link rows of `owner` in `table` with `targets`.
    async fn links(
        &mut self,
        table: &'static str,
        owner_column: &'static str,
        owner: i64,
        target_column: &'static str,
        targets: &[i64],
    ) -> Result<(), StoreError> {
        // Table and column names are constants of this module, never input.
        sqlx::query(&format!("DELETE FROM {table} WHERE {owner_column} = $1"))
            .bind(owner)
            .execute(&mut *self.conn)
            .await?;
        let insert =
            format!("INSERT INTO {table} ({owner_column}, {target_column}) VALUES ($1, $2)");
        for target in targets {
            sqlx::query(&insert)
                .bind(owner)
                .bind(*target)
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    async fn terminals(
        &mut self,
        new: &[TerminalRecord],
        old: &[TerminalRecord],
        kek: &Kek,
    ) -> Result<(), StoreError> {
        let stored: HashMap<&TerminalCode, &TerminalRecord> =
            old.iter().map(|r| (&r.terminal_id, r)).collect();
        for record in new {
            let merchant = resolve(&self.ids.merchants, &record.merchant)?.get();
            let sealed = seal(kek, record)?;
            let id = match self.noted(
                record.terminal_id.as_str(),
                change(&record.terminal_id, record, &stored, &self.ids.terminals),
            ) {
                Change::Same => continue,
                Change::Insert => {
                    let id = sqlx::query_scalar::<_, i64>("INSERT INTO terminals (terminal_id, ksi, merchant_id, status, tmk_sealed) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                        .bind(record.terminal_id.as_str())
                        .bind(record.ksi.as_str())
                        .bind(merchant)
                        .bind(terminal_status_text(record.status))
                        .bind(sealed)
                        .fetch_one(&mut *self.conn)
                        .await?;
                    self.ids
                        .terminals
                        .insert(record.terminal_id, TerminalRowId::new(id));
                    self.count.inserted += 1;
                    id
                }
                Change::Update(id) => {
                    sqlx::query("UPDATE terminals SET ksi = $1, merchant_id = $2, status = $3, tmk_sealed = $4 WHERE id = $5")
                        .bind(record.ksi.as_str())
                        .bind(merchant)
                        .bind(terminal_status_text(record.status))
                        .bind(sealed)
                        .bind(id.get())
                        .execute(&mut *self.conn)
                        .await?;
                    self.count.updated += 1;
                    id.get()
                }
            };
            let groups = resolve_all(&self.ids.terminal_groups, &record.groups, |g| g.get())?;
            self.links(
                "terminal_group_members",
                "terminal_id",
                id,
                "group_id",
                &groups,
            )
            .await?;
        }
        Ok(())
    }

    async fn members(
        &mut self,
        new: &[MemberRecord],
        old: &[MemberRecord],
    ) -> Result<(), StoreError> {
        let stored = by_code(old, |r| &r.code);
        let mut fresh = Vec::new();
        for record in new {
            let id = match self.noted(
                record.code.as_str(),
                change(&record.code, record, &stored, &self.ids.members),
            ) {
                Change::Same => continue,
                Change::Insert => {
                    fresh.push(record);
                    continue;
                }
                Change::Update(id) => {
                    sqlx::query(
                        "UPDATE members SET phone = $1, locale = $2, birth_date = $3, \
                         joined_on = $4, referred_by = $5 WHERE id = $6",
                    )
                    .bind(record.phone.as_ref().map(Phone::as_str))
                    .bind(record.locale.as_str())
                    .bind(record.birth_date.map(|date| date.to_string()))
                    .bind(record.joined_on.map(|date| date.to_string()))
                    .bind(record.referred_by.as_ref().map(Code::as_str))
                    .bind(id.get())
                    .execute(&mut *self.conn)
                    .await?;
                    self.count.updated += 1;
                    id.get()
                }
            };
            let groups = resolve_all(&self.ids.member_groups, &record.groups, |g| g.get())?;
            self.links("member_group_members", "member_id", id, "group_id", &groups)
                .await?;
        }
        for chunk in fresh.chunks(BULK_ROWS) {
            let mut query = QueryBuilder::new(
                "INSERT INTO members (code, phone, locale, birth_date, joined_on, referred_by) ",
            );
            query.push_values(chunk, |mut row, record| {
                row.push_bind(record.code.as_str())
                    .push_bind(record.phone.as_ref().map(Phone::as_str))
                    .push_bind(record.locale.as_str())
                    .push_bind(record.birth_date.map(|date| date.to_string()))
                    .push_bind(record.joined_on.map(|date| date.to_string()))
                    .push_bind(record.referred_by.as_ref().map(Code::as_str));
            });
            query
                .build(Backend::of_conn(self.conn))
                .execute(&mut *self.conn)
                .await?;
            let codes = chunk.iter().map(|record| &record.code);
            let ids = self.ids_of("members", codes).await?;
            let mut links = Vec::new();
            for (record, id) in chunk.iter().zip(&ids) {
                self.ids
                    .members
                    .insert(record.code.clone(), MemberId::new(*id));
                let groups = resolve_all(&self.ids.member_groups, &record.groups, |g| g.get())?;
                links.extend(groups.into_iter().map(|group| (*id, group)));
            }
            self.count.inserted += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            for pairs in links.chunks(BULK_ROWS) {
                let mut query =
                    QueryBuilder::new("INSERT INTO member_group_members (member_id, group_id) ");
                query.push_values(pairs, |mut row, (member, group)| {
                    row.push_bind(*member).push_bind(*group);
                });
                query
                    .build(Backend::of_conn(self.conn))
                    .execute(&mut *self.conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// The row ids of `codes` in `table` (just inserted), in the order of `codes`.
    async fn ids_of<'c>(
        &mut self,
        table: &'static str,
        codes: impl Iterator<Item = &'c Code>,
    ) -> Result<Vec<i64>, StoreError> {
        let codes: Vec<String> = codes.map(|code| code.as_str().to_owned()).collect();
        let select = Select::Named(&codes);
        // Table names are constants of this module, never input.
        let sql = format!(
            "SELECT id, code FROM {table} WHERE {}",
            select.filter("code")
        );
        let mut found: HashMap<String, i64> = HashMap::with_capacity(codes.len());
        for row in select.query(&sql).fetch_all(&mut *self.conn).await? {
            found.insert(row.try_get("code")?, row.try_get("id")?);
        }
        codes
            .iter()
            .map(|code| {
                found
                    .get(code)
                    .copied()
                    .ok_or_else(|| corrupt(table, 0, format_args!("{code} not found after insert")))
            })
            .collect()
    }

    async fn cards(&mut self, new: &[CardRecord], old: &[CardRecord]) -> Result<(), StoreError> {
        let stored = by_code(old, |r| &r.code);
        let mut fresh = Vec::new();
        for record in new {
            let member = resolve(&self.ids.members, &record.member)?.get();
            let tier = match &record.tier {
                Some(code) => Some(resolve(&self.ids.tiers, code)?.get()),
                None => None,
            };
            match self.noted(
                record.code.as_str(),
                change(&record.code, record, &stored, &self.ids.cards),
            ) {
                Change::Same => {}
                Change::Insert => fresh.push((record, member, tier)),
                Change::Update(id) => {
                    sqlx::query("UPDATE cards SET member_id = $1, pan_token = $2, bin = $3, last4 = $4, status = $5, expiry_year = $6, expiry_month = $7, tier_id = $8 WHERE id = $9")
                        .bind(member)
                        .bind(record.token.as_bytes().as_slice())
                        .bind(ascii(&record.bin))
                        .bind(ascii(&record.last4))
                        .bind(card_status_text(record.status))
                        .bind(i64::from(record.expiry.year()))
                        .bind(i64::from(record.expiry.month()))
                        .bind(tier)
                        .bind(id.get())
                        .execute(&mut *self.conn)
                        .await?;
                    self.count.updated += 1;
                }
            }
        }
        for chunk in fresh.chunks(BULK_ROWS) {
            let mut query = QueryBuilder::new("INSERT INTO cards (code, member_id, pan_token, bin, last4, status, expiry_year,  expiry_month, tier_id) ");
            query.push_values(chunk, |mut row, (record, member, tier)| {
                row.push_bind(record.code.as_str())
                    .push_bind(*member)
                    .push_bind(record.token.as_bytes().as_slice())
                    .push_bind(ascii(&record.bin))
                    .push_bind(ascii(&record.last4))
                    .push_bind(card_status_text(record.status))
                    .push_bind(i64::from(record.expiry.year()))
                    .push_bind(i64::from(record.expiry.month()))
                    .push_bind(*tier);
            });
            query
                .build(Backend::of_conn(self.conn))
                .execute(&mut *self.conn)
                .await?;
            let ids = self
                .ids_of("cards", chunk.iter().map(|(r, _, _)| &r.code))
                .await?;
            for ((record, _, _), id) in chunk.iter().zip(ids) {
                self.ids.cards.insert(record.code.clone(), CardId::new(id));
            }
            self.count.inserted += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        }
        Ok(())
    }

    async fn rules(&mut self, new: &[RuleRecord], old: &[RuleRecord]) -> Result<(), StoreError> {
        let stored = by_code(old, |r| &r.code);
        for record in new {
            let id = match self.noted(
                record.code.as_str(),
                change(&record.code, record, &stored, &self.ids.rules),
            ) {
                Change::Same => continue,
                Change::Insert => {
                    // A placeholder row claims the id; `rule_row` writes every column.
                    let id = sqlx::query_scalar::<_, i64>("INSERT INTO rules (code, name, fixed_rials, basket_rials_min, weekdays) VALUES ($1, '', 0, 0, 127) RETURNING id")
                        .bind(record.code.as_str())
                        .fetch_one(&mut *self.conn)
                        .await?;
                    self.ids.rules.insert(record.code.clone(), RuleId::new(id));
                    self.count.inserted += 1;
                    id
                }
                Change::Update(id) => {
                    self.count.updated += 1;
                    id.get()
                }
            };
            self.rule_row(id, &record.terms).await?;
            self.rule_eligibility(id, &record.eligibility).await?;
        }
        Ok(())
    }

    async fn rule_row(&mut self, id: i64, terms: &RuleTerms) -> Result<(), StoreError> {
        let (percent, fixed) = match terms.kind {
            RuleKind::Percent(rate) => (Some(rate.to_string()), None),
            RuleKind::Fixed(amount) => (None, Some(amount.get())),
        };
        let window = &terms.window;
        sqlx::query(
            "UPDATE rules SET name = $1, percent = $2, fixed_rials = $3, basket_rials_min = $4,
             discount_rials_max = $5, valid_from = $6, valid_until = $7, weekdays = $8,
             minute_from = $9, minute_until = $10, budget_rials = $11, member_daily_uses_max = $12
             WHERE id = $13",
        )
        .bind(&terms.name)
        .bind(percent)
        .bind(fixed)
        .bind(terms.basket_rials_min.get())
        .bind(terms.discount_rials_max.map(Rials::get))
        .bind(window.valid_from.map(|date| date.to_string()))
        .bind(window.valid_until.map(|date| date.to_string()))
        .bind(i64::from(window.weekdays.mask()))
        .bind(window.hours.map(|hours| i64::from(hours.from())))
        .bind(window.hours.map(|hours| i64::from(hours.until())))
        .bind(terms.budget_rials.map(Rials::get))
        .bind(terms.member_daily_uses_max.map(i64::from))
        .bind(id)
        .execute(&mut *self.conn)
        .await?;
        Ok(())
    }

    async fn rule_eligibility(
        &mut self,
        id: i64,
        who: &Eligibility<Code, Code, Code>,
    ) -> Result<(), StoreError> {
        let merchants = resolve_all(&self.ids.merchants, &who.merchants, |m| m.get())?;
        self.links("rule_merchants", "rule_id", id, "merchant_id", &merchants)
            .await?;
        let tiers = resolve_all(&self.ids.tiers, &who.tiers, |t| t.get())?;
        self.links("rule_tiers", "rule_id", id, "tier_id", &tiers)
            .await?;
        let mut groups = resolve_all(&self.ids.merchant_groups, &who.merchant_groups, |g| g.get())?;
        groups.extend(resolve_all(
            &self.ids.member_groups,
            &who.member_groups,
            |g| g.get(),
        )?);
        groups.extend(resolve_all(
            &self.ids.terminal_groups,
            &who.terminal_groups,
            |g| g.get(),
        )?);
        self.links("rule_groups", "rule_id", id, "group_id", &groups)
            .await?;
        sqlx::query("DELETE FROM rule_bins WHERE rule_id = $1")
            .bind(id)
            .execute(&mut *self.conn)
            .await?;
        for range in &who.bins {
            sqlx::query("INSERT INTO rule_bins (rule_id, bin_low, bin_high) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(ascii(range.low()))
                .bind(ascii(range.high()))
                .execute(&mut *self.conn)
                .await?;
        }
        Ok(())
    }

    async fn openings(
        &mut self,
        data: &ReferenceData,
        accounts: &Accounts,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        // Accounts that exist hold the same opening (checked before writing): skipped.
        let mut club = Vec::new();
        for opening in &data.club_openings {
            let card = resolve(&self.ids.cards, &opening.card)?.get();
            if !accounts.club.contains(&card) {
                club.push((card, opening.amount.get()));
            }
        }
        for chunk in club.chunks(BULK_ROWS) {
            let mut query =
                QueryBuilder::new("INSERT INTO club_balances (card_id, ledger_rials, held_rials) ");
            query.push_values(chunk, |mut row, (card, amount)| {
                row.push_bind(*card).push_bind(*amount).push_bind(0_i64);
            });
            query
                .build(Backend::of_conn(self.conn))
                .execute(&mut *self.conn)
                .await?;
            let moves: Vec<Movement> = chunk
                .iter()
                .map(|(card, amount)| (*card, None, "club", *amount))
                .collect();
            self.movements(&moves, now).await?;
        }
        let mut store = Vec::new();
        for opening in &data.store_credit_openings {
            let card = resolve(&self.ids.cards, &opening.card)?.get();
            let merchant = resolve(&self.ids.merchants, &opening.merchant)?.get();
            if !accounts.store_credit.contains(&(card, merchant)) {
                let expires = opening.expires_at.map(UnixMillis::get);
                store.push((card, merchant, opening.amount.get(), expires));
            }
        }
        for chunk in store.chunks(BULK_ROWS) {
            let mut query = QueryBuilder::new("INSERT INTO store_credit_accounts (card_id, merchant_id, ledger_rials, held_rials) ");
            query.push_values(chunk, |mut row, (card, merchant, amount, _)| {
                row.push_bind(*card)
                    .push_bind(*merchant)
                    .push_bind(*amount)
                    .push_bind(0_i64);
            });
            query
                .build(Backend::of_conn(self.conn))
                .execute(&mut *self.conn)
                .await?;
            let mut query = QueryBuilder::new("INSERT INTO store_credit_lots (card_id, merchant_id, remaining_rials, original_rials,  expires_at_ms, source) ");
            query.push_values(chunk, |mut row, (card, merchant, amount, expires)| {
                row.push_bind(*card)
                    .push_bind(*merchant)
                    .push_bind(*amount)
                    .push_bind(*amount)
                    .push_bind(*expires)
                    .push_bind("opening");
            });
            query
                .build(Backend::of_conn(self.conn))
                .execute(&mut *self.conn)
                .await?;
            let moves: Vec<Movement> = chunk
                .iter()
                .map(|(card, merchant, amount, _)| {
                    (*card, Some(*merchant), "store_credit", *amount)
                })
                .collect();
            self.movements(&moves, now).await?;
        }
        Ok(())
    }

    /// The opening movements of `moves` (card, merchant, account, amount), in one statement.
    async fn movements(&mut self, moves: &[Movement], now: UnixMillis) -> Result<(), StoreError> {
        if moves.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::new("INSERT INTO balance_movements (card_id, merchant_id, account, delta_rials, kind, at_ms) ");
        query.push_values(moves, |mut row, (card, merchant, account, amount)| {
            row.push_bind(*card)
                .push_bind(*merchant)
                .push_bind(*account)
                .push_bind(*amount)
                .push_bind("opening")
                .push_bind(now.get());
        });
        query
            .build(Backend::of_conn(self.conn))
            .execute(&mut *self.conn)
            .await?;
        self.count.openings += u64::try_from(moves.len()).unwrap_or(u64::MAX);
        Ok(())
    }
}

/// An opening's movement: card, merchant (store credit), account and amount.
type Movement = (i64, Option<i64>, &'static str, i64);

fn seal(kek: &Kek, record: &TerminalRecord) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0_u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    kek.seal_tmk(&record.terminal_id, &record.tmk, nonce)
        .map_err(|source| StoreError::Sealed { id: 0, source })
}

fn resolve<K, Id>(ids: &crate::fast_hash::CodeMap<K, Id>, key: &K) -> Result<Id, StoreError>
where
    K: std::hash::Hash + Eq + fmt::Debug,
    Id: Copy,
{
    // Validation resolved every reference before saving, so a miss is a bug in the caller.
    ids.get(key).copied().ok_or_else(|| StoreError::Corrupt {
        table: "import",
        id: 0,
        reason: format!("unresolved reference {key:?}"),
    })
}

fn resolve_all<Id: Copy>(
    ids: &crate::fast_hash::CodeMap<Code, Id>,
    codes: &[Code],
    raw: impl Fn(Id) -> i64,
) -> Result<Vec<i64>, StoreError> {
    codes
        .iter()
        .map(|code| resolve(ids, code).map(&raw))
        .collect()
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn merchant_status_text(status: MerchantStatus) -> &'static str {
    match status {
        MerchantStatus::Active => "active",
        MerchantStatus::Inactive => "inactive",
    }
}

fn terminal_status_text(status: TerminalStatus) -> &'static str {
    match status {
        TerminalStatus::Active => "active",
        TerminalStatus::Inactive => "inactive",
    }
}

fn card_status_text(status: CardStatus) -> &'static str {
    match status {
        CardStatus::Active => "active",
        CardStatus::Blocked => "blocked",
    }
}

/// Reads every reference record, id and opening inside the caller's transaction.
async fn read_all(conn: &mut Conn, kek: &Kek) -> Result<LoadedReference, StoreError> {
    let mut out = read_selected(conn, kek, Select::All, &mut ReadRows::default(), None).await?;
    let cards: Names = out
        .ids
        .cards
        .iter()
        .map(|(code, id)| (id.get(), code.clone()))
        .collect();
    let merchants: Names = out
        .ids
        .merchants
        .iter()
        .map(|(code, id)| (id.get(), code.clone()))
        .collect();
    read_openings(conn, &mut out, &cards, &merchants).await?;
    Ok(out)
}

/// The records `select` takes of each kind, with every tier and group; no openings.
/// A whole read ([`Select::All`]) also gives each member's and card's row ids in `rows`, and
/// reads them through `direct` when given (one that sees what `conn` sees).
async fn read_selected(
    conn: &mut Conn,
    kek: &Kek,
    select: Select<'_>,
    rows: &mut ReadRows,
    direct: Option<&Direct>,
) -> Result<LoadedReference, StoreError> {
    let mut out = read_sections(conn, kek, |_| select, rows, direct).await?;
    if let Select::Named(_) = select {
        read_referrer_ids(conn, &mut out).await?;
        out.previous_keys = read_previous_keys(conn, kek, select).await?;
    }
    Ok(out)
}

/// Every tier and group, and the records `pick` selects of each other section (by its name in
/// the import file), with the reference version.
async fn read_sections<'a>(
    conn: &mut Conn,
    kek: &Kek,
    pick: impl Fn(&str) -> Select<'a>,
    rows: &mut ReadRows,
    direct: Option<&Direct>,
) -> Result<LoadedReference, StoreError> {
    let mut out = read_version(conn).await?;
    let tiers = read_tiers(conn, &mut out).await?;
    let groups = read_groups(conn, &mut out).await?;
    read_merchants(conn, &mut out, &groups, pick("merchants")).await?;
    read_terminals(conn, &mut out, &groups, kek, pick("terminals")).await?;
    let (members, cards) = (pick("members"), pick("cards"));
    read_members(conn, direct, &mut out, &mut rows.members, &groups, members).await?;
    read_cards(conn, direct, &mut out, &mut rows.cards, &tiers, cards).await?;
    read_rules(conn, &mut out, &groups, &tiers, pick("rules")).await?;
    Ok(out)
}

/// The reference version alone, in an otherwise empty [`LoadedReference`].
async fn read_version(conn: &mut Conn) -> Result<LoadedReference, StoreError> {
    let mut out = LoadedReference::default();
    let version = sqlx::query("SELECT version FROM reference_meta WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = version {
        let version: i64 = row.try_get(0)?;
        out.version = u64::try_from(version)
            .map_err(|_| corrupt("reference_meta", 1, Invalid::new("negative version")))?;
    }
    Ok(out)
}

/// The row ids of the members that loaded members name as their referrer, which a partial
/// read did not take.
async fn read_referrer_ids(conn: &mut Conn, out: &mut LoadedReference) -> Result<(), StoreError> {
    let missing: Vec<String> = out
        .data
        .members
        .iter()
        .filter_map(|member| member.referred_by.as_ref())
        .filter(|code| !out.ids.members.contains_key(*code))
        .map(|code| code.as_str().to_owned())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let select = Select::Named(&missing);
    let sql = format!(
        "SELECT id, code FROM members WHERE {}",
        select.filter("code")
    );
    // Streamed: a million members are never held as rows at once.
    let mut rows = select.query(&sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let id: i64 = row.try_get("id")?;
        let code = column(&row, "members", id, "code", Code::parse)?;
        out.ids.members.insert(code, MemberId::new(id));
    }
    Ok(())
}

/// Codes by row id, for turning stored references back into codes.
type Names = HashMap<i64, Code>;

/// Group codes by row id, with their kind.
type GroupNames = HashMap<i64, (String, Code)>;

fn corrupt(table: &'static str, id: i64, reason: impl fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        id,
        reason: reason.to_string(),
    }
}

/// A column that must pass a domain constructor.
fn column<T>(
    row: &DbRow,
    table: &'static str,
    id: i64,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, Invalid>,
) -> Result<T, StoreError> {
    let text: String = row.try_get(name)?;
    parse(&text).map_err(|invalid| corrupt(table, id, format_args!("{name} {invalid}")))
}

fn name_of(names: &Names, table: &'static str, id: i64, target: i64) -> Result<Code, StoreError> {
    names
        .get(&target)
        .cloned()
        .ok_or_else(|| corrupt(table, id, format_args!("dangling reference {target}")))
}

fn small<T: TryFrom<i64>>(
    row: &DbRow,
    table: &'static str,
    id: i64,
    name: &str,
) -> Result<T, StoreError> {
    let value: i64 = row.try_get(name)?;
    T::try_from(value).map_err(|_| corrupt(table, id, format_args!("{name} out of range")))
}

fn amount(row: &DbRow, table: &'static str, id: i64, name: &str) -> Result<Rials, StoreError> {
    let value: i64 = row.try_get(name)?;
    Rials::new(value).ok_or_else(|| corrupt(table, id, format_args!("{name} out of range")))
}

fn optional_amount(
    row: &DbRow,
    table: &'static str,
    id: i64,
    name: &str,
) -> Result<Option<Rials>, StoreError> {
    let value: Option<i64> = row.try_get(name)?;
    value
        .map(|v| {
            Rials::new(v).ok_or_else(|| corrupt(table, id, format_args!("{name} out of range")))
        })
        .transpose()
}

/// Owner id → sorted codes of its link targets, from a two-column link query narrowed by
/// `select`'s parameters.
async fn links(
    conn: &mut Conn,
    sql: &str,
    select: Select<'_>,
    names: &Names,
) -> Result<HashMap<i64, Vec<Code>>, StoreError> {
    let mut out: HashMap<i64, Vec<Code>> = HashMap::new();
    let mut rows = select.query(sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let owner: i64 = row.try_get(0)?;
        let target: i64 = row.try_get(1)?;
        out.entry(owner)
            .or_default()
            .push(name_of(names, "links", owner, target)?);
    }
    for list in out.values_mut() {
        list.sort_unstable();
    }
    Ok(out)
}

fn group_names(groups: &GroupNames, kind: &str) -> Names {
    groups
        .iter()
        .filter(|(_, (k, _))| k == kind)
        .map(|(id, (_, code))| (*id, code.clone()))
        .collect()
}

async fn read_tiers(conn: &mut Conn, out: &mut LoadedReference) -> Result<Names, StoreError> {
    let mut names = Names::new();
    for row in sqlx::query(
        "SELECT id, code, name, cashback_rate, rank, spend_rials_min, purchases_min FROM tiers \
         ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        let id: i64 = row.try_get("id")?;
        let code = column(&row, "tiers", id, "code", Code::parse)?;
        let record = TierRecord {
            code: code.clone(),
            name: row.try_get("name")?,
            cashback_rate: column(&row, "tiers", id, "cashback_rate", Percent::parse)?,
            rank: small(&row, "tiers", id, "rank")?,
            spend_rials_min: optional_amount(&row, "tiers", id, "spend_rials_min")?,
            purchases_min: row
                .try_get::<Option<i64>, _>("purchases_min")?
                .map(|count| {
                    u32::try_from(count)
                        .map_err(|_| corrupt("tiers", id, "purchases_min out of range"))
                })
                .transpose()?,
        };
        out.ids.tiers.insert(code.clone(), TierId::new(id));
        names.insert(id, code);
        out.data.tiers.push(record);
    }
    Ok(names)
}

async fn read_groups(conn: &mut Conn, out: &mut LoadedReference) -> Result<GroupNames, StoreError> {
    let mut names = GroupNames::new();
    for row in sqlx::query("SELECT id, kind, code, name FROM groups ORDER BY id")
        .fetch_all(&mut *conn)
        .await?
    {
        let id: i64 = row.try_get("id")?;
        let kind: String = row.try_get("kind")?;
        let code = column(&row, "groups", id, "code", Code::parse)?;
        let record = GroupRecord {
            code: code.clone(),
            name: row.try_get("name")?,
        };
        let (list, ids) = match kind.as_str() {
            "merchant" => (&mut out.data.merchant_groups, &mut out.ids.merchant_groups),
            "member" => (&mut out.data.member_groups, &mut out.ids.member_groups),
            "terminal" => (&mut out.data.terminal_groups, &mut out.ids.terminal_groups),
            _ => return Err(corrupt("groups", id, "unknown kind")),
        };
        list.push(record);
        ids.insert(code.clone(), GroupId::new(id));
        names.insert(id, (kind, code));
    }
    Ok(names)
}

async fn read_merchants(
    conn: &mut Conn,
    out: &mut LoadedReference,
    groups: &GroupNames,
    select: Select<'_>,
) -> Result<Names, StoreError> {
    let group_codes = group_names(groups, "merchant");
    let sql = format!(
        "SELECT merchant_id, group_id FROM merchant_group_members WHERE {}",
        select.owners("merchant_id", "merchants", "code")
    );
    let mut memberships = links(conn, &sql, select, &group_codes).await?;
    let mut names = Names::new();
    let sql = format!(
        "SELECT * FROM merchants WHERE {}{}",
        select.filter("code"),
        select.order("id", "code")
    );
    let rows = select.query(&sql).fetch_all(&mut *conn).await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let table = "merchants";
        let code = column(&row, table, id, "code", Code::parse)?;
        let fee = FeeSchedule::new(
            column(&row, table, id, "fee_rate", Percent::parse)?,
            amount(&row, table, id, "fee_rials_min")?,
            amount(&row, table, id, "fee_rials_max")?,
        )
        .map_err(|invalid| corrupt(table, id, invalid))?;
        let profile = MerchantProfile {
            name: row.try_get("name")?,
            iban: column(&row, table, id, "iban", Iban::parse)?,
            status: column(&row, table, id, "status", |s| match s {
                "active" => Ok(MerchantStatus::Active),
                "inactive" => Ok(MerchantStatus::Inactive),
                _ => Err(Invalid::new("unknown")),
            })?,
            currency: CurrencyCode::new(small(&row, table, id, "currency")?)
                .map_err(|e| corrupt(table, id, e))?,
            fee,
            amount_rials_max: amount(&row, table, id, "amount_rials_max")?,
            cashback_allowed: row.try_get::<i64, _>("cashback_allowed")? != 0,
            credit_expiry_days: small(&row, table, id, "credit_expiry_days")?,
            utc_offset_minutes: small(&row, table, id, "utc_offset_minutes")?,
        };
        let groups = memberships.remove(&id).unwrap_or_default();
        out.ids.merchants.insert(code.clone(), MerchantId::new(id));
        names.insert(id, code.clone());
        out.data.merchants.push(MerchantRecord {
            code,
            profile,
            groups,
        });
    }
    Ok(names)
}

async fn read_terminals(
    conn: &mut Conn,
    out: &mut LoadedReference,
    groups: &GroupNames,
    kek: &Kek,
    select: Select<'_>,
) -> Result<(), StoreError> {
    let group_codes = group_names(groups, "terminal");
    let sql = format!(
        "SELECT terminal_id, group_id FROM terminal_group_members WHERE {}",
        select.owners("terminal_id", "terminals", "terminal_id")
    );
    let mut memberships = links(conn, &sql, select, &group_codes).await?;
    // The merchant's code comes by a join, so a partial read needs no table of every merchant.
    let sql = format!(
        "SELECT t.*, m.code AS merchant_code FROM terminals t JOIN merchants m \
         ON m.id = t.merchant_id WHERE {}{}",
        select.filter("t.terminal_id"),
        select.order("t.id", "t.terminal_id")
    );
    let rows = select.query(&sql).fetch_all(&mut *conn).await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let table = "terminals";
        let terminal_id = column(&row, table, id, "terminal_id", |s| {
            TerminalCode::parse(s.as_bytes())
        })?;
        let sealed: Vec<u8> = row.try_get("tmk_sealed")?;
        let tmk: Tmk = kek
            .open_tmk(&terminal_id, &sealed)
            .map_err(|source| StoreError::Sealed { id, source })?;
        let record = TerminalRecord {
            terminal_id,
            ksi: column(&row, table, id, "ksi", |s| KeySetId::parse(s.as_bytes()))?,
            merchant: column(&row, table, id, "merchant_code", Code::parse)?,
            status: column(&row, table, id, "status", |s| match s {
                "active" => Ok(TerminalStatus::Active),
                "inactive" => Ok(TerminalStatus::Inactive),
                _ => Err(Invalid::new("unknown")),
            })?,
            tmk,
            groups: memberships.remove(&id).unwrap_or_default(),
        };
        out.ids
            .terminals
            .insert(terminal_id, TerminalRowId::new(id));
        let merchant_id: i64 = row.try_get("merchant_id")?;
        out.ids
            .merchants
            .insert(record.merchant.clone(), MerchantId::new(merchant_id));
        out.data.terminals.push(record);
    }
    Ok(())
}

/// A `members` row as packed: id, code, phone, locale, birth date, joined on, referrer.
#[derive(Deserialize)]
///
/// The optional columns are borrowed as plain `&str` (serde cannot borrow an `Option<Cow>`, and
/// allocating one per column cost a few million allocations at start): a phone, a date or a
/// code never holds a character JSON escapes, so one that does is refused as a bad row.
struct MemberRow<'a>(
    i64,
    #[serde(borrow)] Cow<'a, str>,
    Option<&'a str>,
    #[serde(borrow)] Cow<'a, str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

async fn read_members(
    conn: &mut Conn,
    direct: Option<&Direct>,
    out: &mut LoadedReference,
    rows_read: &mut Vec<MemberId>,
    groups: &GroupNames,
    select: Select<'_>,
) -> Result<(), StoreError> {
    let group_codes = group_names(groups, "member");
    let sql = format!(
        "SELECT member_id, group_id FROM member_group_members WHERE {}",
        select.members("member_id")
    );
    let mut memberships = links(conn, &sql, select, &group_codes).await?;
    let from = format!("FROM members WHERE {}", select.members("id"));
    let packing = Packing {
        table: "members",
        columns: &[
            "id",
            "code",
            "phone",
            "locale",
            "birth_date",
            "joined_on",
            "referred_by",
        ],
        from: &from,
        key: select.key("id", "code"),
        ordered: true,
    };
    if select.whole() {
        let rows = packed::rows_at_most(conn, &packing).await?;
        out.ids.members.reserve(rows);
        out.data.members.reserve(rows);
        rows_read.reserve(rows);
    }
    packed::read(
        conn,
        &packing,
        select.whole(),
        direct,
        |sql| select.query(sql),
        |row| {
            let MemberRow(id, code, phone, locale, birth_date, joined_on, referred_by) =
                row.parse()?;
            let corrupt = |name: &str, invalid: Invalid| {
                corrupt("members", id, format_args!("{name} {invalid}"))
            };
            let code = Code::parse(&code).map_err(|e| corrupt("code", e))?;
            let phone = phone
                .map(Phone::parse)
                .transpose()
                .map_err(|e| corrupt("phone", e))?;
            let locale = Locale::parse(&locale).map_err(|e| corrupt("locale", e))?;
            let date = |name: &str, text: Option<&str>| {
                text.map(CivilDate::parse)
                    .transpose()
                    .map_err(|e| corrupt(name, e))
            };
            let birth_date = date("birth_date", birth_date)?;
            let joined_on = date("joined_on", joined_on)?;
            let referred_by = referred_by
                .map(Code::parse)
                .transpose()
                .map_err(|e| corrupt("referred_by", e))?;
            out.ids.members.insert(code.clone(), MemberId::new(id));
            if select.whole() {
                rows_read.push(MemberId::new(id));
            }
            out.data.members.push(MemberRecord {
                code,
                groups: memberships.remove(&id).unwrap_or_default(),
                phone,
                locale,
                birth_date,
                joined_on,
                referred_by,
            });
            Ok::<(), StoreError>(())
        },
    )
    .await
}

/// A `cards` row as packed, with its member's code.
#[derive(Deserialize)]
struct CardRow<'a> {
    id: i64,
    #[serde(borrow)]
    code: Cow<'a, str>,
    #[serde(borrow)]
    member_code: Cow<'a, str>,
    member_id: i64,
    #[serde(borrow)]
    pan_token: Cow<'a, str>,
    #[serde(borrow)]
    bin: Cow<'a, str>,
    #[serde(borrow)]
    last4: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    expiry_year: i64,
    expiry_month: i64,
    tier_id: Option<i64>,
}

async fn read_cards(
    conn: &mut Conn,
    direct: Option<&Direct>,
    out: &mut LoadedReference,
    rows_read: &mut Vec<(CardId, MemberId)>,
    tiers: &Names,
    select: Select<'_>,
) -> Result<(), StoreError> {
    // The member's code comes by a join, so a partial read needs no table of every member.
    let condition = match select {
        Select::Page { .. } => select.owners("c.id", "cards", "code"),
        Select::All | Select::Named(_) => select.members("c.member_id"),
    };
    let from = format!("FROM cards c JOIN members m ON m.id = c.member_id WHERE {condition}");
    let token = packed::hex(Backend::of_conn(conn), "c.pan_token");
    let packing = Packing {
        table: "cards",
        columns: &[
            "c.id",
            "c.code",
            "m.code",
            "c.member_id",
            &token,
            "c.bin",
            "c.last4",
            "c.status",
            "c.expiry_year",
            "c.expiry_month",
            "c.tier_id",
        ],
        from: &from,
        key: select.key("c.id", "c.code"),
        ordered: true,
    };
    if select.whole() {
        let rows = packed::rows_at_most(conn, &packing).await?;
        out.ids.cards.reserve(rows);
        out.data.cards.reserve(rows);
        rows_read.reserve(rows);
    }
    packed::read(
        conn,
        &packing,
        select.whole(),
        direct,
        |sql| select.query(sql),
        |row| {
            let row: CardRow<'_> = row.parse()?;
            let record = card_record(&row, tiers)?;
            out.ids
                .cards
                .insert(record.code.clone(), CardId::new(row.id));
            let member = MemberId::new(row.member_id);
            if select.whole() {
                // A whole read of the cards follows one of the members in the same
                // transaction (`read_sections`), and the join found this one: it is
                // there already, no lookup.
                debug_assert_eq!(out.ids.members.get(&record.member), Some(&member));
                rows_read.push((CardId::new(row.id), member));
            } else if !out.ids.members.contains_key(&record.member) {
                out.ids.members.insert(record.member.clone(), member);
            }
            out.data.cards.push(record);
            Ok::<(), StoreError>(())
        },
    )
    .await
}

fn card_record(row: &CardRow<'_>, tiers: &Names) -> Result<CardRecord, StoreError> {
    let (table, id) = ("cards", row.id);
    let field = |name: &str, invalid: Invalid| corrupt(table, id, format_args!("{name} {invalid}"));
    let range = |name: &str| corrupt(table, id, format_args!("{name} out of range"));
    let year = u16::try_from(row.expiry_year).map_err(|_| range("expiry_year"))?;
    let month = u8::try_from(row.expiry_month).map_err(|_| range("expiry_month"))?;
    let token = packed::unhex::<32>(&row.pan_token)
        .ok_or_else(|| corrupt(table, id, "pan_token is not 32 bytes"))?;
    Ok(CardRecord {
        code: Code::parse(&row.code).map_err(|e| field("code", e))?,
        member: Code::parse(&row.member_code).map_err(|e| field("member_code", e))?,
        token: PanToken::from_bytes(token),
        bin: digits::<6>(&row.bin).map_err(|e| field("bin", e))?,
        last4: digits::<4>(&row.last4).map_err(|e| field("last4", e))?,
        status: match row.status.as_ref() {
            "active" => CardStatus::Active,
            "blocked" => CardStatus::Blocked,
            _ => return Err(field("status", Invalid::new("unknown"))),
        },
        expiry: CardExpiry::new(year, month).map_err(|e| corrupt(table, id, e))?,
        tier: row
            .tier_id
            .map(|tier| name_of(tiers, table, id, tier))
            .transpose()?,
    })
}

fn digits<const N: usize>(text: &str) -> Result<[u8; N], Invalid> {
    let bytes: [u8; N] = text
        .as_bytes()
        .try_into()
        .map_err(|_| Invalid::new("has the wrong length"))?;
    if bytes.iter().all(u8::is_ascii_digit) {
        Ok(bytes)
    } else {
        Err(Invalid::new("must be digits"))
    }
}

async fn read_rules(
    conn: &mut Conn,
    out: &mut LoadedReference,
    groups: &GroupNames,
    tiers: &Names,
    select: Select<'_>,
) -> Result<(), StoreError> {
    let owners = select.owners("rule_id", "rules", "code");
    // The merchants' codes come by a join, so a partial read needs no table of every merchant.
    let sql = format!(
        "SELECT r.rule_id, m.id, m.code FROM rule_merchants r JOIN merchants m \
         ON m.id = r.merchant_id WHERE {}",
        select.owners("r.rule_id", "rules", "code")
    );
    let mut rule_merchants: HashMap<i64, Vec<Code>> = HashMap::new();
    for row in select.query(&sql).fetch_all(&mut *conn).await? {
        let rule: i64 = row.try_get(0)?;
        let merchant: i64 = row.try_get(1)?;
        let code: String = row.try_get(2)?;
        let code = Code::parse(&code).map_err(|e| corrupt("merchants", merchant, e))?;
        out.ids
            .merchants
            .insert(code.clone(), MerchantId::new(merchant));
        rule_merchants.entry(rule).or_default().push(code);
    }
    for list in rule_merchants.values_mut() {
        list.sort_unstable();
    }
    let sql = format!("SELECT rule_id, tier_id FROM rule_tiers WHERE {owners}");
    let mut rule_tiers = links(conn, &sql, select, tiers).await?;
    let mut rule_groups: HashMap<i64, Vec<i64>> = HashMap::new();
    let sql = format!("SELECT rule_id, group_id FROM rule_groups WHERE {owners}");
    for row in select.query(&sql).fetch_all(&mut *conn).await? {
        rule_groups
            .entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    let mut rule_bins: HashMap<i64, Vec<BinRange>> = HashMap::new();
    let sql = format!("SELECT rule_id, bin_low, bin_high FROM rule_bins WHERE {owners}");
    for row in select.query(&sql).fetch_all(&mut *conn).await? {
        let id: i64 = row.try_get(0)?;
        let low: String = row.try_get(1)?;
        let high: String = row.try_get(2)?;
        let range = BinRange::from_bins(&low, &high).map_err(|e| corrupt("rule_bins", id, e))?;
        rule_bins.entry(id).or_default().push(range);
    }
    let sql = format!(
        "SELECT * FROM rules WHERE {}{}",
        select.filter("code"),
        select.order("id", "code")
    );
    let rows = select.query(&sql).fetch_all(&mut *conn).await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let code = column(&row, "rules", id, "code", Code::parse)?;
        let mut eligibility = Eligibility::any();
        eligibility.merchants = rule_merchants.remove(&id).unwrap_or_default();
        eligibility.tiers = rule_tiers.remove(&id).unwrap_or_default();
        for group in rule_groups.remove(&id).unwrap_or_default() {
            let (kind, group_code) = groups
                .get(&group)
                .ok_or_else(|| corrupt("rule_groups", id, "dangling group"))?;
            let list = match kind.as_str() {
                "merchant" => &mut eligibility.merchant_groups,
                "member" => &mut eligibility.member_groups,
                _ => &mut eligibility.terminal_groups,
            };
            list.push(group_code.clone());
        }
        eligibility.merchant_groups.sort_unstable();
        eligibility.member_groups.sort_unstable();
        eligibility.terminal_groups.sort_unstable();
        eligibility.bins = rule_bins.remove(&id).unwrap_or_default();
        eligibility.bins.sort_unstable();
        let terms = rule_terms(&row, id)?;
        out.ids.rules.insert(code.clone(), RuleId::new(id));
        out.data.rules.push(RuleRecord {
            code,
            terms,
            eligibility,
        });
    }
    Ok(())
}

fn rule_terms(row: &DbRow, id: i64) -> Result<RuleTerms, StoreError> {
    let table = "rules";
    let percent: Option<String> = row.try_get("percent")?;
    let kind = match (percent, optional_amount(row, table, id, "fixed_rials")?) {
        (Some(rate), None) => {
            RuleKind::Percent(Percent::parse(&rate).map_err(|e| corrupt(table, id, e))?)
        }
        (None, Some(amount)) => RuleKind::Fixed(amount),
        _ => {
            return Err(corrupt(
                table,
                id,
                "needs exactly one of percent and fixed_rials",
            ))
        }
    };
    let date = |name: &str| -> Result<Option<CivilDate>, StoreError> {
        let text: Option<String> = row.try_get(name)?;
        text.map(|t| CivilDate::parse(&t).map_err(|e| corrupt(table, id, e)))
            .transpose()
    };
    let minute_from: Option<i64> = row.try_get("minute_from")?;
    let minute_until: Option<i64> = row.try_get("minute_until")?;
    let hours = match (minute_from, minute_until) {
        (Some(from), Some(until)) => {
            let from =
                u16::try_from(from).map_err(|_| corrupt(table, id, "minute_from out of range"))?;
            let until = u16::try_from(until)
                .map_err(|_| corrupt(table, id, "minute_until out of range"))?;
            Some(MinuteWindow::new(from, until).map_err(|e| corrupt(table, id, e))?)
        }
        _ => None,
    };
    let uses: Option<i64> = row.try_get("member_daily_uses_max")?;
    Ok(RuleTerms {
        name: row.try_get("name")?,
        kind,
        basket_rials_min: amount(row, table, id, "basket_rials_min")?,
        discount_rials_max: optional_amount(row, table, id, "discount_rials_max")?,
        window: Window {
            valid_from: date("valid_from")?,
            valid_until: date("valid_until")?,
            weekdays: Weekdays::from_mask(small(row, table, id, "weekdays")?)
                .map_err(|e| corrupt(table, id, e))?,
            hours,
        },
        budget_rials: optional_amount(row, table, id, "budget_rials")?,
        member_daily_uses_max: uses
            .map(|u| {
                u32::try_from(u)
                    .map_err(|_| corrupt(table, id, "member_daily_uses_max out of range"))
            })
            .transpose()?,
    })
}

async fn read_openings(
    conn: &mut Conn,
    out: &mut LoadedReference,
    cards: &Names,
    merchants: &Names,
) -> Result<(), StoreError> {
    let mut expiries: HashMap<(i64, i64), Option<i64>> = HashMap::new();
    let lots = sqlx::query("SELECT card_id, merchant_id, expires_at_ms FROM store_credit_lots WHERE source = 'opening'")
        .fetch_all(&mut *conn)
        .await?;
    for row in lots {
        expiries.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
    }
    let rows = sqlx::query(
        "SELECT id, card_id, merchant_id, account, delta_rials FROM balance_movements WHERE kind = 'opening' ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let table = "balance_movements";
        let card_id: i64 = row.try_get("card_id")?;
        let card = name_of(cards, table, id, card_id)?;
        let amount = amount(&row, table, id, "delta_rials")?;
        let merchant_id: Option<i64> = row.try_get("merchant_id")?;
        match merchant_id {
            None => out.data.club_openings.push(ClubOpening { card, amount }),
            Some(merchant_id) => {
                let merchant = name_of(merchants, table, id, merchant_id)?;
                let expires_at = expiries
                    .get(&(card_id, merchant_id))
                    .copied()
                    .flatten()
                    .map(UnixMillis::new);
                out.data.store_credit_openings.push(StoreCreditOpening {
                    card,
                    merchant,
                    amount,
                    expires_at,
                });
            }
        }
    }
    Ok(())
}

/// Whether a terminal has `ksi` as its current or its previous KSI (both columns are
/// unique, so this is two index lookups).
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn ksi_taken(conn: &mut Conn, ksi: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM terminals WHERE ksi = $1 UNION ALL \
         SELECT 1 FROM terminal_previous_keys WHERE ksi = $1",
    )
    .bind(ksi)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// The stored reference version (0 before the first import), read on `conn`.
///
/// # Errors
/// [`StoreError`] when the database fails or the version is negative.
pub async fn stored_version(conn: &mut Conn) -> Result<u64, StoreError> {
    Ok(read_version(conn).await?.version)
}

/// Keeps terminal `terminal`'s current key as its previous key, valid until `valid_until_ms`
/// (before a new key replaces it, in the same transaction).
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn keep_previous_key(
    conn: &mut Conn,
    terminal: &str,
    valid_until_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO terminal_previous_keys (terminal_id, ksi, tmk_sealed, valid_until_ms) \
         SELECT id, ksi, tmk_sealed, $1 FROM terminals WHERE terminal_id = $2 \
         ON CONFLICT (terminal_id) DO UPDATE SET ksi = excluded.ksi, \
         tmk_sealed = excluded.tmk_sealed, valid_until_ms = excluded.valid_until_ms",
    )
    .bind(valid_until_ms)
    .bind(terminal)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends terminal `terminal`'s previous key now.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn drop_previous_key(conn: &mut Conn, terminal: &str) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM terminal_previous_keys WHERE terminal_id = \
         (SELECT id FROM terminals WHERE terminal_id = $1)",
    )
    .bind(terminal)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The code of the card that replaced the card `code`, if one did.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn replacement_of(pool: &Pool, code: &str) -> Result<Option<String>, StoreError> {
    let by = sqlx::query_scalar(
        "SELECT n.code FROM card_replacements r JOIN cards o ON o.id = r.from_card_id \
         JOIN cards n ON n.id = r.to_card_id WHERE o.code = $1",
    )
    .bind(code)
    .fetch_optional(pool)
    .await?;
    Ok(by)
}

/// The code of the card whose PAN has `token`, if one has (a unique index lookup).
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn card_with_token(
    conn: &mut Conn,
    token: &PanToken,
) -> Result<Option<String>, StoreError> {
    let code = sqlx::query_scalar("SELECT code FROM cards WHERE pan_token = $1")
        .bind(token.as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(code)
}
