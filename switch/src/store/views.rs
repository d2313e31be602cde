//! The operator API's reads (`api::views`, docs/operator-api.md "Reads"): transaction search
//! and detail, a card's and a member's view, the terminal list. The network has a million
//! cards and ten thousand merchants, so every statement here is an index lookup or a range of
//! one index (migration 0016), bounded by the page it answers; none reads reference data whole.
//! [`plans`] returns what SQLite makes of each, so a test can hold them to that.
//!
//! A search answers newest first by `(created_at_ms, id)`, and a page's cursor is the id of its
//! last transaction: the next page starts after that transaction's place in the same order, so
//! pages are disjoint and together cover every match even when two transactions share a
//! millisecond or the clock stepped back.

use serde::Serialize;
use sqlx::Row as _;

use crate::store::sql::QueryBuilder;
use crate::store::{Backend, DbRow, Pool};

/// A transaction's state, as stored and as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    /// Approved, holding its club and store-credit amounts.
    Pending,
    /// Captured.
    Confirmed,
    /// Reversed (before or after its confirm).
    Reversed,
    /// Its hold lapsed without a confirm.
    Expired,
}

impl TxnState {
    /// Every state, in the order the documentation lists them.
    pub const ALL: [TxnState; 4] = [
        TxnState::Pending,
        TxnState::Confirmed,
        TxnState::Reversed,
        TxnState::Expired,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Pending => "pending",
            TxnState::Confirmed => "confirmed",
            TxnState::Reversed => "reversed",
            TxnState::Expired => "expired",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<TxnState> {
        TxnState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// Where a page starts: just after this transaction in newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The transaction's creation time.
    pub created_at_ms: i64,
    /// Its id.
    pub id: i64,
}

/// Which transactions a search answers: every filter given must match. Each filter has an
/// index; the first one given in this order leads the search (the others are checked on the
/// rows it finds), so a page costs about as many rows as the leading filter skips.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// The retrieval reference number (unique).
    pub rrn: Option<String>,
    /// A card's row id (the card and member views).
    pub card_id: Option<i64>,
    /// A card's code.
    pub card: Option<String>,
    /// Cards with this BIN and last four digits.
    pub bin_last4: Option<(String, String)>,
    /// Any card of this member (row id).
    pub member_id: Option<i64>,
    /// A terminal's id (`TRM00001`).
    pub terminal: Option<String>,
    /// A merchant's code.
    pub merchant: Option<String>,
    /// The state.
    pub state: Option<TxnState>,
    /// Created at or after (Unix ms).
    pub created_from_ms: Option<i64>,
    /// Created before (Unix ms).
    pub created_before_ms: Option<i64>,
    /// Start after this transaction.
    pub after: Option<Cursor>,
    /// At most this many (the caller has checked the range).
    pub limit: i64,
}

/// One page of a list, and the cursor of the next (`None`: this is the last page).
#[derive(Debug, Clone, Serialize)]
pub struct Page<T, C> {
    /// The items.
    pub items: Vec<T>,
    /// Give this as `after` for the next page.
    pub next: Option<C>,
}

/// A transaction as a search lists it, its fields named as the API answers them.
#[derive(Debug, Clone, Serialize)]
pub struct TxnItem {
    /// Row id (also the paging cursor).
    pub id: i64,
    /// Retrieval reference number.
    pub rrn: String,
    /// `pending`, `confirmed`, `reversed` or `expired`.
    pub state: String,
    /// When it was approved.
    pub created_at_ms: i64,
    /// When it was confirmed, if it was.
    pub confirmed_at_ms: Option<i64>,
    /// The terminal's id.
    pub terminal: String,
    /// The merchant's code.
    pub merchant: String,
    /// The card's code.
    pub card: String,
    /// The card's BIN.
    pub bin: String,
    /// The card's last four digits.
    pub last4: String,
    /// G.
    pub gross_rials: i64,
    /// The discount (rule and coupon).
    pub discount_rials: i64,
    /// The merchant's fee.
    pub fee_rials: i64,
    /// Paid with store credit.
    pub store_credit_rials: i64,
    /// Paid with the club balance.
    pub club_rials: i64,
    /// Left for the bank card.
    pub bank_rest_rials: i64,
    /// Cashback granted.
    pub cashback_rials: i64,
    /// The discount rule's code, if one applied.
    pub rule: Option<String>,
    /// The reference data version that priced it.
    pub snapshot_version: i64,
}

/// The columns of [`TxnItem`], from `transactions t` joined with `terminals r`, `merchants m`,
/// `cards c` and `rules ru`, each a primary-key lookup.
const ITEM_COLUMNS: &str = "t.id, t.rrn, t.state, t.created_at_ms, t.confirmed_at_ms, \
     r.terminal_id AS terminal, m.code AS merchant, c.code AS card, c.bin, c.last4, \
     t.gross_rials, t.discount_rials, t.fee_rials, t.store_credit_rials, t.club_rials, \
     t.bank_rest_rials, t.cashback_rials, ru.code AS rule, t.snapshot_version";
const ITEM_JOINS: &str = "JOIN terminals r ON r.id = t.terminal_id \
     JOIN merchants m ON m.id = t.merchant_id JOIN cards c ON c.id = t.card_id \
     LEFT JOIN rules ru ON ru.id = t.rule_id";

fn item(row: &DbRow) -> Result<TxnItem, sqlx::Error> {
    Ok(TxnItem {
        id: row.try_get("id")?,
        rrn: row.try_get("rrn")?,
        state: row.try_get("state")?,
        created_at_ms: row.try_get("created_at_ms")?,
        confirmed_at_ms: row.try_get("confirmed_at_ms")?,
        terminal: row.try_get("terminal")?,
        merchant: row.try_get("merchant")?,
        card: row.try_get("card")?,
        bin: row.try_get("bin")?,
        last4: row.try_get("last4")?,
        gross_rials: row.try_get("gross_rials")?,
        discount_rials: row.try_get("discount_rials")?,
        fee_rials: row.try_get("fee_rials")?,
        store_credit_rials: row.try_get("store_credit_rials")?,
        club_rials: row.try_get("club_rials")?,
        bank_rest_rials: row.try_get("bank_rest_rials")?,
        cashback_rials: row.try_get("cashback_rials")?,
        rule: row.try_get("rule")?,
        snapshot_version: row.try_get("snapshot_version")?,
    })
}

/// The cursor a transaction id names, or `None` when there is no such transaction.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn cursor(pool: &Pool, id: i64) -> Result<Option<Cursor>, sqlx::Error> {
    let created: Option<i64> =
        sqlx::query_scalar("SELECT created_at_ms FROM transactions WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(created.map(|created_at_ms| Cursor { created_at_ms, id }))
}

/// One page of the transactions `search` matches, newest first.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn search(pool: &Pool, search: &Search) -> Result<Page<TxnItem, i64>, sqlx::Error> {
    let mut query = search_statement("", search);
    let rows = query.build(Backend::of_pool(pool)).fetch_all(pool).await?;
    let mut items = rows.iter().map(item).collect::<Result<Vec<_>, _>>()?;
    // One row more than the page was asked for, to learn whether there is a next page without
    // counting.
    let more = items.len() > rows_of(search.limit);
    items.truncate(rows_of(search.limit));
    let next = if more {
        items.last().map(|last| last.id)
    } else {
        None
    };
    Ok(Page { items, next })
}

