//! The import file, end to end: parse, save to a temporary SQLite file (and, with
//! `LSW_TEST_DATABASE_URL` set, a fresh PostgreSQL database), load back.
//!
//! Goal: the example network imports and reads back equal; re-importing it changes nothing;
//! every kind of bad record is reported with its path and field and changes nothing; and the
//! database never holds a PAN or a clear TMK. Method: one `check_problems` helper that edits
//! the example file (as JSON) and expects a list of `path: message` lines, each case one line;
//! the state of the database is compared before and after by loading it whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::{json, Value};
use sqlx::Row;
use switch::domain::{Kek, LoadedReference, PanToken, PanTokenKey, UnixMillis};
use switch::import::{self, ImportError, ImportFailure};
use switch::snapshot::Snapshot;
use switch::store::Pool;
use switch::store::{self, reference, StoreError};

const EXAMPLE: &str = include_str!("../../docs/examples/network.json");
const NOW: UnixMillis = UnixMillis::new(1_750_000_000_000);

fn kek() -> Kek {
    Kek::from_bytes([0x11; 32])
}

fn pan_key() -> PanTokenKey {
    PanTokenKey::from_bytes([0x22; 32])
}

fn example() -> Value {
    serde_json::from_str(EXAMPLE).unwrap()
}

tokio::task_local! {
    /// The PostgreSQL server a test runs on; SQLite outside a scope.
    static SERVER: String;
}

/// An empty, migrated database: a SQLite file, or a fresh PostgreSQL database inside a
/// [`SERVER`] scope.
async fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switch.db");
    let url = match SERVER.try_with(Clone::clone) {
        Ok(server) => store::create_database(&server, "lsw_import").await.unwrap(),
        Err(_) => path.to_str().unwrap().to_owned(),
    };
    let pool = store::open(&url).await.unwrap();
    (dir, path, pool)
}

/// Runs each test function on SQLite (`name::sqlite`) and on PostgreSQL (`name::postgres`).
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name().await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(server) = super::common::database_url() {
                    super::SERVER.scope(server, super::$name()).await;
                }
            }
        }
    )*};
}

on_both!(
    example_imports_and_reads_back_equal,
    reimport_is_a_noop_and_changes_keep_ids,
    every_problem_is_reported_with_its_path_and_changes_nothing,
);

async fn import_value(
    pool: &Pool,
    file: &Value,
) -> Result<reference::ImportOutcome, ImportFailure> {
    import::import_text(pool, &file.to_string(), &kek(), &pan_key(), NOW).await
}

async fn counts(pool: &Pool) -> Vec<(String, i64)> {
    let list = match store::Backend::of_pool(pool) {
        store::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        }
        store::Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1"
        }
    };
    let tables = sqlx::query(list).fetch_all(pool).await.unwrap();
    let mut out = Vec::new();
    for row in tables {
        let name: String = row.get(0);
        let count: i64 = sqlx::query(&format!("SELECT count(*) FROM \"{name}\""))
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
        out.push((name, count));
    }
    out
}

async fn loaded(pool: &Pool) -> LoadedReference {
    reference::load(pool, &kek()).await.unwrap()
}