/// A filter of a search, in the order they may lead it.
enum Term<'s> {
    Rrn(&'s str),
    CardId(i64),
    Card(&'s str),
    BinLast4(&'s str, &'s str),
    Member(i64),
    Terminal(&'s str),
    Merchant(&'s str),
    State(TxnState),
}

/// The search's filters, in the order they are written: the first leads the index.
fn search_terms<'s>(search: &'s Search) -> Vec<Term<'s>> {
    let mut terms = Vec::new();
    if let Some(rrn) = &search.rrn {
        terms.push(Term::Rrn(rrn));
    }
    if let Some(id) = search.card_id {
        terms.push(Term::CardId(id));
    }
    if let Some(card) = &search.card {
        terms.push(Term::Card(card));
    }
    if let Some((bin, last4)) = &search.bin_last4 {
        terms.push(Term::BinLast4(bin, last4));
    }
    if let Some(member) = search.member_id {
        terms.push(Term::Member(member));
    }
    if let Some(terminal) = &search.terminal {
        terms.push(Term::Terminal(terminal));
    }
    if let Some(merchant) = &search.merchant {
        terms.push(Term::Merchant(merchant));
    }
    if let Some(state) = search.state {
        terms.push(Term::State(state));
    }
    terms
}

/// Writes one filter of [`search_statement`]; only the first (`lead`) may use an index.
fn push_term(query: &mut QueryBuilder<'static>, term: &Term<'_>, lead: bool) {
    let id_column = |column: &str| {
        if lead {
            column.to_owned()
        } else {
            format!("{column} + 0")
        }
    };
    match term {
        Term::Rrn(rrn) => {
            query.push("rrn = ").push_bind((*rrn).to_owned());
        }
        Term::CardId(id) => {
            query.push(&id_column("card_id")).push(" = ").push_bind(*id);
        }
        Term::Card(code) => {
            query
                .push(&id_column("card_id"))
                .push(" = (SELECT id FROM cards WHERE code = ")
                .push_bind((*code).to_owned())
                .push(")");
        }
        Term::BinLast4(bin, last4) => {
            query
                .push(&id_column("card_id"))
                .push(" IN (SELECT id FROM cards WHERE bin = ")
                .push_bind((*bin).to_owned())
                .push(" AND last4 = ")
                .push_bind((*last4).to_owned())
                .push(")");
        }
        Term::Member(id) => {
            query
                .push(&id_column("card_id"))
                .push(" IN (SELECT id FROM cards WHERE member_id = ")
                .push_bind(*id)
                .push(")");
        }
        Term::Terminal(terminal) => {
            query
                .push(&id_column("terminal_id"))
                .push(" = (SELECT id FROM terminals WHERE terminal_id = ")
                .push_bind((*terminal).to_owned())
                .push(")");
        }
        Term::Merchant(code) => {
            query
                .push(&id_column("merchant_id"))
                .push(" = (SELECT id FROM merchants WHERE code = ")
                .push_bind((*code).to_owned())
                .push(")");
        }
        Term::State(state) => {
            query.push("state = ").push_bind(state.as_str());
            // transactions_state holds only the rare states; the literal condition is what
            // lets the planner use it (a confirmed search walks transactions_created).
            if lead && *state != TxnState::Confirmed {
                query.push(" AND state <> 'confirmed'");
            }
        }
    }
}

/// The search's statement, after `head` (`EXPLAIN QUERY PLAN ` for [`plans`]).
///
/// The page's ids are chosen first, from one index alone where the filters allow (SQLite's
/// indexes end with the row id, so `(card_id, created_at_ms)` covers the order and the cursor),
/// and only those rows are joined for their codes.
fn search_statement(head: &str, search: &Search) -> QueryBuilder<'static> {
    let terms = search_terms(search);
    let mut query = QueryBuilder::new(format!(
        "{head}SELECT {ITEM_COLUMNS} FROM (SELECT id FROM transactions WHERE "
    ));
    // The first filter leads; the others are written so no index can serve them (`+ 0`, or for
    // the state the partial index's own condition left out): without statistics SQLite might
    // otherwise walk a merchant's whole history for the few rows of one card.
    for (index, term) in terms.iter().enumerate() {
        push_term(&mut query, term, index == 0);
        query.push(" AND ");
    }
    if let Some(from) = search.created_from_ms {
        query
            .push("created_at_ms >= ")
            .push_bind(from)
            .push(" AND ");
    }
    // Always one upper bound, so even a search without filters is a range of an index rather
    // than a scan that only its LIMIT stops. One, not two: SQLite walks down from the first
    // upper bound it is given and filters by the others, so a page far down the list with
    // both the end of the range and the cursor would walk everything above the cursor.
    let before = search.created_before_ms.unwrap_or(i64::MAX);
    match search.after {
        Some(after) if after.created_at_ms < before => {
            query
                .push("created_at_ms <= ")
                .push_bind(after.created_at_ms)
                .push(" AND (created_at_ms < ")
                .push_bind(after.created_at_ms)
                .push(" OR id < ")
                .push_bind(after.id)
                .push(")");
        }
        // A cursor at or after the end of the range: every transaction in it comes after the
        // cursor.
        _ => {
            query.push("created_at_ms < ").push_bind(before);
        }
    }
    query
        .push(" ORDER BY created_at_ms DESC, id DESC LIMIT ")
        .push_bind(search.limit.saturating_add(1))
        .push(") page JOIN transactions t ON t.id = page.id ")
        .push(ITEM_JOINS)
        .push(" ORDER BY t.created_at_ms DESC, t.id DESC");
    query
}