async fn example_imports_and_reads_back_equal() {
    let (_dir, _path, pool) = fresh().await;
    let parsed = import::parse(EXAMPLE.as_bytes(), &pan_key()).unwrap();
    let outcome = import_value(&pool, &example()).await.unwrap();
    assert_eq!(outcome.version, 1);
    assert_eq!(outcome.openings, 4);
    assert!(!outcome.is_noop());
    let back = loaded(&pool).await;
    assert_eq!(back.version, 1);
    assert_eq!(back.data, parsed.data);
    // What start-up builds its snapshot from: the same, without the openings.
    let openings = back.data.club_openings.len() + back.data.store_credit_openings.len();
    assert_eq!(openings, 4);
    let mut records = back.clone();
    records.data.club_openings.clear();
    records.data.store_credit_openings.clear();
    let fresh = reference::load_records(&pool, &kek()).await.unwrap();
    // Beside the records, each member's and card's row id in the records' order.
    let ids = &fresh.reference().ids;
    let members: Vec<_> = fresh
        .reference()
        .data
        .members
        .iter()
        .map(|m| ids.members[&m.code])
        .collect();
    assert_eq!(fresh.rows().members, members);
    let cards: Vec<_> = fresh
        .reference()
        .data
        .cards
        .iter()
        .map(|c| (ids.cards[&c.code], ids.members[&c.member]))
        .collect();
    assert_eq!(fresh.rows().cards, cards);
    assert_eq!(cards.len(), 4);
    // Row ids that do not match the records in number are not used.
    let mut short = fresh.rows().clone();
    short.cards.pop();
    assert_eq!(
        Snapshot::build_read(fresh.reference(), &short)
            .unwrap()
            .card_count(),
        4
    );
    assert_eq!(fresh.into_reference(), records);

    let snapshot = Snapshot::build(&back).unwrap();
    assert_eq!(snapshot.version(), 1);
    assert_eq!(snapshot.terminal_count(), 4);
    assert_eq!(snapshot.card_count(), 4);
    let terminal = snapshot.terminal_by_ksi(b"0123456789ABCDEF").unwrap();
    assert_eq!(terminal.terminal_id.as_str(), "TRM00001");
    let cafe = snapshot.merchant(terminal.merchant).unwrap();
    assert_eq!(cafe.code.as_str(), "M-CAFE");
    let pan = protocol::Pan::parse(b"6037991234567893").unwrap();
    let card = snapshot
        .card_by_token(&PanToken::compute(&pan_key(), &pan))
        .unwrap();
    assert_eq!(&card.bin, b"603799");
    assert_eq!(&card.last4, b"7893");
    assert_eq!(snapshot.tier_rate(card.tier).unwrap().to_string(), "2");
    let mut rules: Vec<&str> = snapshot
        .rules_for_merchant(cafe.id)
        .map(|rule| rule.code.as_str())
        .collect();
    rules.sort_unstable();
    assert_eq!(rules, ["R-BIN-610433", "R-FOOD-10", "R-GOLD-FRIDAY"]);
    let books = back
        .ids
        .merchants
        .iter()
        .find(|(code, _)| code.as_str() == "M-BOOKS")
        .unwrap();
    let rules: Vec<&str> = snapshot
        .rules_for_merchant(*books.1)
        .map(|rule| rule.code.as_str())
        .collect();
    assert_eq!(rules, ["R-BIN-610433"]);
    // What the engine prices from: the same candidates less the network-wide rules whose BIN
    // ranges miss the card, for every merchant and every card of the example.
    let mut narrowed = 0;
    for merchant in [cafe.id, *books.1] {
        for card in snapshot.cards() {
            let mut expected: Vec<&str> = snapshot
                .rules_for_merchant(merchant)
                .filter(|rule| {
                    let who = &rule.eligibility;
                    let named = !who.merchants.is_empty() || !who.merchant_groups.is_empty();
                    named
                        || who.bins.is_empty()
                        || who.bins.iter().any(|range| range.contains(&card.bin))
                })
                .map(|rule| rule.code.as_str())
                .collect();
            // A candidate marked as naming the merchant does (pricing skips that test for it),
            // and every other one is open to every merchant.
            let groups = &snapshot.merchant(merchant).unwrap().groups;
            for candidate in snapshot.rules_for_purchase(merchant, &card.bin) {
                let who = &candidate.rule.eligibility;
                let names = who.merchants.contains(&merchant)
                    || who
                        .merchant_groups
                        .iter()
                        .any(|group| groups.contains(group));
                assert_eq!(candidate.merchant_matched, names, "{}", candidate.rule.code);
                assert_eq!(candidate.merchant_matched, !who.any_merchant());
            }
            let mut got: Vec<&str> = snapshot
                .rules_for_purchase(merchant, &card.bin)
                .map(|candidate| candidate.rule.code.as_str())
                .collect();
            expected.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, expected, "bin {:?}", card.bin);
            narrowed += snapshot.rules_for_merchant(merchant).count() - got.len();
        }
    }
    assert!(narrowed > 0, "no card of the example is narrowed by BIN");
    // A card carries its member's groups (pricing reads them from the card).
    for card in snapshot.cards() {
        let member = snapshot.member(card.member).unwrap();
        assert_eq!(card.member_groups, member.groups);
    }

    let club: Vec<(i64, i64)> =
        sqlx::query("SELECT ledger_rials, held_rials FROM club_balances ORDER BY card_id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
    assert_eq!(club, [(2_000_000, 0), (500_000, 0)]);
    // 2026-12-31 is usable through its end in Tehran: the lot expires at 2027-01-01T00:00+03:30.
    let expires: Option<i64> =
        sqlx::query("SELECT expires_at_ms FROM store_credit_lots ORDER BY id")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(expires, Some(1_798_749_000_000));
}

async fn reimport_is_a_noop_and_changes_keep_ids() {
    let (_dir, _path, pool) = fresh().await;
    import_value(&pool, &example()).await.unwrap();
    let before = (counts(&pool).await, loaded(&pool).await);
    let again = import_value(&pool, &example()).await.unwrap();
    assert!(again.is_noop());
    assert_eq!(again.version, 1);
    let after = (counts(&pool).await, loaded(&pool).await);
    assert_eq!(before, after);

    let mut changed = example();
    changed["merchants"][1]["name"] = json!("Tajrish Market (renovated)");
    changed["cards"][3]["status"] = json!("active");
    let outcome = import_value(&pool, &changed).await.unwrap();
    assert_eq!(
        (
            outcome.version,
            outcome.inserted,
            outcome.updated,
            outcome.openings
        ),
        (2, 0, 2, 0)
    );
    let renamed = loaded(&pool).await;
    assert_eq!(renamed.ids, before.1.ids);
    assert_eq!(
        renamed.data.merchants[1].profile.name,
        "Tajrish Market (renovated)"
    );
}

/// Imports the example, then `edit`ed copy of it, and expects exactly `expected` problems
/// (`path: message`, the message matched as a prefix) and an unchanged database.
async fn check_problems(edit: fn(&mut Value), expected: &[&str]) {
    let (_dir, _path, pool) = fresh().await;
    import_value(&pool, &example()).await.unwrap();
    let before = (counts(&pool).await, loaded(&pool).await);
    let mut file = example();
    edit(&mut file);
    let problems: Vec<String> = match import_value(&pool, &file).await {
        Err(ImportFailure::File(ImportError::Invalid { problems, .. })) => {
            problems.iter().map(ToString::to_string).collect()
        }
        Err(ImportFailure::Store(StoreError::Rejected { problems })) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected problems {expected:?}, got {other:?}"),
    };
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (got, want) in problems.iter().zip(expected) {
        assert!(got.starts_with(want), "got {got:?}, want {want:?}");
    }
    for problem in &problems {
        assert!(
            !problem.contains("603799123456789"),
            "a problem echoes a PAN: {problem}"
        );
    }
    assert_eq!(
        (counts(&pool).await, loaded(&pool).await),
        before,
        "a refused import changed the database"
    );
}