/// A transaction with everything that happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct TxnDetail {
    /// What a search lists.
    #[serde(flatten)]
    pub item: TxnItem,
    /// When its hold lapses (or lapsed).
    pub hold_expires_at_ms: i64,
    /// When it was reversed, if it was.
    pub reversed_at_ms: Option<i64>,
    /// When its hold lapsed without a confirm, if it did.
    pub expired_at_ms: Option<i64>,
    /// The settlement cycle that paid it, once settled.
    pub cycle_id: Option<i64>,
    /// The store-credit lot its cashback went to.
    pub cashback_lot_id: Option<i64>,
    /// The coupon it held or used.
    pub coupon_id: Option<i64>,
    /// The part of the discount the coupon gave.
    pub coupon_rials: i64,
    /// Its capture, once confirmed.
    pub capture: Option<Capture>,
    /// Every balance movement it caused, in order.
    pub movements: Vec<Movement>,
}

/// What a confirm took.
#[derive(Debug, Clone, Serialize)]
pub struct Capture {
    /// When.
    pub at_ms: i64,
    /// From the club balance.
    pub club_rials: i64,
    /// From store credit.
    pub store_credit_rials: i64,
    /// When a reversal gave it back, if one did.
    pub returned_at_ms: Option<i64>,
    /// The store-credit lots it drew from.
    pub lots: Vec<CaptureLot>,
}

/// One lot a capture drew from.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureLot {
    /// The lot.
    pub lot_id: i64,
    /// How much it gave.
    pub taken_rials: i64,
}

/// One change of a balance.
#[derive(Debug, Clone, Serialize)]
pub struct Movement {
    /// Row id.
    pub id: i64,
    /// The card's code.
    pub card: String,
    /// `club` or `store_credit`.
    pub account: String,
    /// The store credit's merchant (none for the club account).
    pub merchant: Option<String>,
    /// Signed change.
    pub delta_rials: i64,
    /// Why (`hold`, `capture`, `cashback`, …).
    pub kind: String,
    /// When.
    pub at_ms: i64,
}

const DETAIL_SQL: &str = "SELECT t.hold_expires_at_ms, t.reversed_at_ms, t.expired_at_ms, \
     t.cycle_id, t.cashback_lot_id, t.coupon_id, t.coupon_rials FROM transactions t WHERE t.id = $1";
const CAPTURE_SQL: &str = "SELECT at_ms, club_rials, store_credit_rials, returned_at_ms \
     FROM captures WHERE txn_id = $1";