async fn every_problem_is_reported_with_its_path_and_changes_nothing() {
    check_problems(|f| f["version"] = json!(2), &["version: must be 1"]).await;
    check_problems(
        |f| f["format"] = json!("csv"),
        &["format: must be \"lsw-import\""],
    )
    .await;
    check_problems(
        |f| f["merchants"][0]["iban"] = json!("IR270170000000100324200002"),
        &["merchants[0].iban: checksum fails"],
    )
    .await;
    check_problems(
        |f| f["members"][0]["phone"] = json!("09121234567"),
        &["members[0].phone: must start with + and the country code"],
    )
    .await;
    check_problems(
        |f| f["members"][1]["phone"] = json!("+9891"),
        &["members[1].phone: must be + and 8..=15 digits"],
    )
    .await;
    check_problems(
        |f| f["members"][0]["locale"] = json!("de"),
        &["members[0].locale: must be \"fa\" or \"en\""],
    )
    .await;
    check_problems(
        |f| f["merchants"][0]["colour"] = json!("red"),
        &["merchants[0]: unknown field `colour`"],
    )
    .await;
    check_problems(
        |f| f["merchants"][1]["code"] = json!("M-CAFE"),
        &[
            "merchants[1].code: duplicate code; first at merchants[0]",
            "terminals[2].merchant: no merchant has code \"M-MARKET\"",
            "balances.store_credit[1].merchant: no merchant has code \"M-MARKET\"",
        ],
    )
    .await;
    check_problems(
        |f| f["merchants"][0]["fee_rials_min"] = json!(600_000),
        &["merchants[0].fee_rials_min: minimum fee exceeds maximum fee"],
    )
    .await;
    check_problems(
        |f| f["merchants"][0]["fee_rate"] = json!("101"),
        &["merchants[0].fee_rate: must be at most 100"],
    )
    .await;
    check_problems(
        |f| f["merchants"][0]["amount_rials_max"] = json!(-1),
        &["merchants[0].amount_rials_max: must be an integer number of rials"],
    )
    .await;
    check_problems(
        |f| f["merchants"][0]["groups"] = json!(["food", "food"]),
        &["merchants[0].groups: lists a code twice"],
    )
    .await;
    check_problems(
        |f| {
            f["tiers"][0]
                .as_object_mut()
                .unwrap()
                .retain(|k, _| k != "cashback_rate")
        },
        &["tiers[0].cashback_rate: is required"],
    )
    .await;
    check_problems(
        |f| f["tiers"][1] = json!("gold"),
        &[
            "tiers[1]: must be an object",
            "cards[1].tier: no tier has code \"gold\"",
            "rules[1].tiers: no tier has code \"gold\"",
        ],
    )
    .await;
    check_problems(
        |f| f["terminals"][0]["merchant"] = json!("M-NOPE"),
        &["terminals[0].merchant: no merchant has code \"M-NOPE\""],
    )
    .await;
    check_problems(
        |f| f["terminals"][1]["tmk_hex"] = json!("zz".repeat(32)),
        &["terminals[1].tmk_hex: must be hexadecimal"],
    )
    .await;
    check_problems(
        |f| f["terminals"][1]["tmk_hex"] = json!("ab"),
        &["terminals[1].tmk_hex: must be 64 hexadecimal characters"],
    )
    .await;
    check_problems(
        |f| f["terminals"][0]["ksi"] = json!("0123456789abcdef"),
        &["terminals[0].ksi: must be upper-case hexadecimal"],
    )
    .await;
    check_problems(
        |f| f["terminals"][1]["ksi"] = json!("0123456789ABCDEF"),
        &["terminals[1].ksi: duplicate ksi; first at terminals[0]"],
    )
    .await;
    check_problems(
        |f| f["terminals"][1]["terminal_id"] = json!("TRM0001"),
        &["terminals[1].terminal_id: must be exactly 8 characters"],
    )
    .await;
    check_problems(
        |f| f["terminals"][1]["groups"] = json!(["nowhere"]),
        &["terminals[1].groups: no terminal group has code \"nowhere\""],
    )
    .await;
    check_problems(
        |f| f["cards"][0]["pan"] = json!("6037991234567894"),
        &["cards[0].pan: fails the luhn check"],
    )
    .await;
    check_problems(
        |f| f["cards"][0]["pan"] = json!(6_037_991_234_567_893_u64),
        &["cards[0].pan: must be a string of 12..=19 digits"],
    )
    .await;
    check_problems(
        |f| f["cards"][0]["pan"] = json!("60379912345"),
        &["cards[0].pan: must be a string of 12..=19 digits"],
    )
    .await;
    check_problems(
        |f| f["cards"][1]["pan"] = json!("6037991234567893"),
        &["cards[1].pan: same card number as cards[0]"],
    )
    .await;
    check_problems(
        |f| f["cards"][0]["expiry"] = json!("2028-13"),
        &["cards[0].expiry: month must be 01..=12"],
    )
    .await;
    check_problems(
        |f| f["cards"][0]["status"] = json!("lost"),
        &["cards[0].status: must be \"active\" or \"blocked\""],
    )
    .await;
    check_problems(
        |f| f["cards"][0]["member"] = json!("MB-9999"),
        &["cards[0].member: no member has code \"MB-9999\""],
    )
    .await;
    check_problems(
        |f| f["rules"][0]["fixed_rials"] = json!(1000),
        &["rules[0].percent: exactly one of percent and fixed_rials"],
    )
    .await;
    check_problems(
        |f| f["rules"][0]["valid_until"] = json!("2024-12-31"),
        &["rules[0].valid_until: is before valid_from"],
    )
    .await;
    check_problems(
        |f| f["rules"][1]["weekdays"] = json!(["friday"]),
        &["rules[1].weekdays: days must be"],
    )
    .await;
    check_problems(
        |f| f["rules"][1]["hours_until"] = json!("10:00"),
        &["rules[1].hours_until: window is empty"],
    )
    .await;
    check_problems(
        |f| f["rules"][1]["hours_until"] = Value::Null,
        &["rules[1].hours_from: hours_from and hours_until go together"],
    )
    .await;
    check_problems(
        |f| f["rules"][2]["bins"] = json!([{"from": "6104", "to": "6103"}]),
        &["rules[2].bins: range is empty"],
    )
    .await;
    check_problems(
        |f| f["balances"]["club"][0]["card"] = json!("C-9999"),
        &["balances.club[0].card: no card has code \"C-9999\""],
    )
    .await;
    check_problems(
        |f| f["balances"]["club"][1]["card"] = json!("C-0001"),
        &["balances.club[1].card: second opening for this card; first at balances.club[0]"],
    )
    .await;
    check_problems(
        |f| f["balances"]["store_credit"][0]["expires"] = json!("2026-02-30"),
        &["balances.store_credit[0].expires: day does not exist in that month"],
    )
    .await;
    // A different opening for an account that exists: refused by the store, not the parser.
    check_problems(
        |f| f["balances"]["club"][0]["amount_rials"] = json!(2_000_001),
        &["balances.club[0].amount_rials: balances are openings only; use a top-up"],
    )
    .await;
    check_problems(
        |f| f["balances"]["store_credit"][0]["expires"] = json!("2027-01-31"),
        &["balances.store_credit[0].amount_rials: balances are openings only; use a top-up"],
    )
    .await;
    // Many problems at once are all reported.
    check_problems(
        |f| {
            f["merchants"][2]["iban"] = json!("XX00");
            f["cards"][2]["pan"] = json!("6104339876543211");
            f["rules"][0]["percent"] = json!("ten");
        },
        &[
            "merchants[2].iban: must be 15..=34 characters",
            "cards[2].pan: fails the luhn check",
            "rules[0].percent: must be a decimal number",
        ],
    )
    .await;
}

#[tokio::test]
async fn unknown_top_level_field_is_a_syntax_error() {
    let mut file = example();
    file["colour"] = json!(1);
    let error = import::parse(file.to_string().as_bytes(), &pan_key()).unwrap_err();
    assert!(matches!(error, ImportError::Syntax { .. }), "{error:?}");
    let error = import::parse(b"{\"format\": ", &pan_key()).unwrap_err();
    assert!(matches!(error, ImportError::Syntax { .. }), "{error:?}");
}

#[tokio::test]
async fn database_holds_no_pan_and_no_clear_tmk() {
    let (_dir, path, pool) = fresh().await;
    import_value(&pool, &example()).await.unwrap();
    let file = example();
    let pans: Vec<String> = file["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pan"].as_str().unwrap().to_string())
        .collect();
    let tmks: Vec<Vec<u8>> = file["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| hex::decode(t["tmk_hex"].as_str().unwrap()).unwrap())
        .collect();
    let scan = |label: &str| {
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        for file in [path.clone(), std::path::PathBuf::from(wal)] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for pan in &pans {
                assert!(
                    !contains(&bytes, pan.as_bytes()),
                    "{label}: a PAN is in {}",
                    file.display()
                );
            }
            for tmk in &tmks {
                assert!(
                    !contains(&bytes, tmk),
                    "{label}: a clear TMK is in {}",
                    file.display()
                );
                let hex_text = hex::encode(tmk);
                assert!(
                    !contains(&bytes, hex_text.as_bytes()),
                    "{label}: a TMK in hex is in {}",
                    file.display()
                );
            }
        }
    };
    scan("open");
    pool.close().await;
    scan("closed");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