const CAPTURE_LOTS_SQL: &str =
    "SELECT lot_id, taken_rials FROM capture_lots WHERE txn_id = $1 ORDER BY lot_id";
const MOVEMENTS_SQL: &str = "SELECT bm.id, c.code AS card, bm.account, m.code AS merchant, \
     bm.delta_rials, bm.kind, bm.at_ms FROM balance_movements bm \
     JOIN cards c ON c.id = bm.card_id LEFT JOIN merchants m ON m.id = bm.merchant_id \
     WHERE bm.txn_id = $1 ORDER BY bm.id";

/// A transaction by id, with its capture and movements; `None` when there is none.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn transaction(pool: &Pool, id: i64) -> Result<Option<TxnDetail>, sqlx::Error> {
    let sql = format!("SELECT {ITEM_COLUMNS} FROM transactions t {ITEM_JOINS} WHERE t.id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let item = item(&row)?;
    let row = sqlx::query(DETAIL_SQL).bind(id).fetch_one(pool).await?;
    let capture = match sqlx::query(CAPTURE_SQL)
        .bind(id)
        .fetch_optional(pool)
        .await?
    {
        Some(capture) => {
            let lots = sqlx::query(CAPTURE_LOTS_SQL)
                .bind(id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|lot| {
                    Ok(CaptureLot {
                        lot_id: lot.try_get("lot_id")?,
                        taken_rials: lot.try_get("taken_rials")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Some(Capture {
                at_ms: capture.try_get("at_ms")?,
                club_rials: capture.try_get("club_rials")?,
                store_credit_rials: capture.try_get("store_credit_rials")?,
                returned_at_ms: capture.try_get("returned_at_ms")?,
                lots,
            })
        }
        None => None,
    };
    let movements = sqlx::query(MOVEMENTS_SQL)
        .bind(id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|movement| {
            Ok(Movement {
                id: movement.try_get("id")?,
                card: movement.try_get("card")?,
                account: movement.try_get("account")?,
                merchant: movement.try_get("merchant")?,
                delta_rials: movement.try_get("delta_rials")?,
                kind: movement.try_get("kind")?,
                at_ms: movement.try_get("at_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(TxnDetail {
        item,
        hold_expires_at_ms: row.try_get("hold_expires_at_ms")?,
        reversed_at_ms: row.try_get("reversed_at_ms")?,
        expired_at_ms: row.try_get("expired_at_ms")?,
        cycle_id: row.try_get("cycle_id")?,
        cashback_lot_id: row.try_get("cashback_lot_id")?,
        coupon_id: row.try_get("coupon_id")?,
        coupon_rials: row.try_get("coupon_rials")?,
        capture,
        movements,
    }))
}

/// A card, with BIN and last four only.
#[derive(Debug, Clone, Serialize)]
pub struct CardRow {
    /// Row id (not answered).
    #[serde(skip)]
    pub id: i64,
    /// The member's row id (not answered).
    #[serde(skip)]
    pub member_id: i64,
    /// Its code.
    pub code: String,
    /// Its member's code.
    pub member: String,
    /// BIN.
    pub bin: String,
    /// Last four digits.
    pub last4: String,
    /// `active` or `blocked`.
    pub status: String,
    /// `YYYY-MM`.
    pub expiry: String,
    /// The tier it was given (a floor for the member's tier), if any.
    pub tier: Option<String>,
    /// That tier's rank (not answered).
    #[serde(skip)]
    pub tier_rank: Option<i64>,
    /// The club balance (answered beside the card).
    #[serde(skip)]
    pub club: Club,
}

/// A club balance: available = ledger − held.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Club {
    /// On the ledger.
    pub ledger_rials: i64,
    /// Held by pending purchases.
    pub held_rials: i64,
    /// Usable now.
    pub available_rials: i64,
}

impl Club {
    fn new(ledger_rials: i64, held_rials: i64) -> Club {
        Club {
            ledger_rials,
            held_rials,
            available_rials: ledger_rials.saturating_sub(held_rials),
        }
    }
}

const CARD_COLUMNS: &str = "c.id, c.member_id, c.code, mb.code AS member, c.bin, c.last4, \
     c.status, c.expiry_year, c.expiry_month, ti.code AS tier, ti.rank AS tier_rank, \
     b.ledger_rials, b.held_rials FROM cards c JOIN members mb ON mb.id = c.member_id \
     LEFT JOIN tiers ti ON ti.id = c.tier_id LEFT JOIN club_balances b ON b.card_id = c.id";
const CARD_SQL: &str = "WHERE c.code = $1";
/// A member's cards, oldest first; a member has a handful, [`CARDS_MAX`] at most answered.
const MEMBER_CARDS_SQL: &str = "WHERE c.member_id = $1 ORDER BY c.id LIMIT $2";

/// Most cards a member view lists.
pub const CARDS_MAX: i64 = 100;

fn card_row(row: &DbRow) -> Result<CardRow, sqlx::Error> {
    let year: i64 = row.try_get("expiry_year")?;
    let month: i64 = row.try_get("expiry_month")?;
    let ledger: Option<i64> = row.try_get("ledger_rials")?;
    let held: Option<i64> = row.try_get("held_rials")?;
    Ok(CardRow {
        id: row.try_get("id")?,
        member_id: row.try_get("member_id")?,
        code: row.try_get("code")?,
        member: row.try_get("member")?,
        bin: row.try_get("bin")?,
        last4: row.try_get("last4")?,
        status: row.try_get("status")?,
        expiry: format!("{year:04}-{month:02}"),
        tier: row.try_get("tier")?,
        tier_rank: row.try_get("tier_rank")?,
        club: Club::new(ledger.unwrap_or(0), held.unwrap_or(0)),
    })
}

/// The card with this code, or `None`.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn card(pool: &Pool, code: &str) -> Result<Option<CardRow>, sqlx::Error> {
    sqlx::query(&format!("SELECT {CARD_COLUMNS} {CARD_SQL}"))
        .bind(code)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(card_row)
        .transpose()
}

/// A member's cards, oldest first (at most [`CARDS_MAX`]).
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn member_cards(pool: &Pool, member_id: i64) -> Result<Vec<CardRow>, sqlx::Error> {
    sqlx::query(&format!("SELECT {CARD_COLUMNS} {MEMBER_CARDS_SQL}"))
        .bind(member_id)
        .bind(CARDS_MAX)
        .fetch_all(pool)
        .await?
        .iter()
        .map(card_row)
        .collect()
}

/// One store-credit account: a card's credit at one merchant.
#[derive(Debug, Clone, Serialize)]
pub struct StoreCredit {
    /// The card's code.
    pub card: String,
    /// The merchant's code.
    pub merchant: String,
    /// The merchant's row id (not answered).
    #[serde(skip)]
    pub merchant_id: i64,
    /// On the ledger.
    pub ledger_rials: i64,
    /// Held by pending purchases.
    pub held_rials: i64,
    /// Usable now.
    pub available_rials: i64,
    /// Its lots with credit left (the card view only; a member view leaves them out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<Lot>,
}

/// A lot of store credit.
#[derive(Debug, Clone, Serialize)]
pub struct Lot {
    /// Row id.
    pub id: i64,
    /// The merchant's row id (not answered).
    #[serde(skip)]
    pub merchant_id: i64,
    /// Left.
    pub remaining_rials: i64,
    /// Granted.
    pub original_rials: i64,
    /// When it lapses (none: never).
    pub expires_at_ms: Option<i64>,
    /// How it came: `import`, `grant`, `cashback`, …
    pub source: String,
}

/// Accounts with credit on them; one card has at most one per merchant it earned credit at.
const ACCOUNTS_SQL: &str = "SELECT c.code AS card, m.code AS merchant, a.merchant_id, \
     a.ledger_rials, a.held_rials FROM store_credit_accounts a JOIN cards c ON c.id = a.card_id \
     JOIN merchants m ON m.id = a.merchant_id WHERE a.card_id = $1 AND a.ledger_rials > 0 \
     ORDER BY m.code";
const MEMBER_ACCOUNTS_SQL: &str = "SELECT c.code AS card, m.code AS merchant, a.merchant_id, \
     a.ledger_rials, a.held_rials FROM store_credit_accounts a JOIN cards c ON c.id = a.card_id \
     JOIN merchants m ON m.id = a.merchant_id \
     WHERE a.card_id IN (SELECT id FROM cards WHERE member_id = $1) AND a.ledger_rials > 0 \
     ORDER BY m.code, c.code";
const LOTS_SQL: &str = "SELECT id, merchant_id, remaining_rials, original_rials, expires_at_ms, \
     source FROM store_credit_lots WHERE card_id = $1 AND remaining_rials > 0 \
     ORDER BY merchant_id, id LIMIT $2";

/// Most lots with credit left a card view lists.
pub const LOTS_MAX: i64 = 1_000;

fn account(row: &DbRow) -> Result<StoreCredit, sqlx::Error> {
    let ledger: i64 = row.try_get("ledger_rials")?;
    let held: i64 = row.try_get("held_rials")?;
    Ok(StoreCredit {
        card: row.try_get("card")?,
        merchant: row.try_get("merchant")?,
        merchant_id: row.try_get("merchant_id")?,
        ledger_rials: ledger,
        held_rials: held,
        available_rials: ledger.saturating_sub(held),
        lots: Vec::new(),
    })
}

/// A card's store credit per merchant with its lots that have credit left, and whether there
/// were more than [`LOTS_MAX`] such lots (only the first are listed).
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn card_store_credit(
    pool: &Pool,
    card_id: i64,
) -> Result<(Vec<StoreCredit>, bool), sqlx::Error> {
    let mut accounts = sqlx::query(ACCOUNTS_SQL)
        .bind(card_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(account)
        .collect::<Result<Vec<_>, _>>()?;
    let mut lots = sqlx::query(LOTS_SQL)
        .bind(card_id)
        .bind(LOTS_MAX.saturating_add(1))
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok(Lot {
                id: row.try_get("id")?,
                merchant_id: row.try_get("merchant_id")?,
                remaining_rials: row.try_get("remaining_rials")?,
                original_rials: row.try_get("original_rials")?,
                expires_at_ms: row.try_get("expires_at_ms")?,
                source: row.try_get("source")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let more = lots.len() > rows_of(LOTS_MAX);
    lots.truncate(rows_of(LOTS_MAX));
    for lot in lots {
        if let Some(account) = accounts
            .iter_mut()
            .find(|account| account.merchant_id == lot.merchant_id)
        {
            account.lots.push(lot);
        }
    }
    Ok((accounts, more))
}

/// A member's store credit per card and merchant (without lots).
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn member_store_credit(
    pool: &Pool,
    member_id: i64,
) -> Result<Vec<StoreCredit>, sqlx::Error> {
    sqlx::query(MEMBER_ACCOUNTS_SQL)
        .bind(member_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(account)
        .collect()
}

/// A member's coupon.
#[derive(Debug, Clone, Serialize)]
pub struct Coupon {
    /// Row id.
    pub id: i64,
    /// `birthday`, `campaign`, `manual`, …
    pub kind: String,
    /// A percentage off, or
    pub percent: Option<String>,
    /// a fixed amount off.
    pub fixed_rials: Option<i64>,
    /// The smallest basket it applies to.
    pub basket_rials_min: i64,
    /// The most it takes off.
    pub discount_rials_max: Option<i64>,
    /// The one merchant it is good at, if limited to one.
    pub merchant: Option<String>,
    /// Issued.
    pub issued_at_ms: i64,
    /// Lapses.
    pub expires_at_ms: i64,
    /// `available`, `held`, `used` or `withdrawn`.
    pub state: String,
    /// The transaction holding or using it.
    pub txn_id: Option<i64>,
}

/// Most coupons a view lists (the newest); `GET /members/{code}/coupons` lists them all.
pub const COUPONS_MAX: i64 = 100;

const COUPONS_SQL: &str = "SELECT c.id, c.kind, c.percent, c.fixed_rials, c.basket_rials_min, \
     c.discount_rials_max, m.code AS merchant, c.issued_at_ms, c.expires_at_ms, c.state, \
     c.txn_id FROM coupons c LEFT JOIN merchants m ON m.id = c.merchant_id \
     WHERE c.member_id = $1 ORDER BY c.id DESC LIMIT $2";

/// A member's newest coupons (at most [`COUPONS_MAX`]), and whether there are more.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn coupons(pool: &Pool, member_id: i64) -> Result<(Vec<Coupon>, bool), sqlx::Error> {
    let mut coupons = sqlx::query(COUPONS_SQL)
        .bind(member_id)
        .bind(COUPONS_MAX.saturating_add(1))
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| {
            Ok(Coupon {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                percent: row.try_get("percent")?,
                fixed_rials: row.try_get("fixed_rials")?,
                basket_rials_min: row.try_get("basket_rials_min")?,
                discount_rials_max: row.try_get("discount_rials_max")?,
                merchant: row.try_get("merchant")?,
                issued_at_ms: row.try_get("issued_at_ms")?,
                expires_at_ms: row.try_get("expires_at_ms")?,
                state: row.try_get("state")?,
                txn_id: row.try_get("txn_id")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let more = coupons.len() > rows_of(COUPONS_MAX);
    coupons.truncate(rows_of(COUPONS_MAX));
    Ok((coupons, more))
}

/// A tier's code and rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRank {
    /// Its code.
    pub code: String,
    /// Its rank (higher is better).
    pub rank: i64,
}

const EARNED_SQL: &str = "SELECT ti.code, ti.rank FROM member_tiers mt \
     JOIN tiers ti ON ti.id = mt.tier_id WHERE mt.member_id = $1";

/// The tier a member's activity earned at their last recompute (docs/loyalty.md), if any.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn earned_tier(pool: &Pool, member_id: i64) -> Result<Option<TierRank>, sqlx::Error> {
    sqlx::query(EARNED_SQL)
        .bind(member_id)
        .fetch_optional(pool)
        .await?
        .map(|row| {
            Ok(TierRank {
                code: row.try_get("code")?,
                rank: row.try_get("rank")?,
            })
        })
        .transpose()
}

/// A member.
#[derive(Debug, Clone)]
pub struct MemberRow {
    /// Row id.
    pub id: i64,
    /// Code.
    pub code: String,
    /// `fa` or `en`.
    pub locale: String,
    /// Mobile number in full: the API masks it.
    pub phone: Option<String>,
    /// Member group codes.
    pub groups: Vec<String>,
}

const MEMBER_SQL: &str = "SELECT id, code, locale, phone FROM members WHERE code = $1";
const MEMBER_GROUPS_SQL: &str = "SELECT g.code FROM member_group_members mg \
     JOIN groups g ON g.id = mg.group_id WHERE mg.member_id = $1 ORDER BY g.code";

/// The member with this code, with their groups, or `None`.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn member(pool: &Pool, code: &str) -> Result<Option<MemberRow>, sqlx::Error> {
    let Some(row) = sqlx::query(MEMBER_SQL)
        .bind(code)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = row.try_get("id")?;
    let groups = sqlx::query_scalar(MEMBER_GROUPS_SQL)
        .bind(id)
        .fetch_all(pool)
        .await?;
    Ok(Some(MemberRow {
        id,
        code: row.try_get("code")?,
        locale: row.try_get("locale")?,
        phone: row.try_get("phone")?,
        groups,
    }))
}

/// A terminal as the list shows it (never its key).
#[derive(Debug, Clone, Serialize)]
pub struct TerminalItem {
    /// Row id (not answered).
    #[serde(skip)]
    pub row_id: i64,
    /// Its id (`TRM00001`), also the paging cursor.
    pub terminal_id: String,
    /// The merchant's code.
    pub merchant: String,
    /// `active` or `inactive`.
    pub status: String,
    /// Its current key set id.
    pub ksi: String,
    /// Whether a rotation's previous key still works now.
    pub previous_key_in_overlap: bool,
    /// Until when the previous key works (none: there is none).
    pub previous_key_valid_until_ms: Option<i64>,
    /// Terminal group codes.
    pub groups: Vec<String>,
    /// When its newest transaction was created (none: it has none).
    pub last_seen_ms: Option<i64>,
}

/// The terminal list's columns; `last_seen_ms` is the top of the terminal's range of
/// transactions_terminal, one index probe per terminal listed.
const TERMINALS_HEAD: &str = "SELECT r.id, r.terminal_id, m.code AS merchant, r.status, r.ksi, \
     pk.valid_until_ms, (SELECT t.created_at_ms FROM transactions t WHERE t.terminal_id = r.id \
     ORDER BY t.created_at_ms DESC LIMIT 1) AS last_seen_ms \
     FROM terminals r JOIN merchants m ON m.id = r.merchant_id \
     LEFT JOIN terminal_previous_keys pk ON pk.terminal_id = r.id WHERE ";

/// One page of terminals in terminal id order, after `after`, of one merchant if given; `now`
/// decides whether a previous key is still in its overlap.
///
/// # Errors
/// [`sqlx::Error`] when the database fails.
pub async fn terminals(
    pool: &Pool,
    after: Option<&str>,
    merchant: Option<&str>,
    limit: i64,
    now_ms: i64,
) -> Result<Page<TerminalItem, String>, sqlx::Error> {
    let backend = Backend::of_pool(pool);
    let mut query = terminals_statement("", after, merchant, limit);
    let rows = query.build(backend).fetch_all(pool).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let valid_until: Option<i64> = row.try_get("valid_until_ms")?;
        items.push(TerminalItem {
            row_id: row.try_get("id")?,
            terminal_id: row.try_get("terminal_id")?,
            merchant: row.try_get("merchant")?,
            status: row.try_get("status")?,
            ksi: row.try_get("ksi")?,
            previous_key_in_overlap: valid_until.is_some_and(|until| until > now_ms),
            previous_key_valid_until_ms: valid_until,
            groups: Vec::new(),
            last_seen_ms: row.try_get("last_seen_ms")?,
        });
    }
    let more = items.len() > rows_of(limit);
    items.truncate(rows_of(limit));
    if !items.is_empty() {
        let mut groups = groups_statement("", items.iter().map(|item| item.row_id));
        for row in groups.build(backend).fetch_all(pool).await? {
            let terminal: i64 = row.try_get("terminal_id")?;
            let code: String = row.try_get("code")?;
            if let Some(item) = items.iter_mut().find(|item| item.row_id == terminal) {
                item.groups.push(code);
            }
        }
    }
    let next = if more {
        items.last().map(|last| last.terminal_id.clone())
    } else {
        None
    };
    Ok(Page { items, next })
}

fn terminals_statement(
    head: &str,
    after: Option<&str>,
    merchant: Option<&str>,
    limit: i64,
) -> QueryBuilder<'static> {
    let mut query = QueryBuilder::new(format!("{head}{TERMINALS_HEAD}"));
    if let Some(merchant) = merchant {
        query
            .push("r.merchant_id = (SELECT id FROM merchants WHERE code = ")
            .push_bind(merchant.to_owned())
            .push(") AND ");
    }
    // Always a lower bound (the empty string sorts first), so the list is a range of an index.
    query
        .push("r.terminal_id > ")
        .push_bind(after.unwrap_or("").to_owned())
        .push(" ORDER BY r.terminal_id LIMIT ")
        .push_bind(limit.saturating_add(1));
    query
}

fn groups_statement(head: &str, terminals: impl Iterator<Item = i64>) -> QueryBuilder<'static> {
    let mut query = QueryBuilder::new(format!(
        "{head}SELECT tg.terminal_id, g.code FROM terminal_group_members tg \
         JOIN groups g ON g.id = tg.group_id WHERE tg.terminal_id IN ("
    ));
    for (index, terminal) in terminals.enumerate() {
        if index > 0 {
            query.push(", ");
        }
        query.push_bind(terminal);
    }
    query.push(") ORDER BY tg.terminal_id, g.code");
    query
}

/// The transaction searches [`plans`] explains: each filter the console and the API offer,
/// alone and combined as they are used, and each state.
fn plan_searches() -> Vec<(&'static str, Search)> {
    let cursor = Some(Cursor {
        created_at_ms: 1,
        id: 1,
    });
    let text = |s: &str| Some(s.to_owned());
    let mut searches: Vec<(&'static str, Search)> = vec![
        ("search", Search::default()),
        (
            "search after",
            Search {
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "search by date",
            Search {
                created_from_ms: Some(0),
                created_before_ms: Some(1),
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "search by rrn",
            Search {
                rrn: text("000000000001"),
                ..Search::default()
            },
        ),
        (
            "search by card",
            Search {
                card: text("C"),
                created_from_ms: Some(0),
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "search by bin and last four",
            Search {
                bin_last4: Some(("603799".to_owned(), "1112".to_owned())),
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "search by terminal",
            Search {
                terminal: text("TRM00001"),
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "search by merchant",
            Search {
                merchant: text("M"),
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "search by merchant and card",
            Search {
                merchant: text("M"),
                card: text("C"),
                ..Search::default()
            },
        ),
        (
            "search by merchant and outcome",
            Search {
                merchant: text("M"),
                state: Some(TxnState::Reversed),
                ..Search::default()
            },
        ),
        (
            "card history",
            Search {
                card_id: Some(1),
                after: cursor,
                ..Search::default()
            },
        ),
        (
            "member history",
            Search {
                member_id: Some(1),
                after: cursor,
                ..Search::default()
            },
        ),
    ];
    for state in TxnState::ALL {
        searches.push((
            state.as_str(),
            Search {
                state: Some(state),
                after: cursor,
                ..Search::default()
            },
        ));
    }
    searches
}

/// Each statement these reads run, named, with SQLite's `EXPLAIN QUERY PLAN` of it: one line
/// per step (`SEARCH t USING INDEX …`, `SCAN …`). A test holds every step that reads a table to
/// an index. SQLite only: PostgreSQL's plans depend on its statistics.
///
/// # Errors
/// [`sqlx::Error`] when the database fails or is not SQLite.
pub async fn plans(pool: &Pool) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
    if Backend::of_pool(pool) != Backend::Sqlite {
        return Err(sqlx::Error::Protocol(
            "query plans are read on SQLite only".to_owned(),
        ));
    }
    const EXPLAIN: &str = "EXPLAIN QUERY PLAN ";
    let mut out = Vec::new();
    for (name, mut search) in plan_searches() {
        search.limit = 50;
        let mut query = search_statement(EXPLAIN, &search);
        let rows = query.build(Backend::Sqlite).fetch_all(pool).await?;
        out.push((name.to_owned(), plan_lines(&rows)?));
    }
    let fixed: [(&str, String, usize); 14] = [
        (
            "transaction",
            format!("SELECT {ITEM_COLUMNS} FROM transactions t {ITEM_JOINS} WHERE t.id = $1"),
            1,
        ),
        (
            "cursor",
            "SELECT created_at_ms FROM transactions WHERE id = $1".to_owned(),
            1,
        ),
        ("transaction detail", DETAIL_SQL.to_owned(), 1),
        ("capture", CAPTURE_SQL.to_owned(), 1),
        ("capture lots", CAPTURE_LOTS_SQL.to_owned(), 1),
        ("movements", MOVEMENTS_SQL.to_owned(), 1),
        ("card", format!("SELECT {CARD_COLUMNS} {CARD_SQL}"), 1),
        (
            "member cards",
            format!("SELECT {CARD_COLUMNS} {MEMBER_CARDS_SQL}"),
            2,
        ),
        ("store credit", ACCOUNTS_SQL.to_owned(), 1),
        ("member store credit", MEMBER_ACCOUNTS_SQL.to_owned(), 1),
        ("lots", LOTS_SQL.to_owned(), 2),
        ("coupons", COUPONS_SQL.to_owned(), 2),
        ("earned tier", EARNED_SQL.to_owned(), 1),
        ("member", MEMBER_SQL.to_owned(), 1),
    ];
    for (name, sql, binds) in fixed {
        let sql = format!("{EXPLAIN}{sql}");
        let mut query = sqlx::query(&sql);
        for _ in 0..binds {
            query = query.bind(1_i64);
        }
        let rows = query.fetch_all(pool).await?;
        out.push((name.to_owned(), plan_lines(&rows)?));
    }
    let rows = sqlx::query(&format!("{EXPLAIN}{MEMBER_GROUPS_SQL}"))
        .bind(1_i64)
        .fetch_all(pool)
        .await?;
    out.push(("member groups".to_owned(), plan_lines(&rows)?));
    for (name, merchant) in [("terminals", None), ("terminals of a merchant", Some("M"))] {
        let mut query = terminals_statement(EXPLAIN, Some("TRM00001"), merchant, 100);
        let rows = query.build(Backend::Sqlite).fetch_all(pool).await?;
        out.push((name.to_owned(), plan_lines(&rows)?));
    }
    let mut query = groups_statement(EXPLAIN, [1_i64, 2].into_iter());
    let rows = query.build(Backend::Sqlite).fetch_all(pool).await?;
    out.push(("terminal groups".to_owned(), plan_lines(&rows)?));
    Ok(out)
}

/// A row count as a length (a negative one as none).
fn rows_of(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(0)
}

fn plan_lines(rows: &[DbRow]) -> Result<Vec<String>, sqlx::Error> {
    rows.iter().map(|row| row.try_get("detail")).collect()
}
