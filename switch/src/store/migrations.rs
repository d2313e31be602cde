//! The schema migrations of both dialects, embedded in the binary.
//!
//! They are listed here by hand rather than by sqlx's `migrate!` macro: the macro needs sqlx's
//! `macros` feature, which compiles sqlx and SQLite a second time for the build host and made
//! a fresh build of the demo about a fifth slower. `tests/migrations.rs` checks that these
//! lists name every file of `migrations/sqlite` and `migrations/postgres`, in order, so a new
//! file cannot be forgotten. A migration's checksum is sqlx's (SHA-384 of its SQL), so a
//! database migrated by either way is accepted by the other.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration file: its version, its description and its SQL.
type Source = (i64, &'static str, &'static str);

/// The SQLite dialect, in version order (file names `NNNN_description.sql`).
pub const SQLITE: &[Source] = &[
    (
        1,
        "reference",
        include_str!("../../../migrations/sqlite/0001_reference.sql"),
    ),
    (
        2,
        "transactions",
        include_str!("../../../migrations/sqlite/0002_transactions.sql"),
    ),
    (
        3,
        "settlement",
        include_str!("../../../migrations/sqlite/0003_settlement.sql"),
    ),
    (
        4,
        "operators",
        include_str!("../../../migrations/sqlite/0004_operators.sql"),
    ),
    (
        5,
        "credits",
        include_str!("../../../migrations/sqlite/0005_credits.sql"),
    ),
    (
        6,
        "key_rotation",
        include_str!("../../../migrations/sqlite/0006_key_rotation.sql"),
    ),
    (
        7,
        "card_replacements",
        include_str!("../../../migrations/sqlite/0007_card_replacements.sql"),
    ),
    (
        8,
        "shared_batches",
        include_str!("../../../migrations/sqlite/0008_shared_batches.sql"),
    ),
    (
        9,
        "notifications",
        include_str!("../../../migrations/sqlite/0009_notifications.sql"),
    ),
    (
        10,
        "tiers",
        include_str!("../../../migrations/sqlite/0010_tiers.sql"),
    ),
    (
        11,
        "coupons",
        include_str!("../../../migrations/sqlite/0011_coupons.sql"),
    ),
    (
        12,
        "occasions_referrals",
        include_str!("../../../migrations/sqlite/0012_occasions_referrals.sql"),
    ),
    (
        13,
        "top_up",
        include_str!("../../../migrations/sqlite/0013_top_up.sql"),
    ),
    (
        14,
        "surveys",
        include_str!("../../../migrations/sqlite/0014_surveys.sql"),
    ),
    (
        15,
        "engagement",
        include_str!("../../../migrations/sqlite/0015_engagement.sql"),
    ),
    (
        16,
        "operator_reads",
        include_str!("../../../migrations/sqlite/0016_operator_reads.sql"),
    ),
    (
        17,
        "card_operations",
        include_str!("../../../migrations/sqlite/0017_card_operations.sql"),
    ),
    (
        18,
        "reference_changes",
        include_str!("../../../migrations/sqlite/0018_reference_changes.sql"),
    ),
    (
        19,
        "journal",
        include_str!("../../../migrations/sqlite/0019_journal.sql"),
    ),
    (
        20,
        "key_checks",
        include_str!("../../../migrations/sqlite/0020_key_checks.sql"),
    ),
    (
        30,
        "console",
        include_str!("../../../migrations/sqlite/0030_console.sql"),
    ),
];

/// The PostgreSQL dialect, the same versions as [`SQLITE`].
pub const POSTGRES: &[Source] = &[
    (
        1,
        "reference",
        include_str!("../../../migrations/postgres/0001_reference.sql"),
    ),
    (
        2,
        "transactions",
        include_str!("../../../migrations/postgres/0002_transactions.sql"),
    ),
    (
        3,
        "settlement",
        include_str!("../../../migrations/postgres/0003_settlement.sql"),
    ),
    (
        4,
        "operators",
        include_str!("../../../migrations/postgres/0004_operators.sql"),
    ),
    (
        5,
        "credits",
        include_str!("../../../migrations/postgres/0005_credits.sql"),
    ),
    (
        6,
        "key_rotation",
        include_str!("../../../migrations/postgres/0006_key_rotation.sql"),
    ),
    (
        7,
        "card_replacements",
        include_str!("../../../migrations/postgres/0007_card_replacements.sql"),
    ),
    (
        8,
        "shared_batches",
        include_str!("../../../migrations/postgres/0008_shared_batches.sql"),
    ),
    (
        9,
        "notifications",
        include_str!("../../../migrations/postgres/0009_notifications.sql"),
    ),
    (
        10,
        "tiers",
        include_str!("../../../migrations/postgres/0010_tiers.sql"),
    ),
    (
        11,
        "coupons",
        include_str!("../../../migrations/postgres/0011_coupons.sql"),
    ),
    (
        12,
        "occasions_referrals",
        include_str!("../../../migrations/postgres/0012_occasions_referrals.sql"),
    ),
    (
        13,
        "top_up",
        include_str!("../../../migrations/postgres/0013_top_up.sql"),
    ),
    (
        14,
        "surveys",
        include_str!("../../../migrations/postgres/0014_surveys.sql"),
    ),
    (
        15,
        "engagement",
        include_str!("../../../migrations/postgres/0015_engagement.sql"),
    ),
    (
        16,
        "operator_reads",
        include_str!("../../../migrations/postgres/0016_operator_reads.sql"),
    ),
    (
        17,
        "card_operations",
        include_str!("../../../migrations/postgres/0017_card_operations.sql"),
    ),
    (
        18,
        "reference_changes",
        include_str!("../../../migrations/postgres/0018_reference_changes.sql"),
    ),
    (
        19,
        "journal",
        include_str!("../../../migrations/postgres/0019_journal.sql"),
    ),
    (
        20,
        "key_checks",
        include_str!("../../../migrations/postgres/0020_key_checks.sql"),
    ),
    (
        30,
        "console",
        include_str!("../../../migrations/postgres/0030_console.sql"),
    ),
];

/// The migrator of one dialect's list.
pub fn migrator(sources: &[Source]) -> Migrator {
    let migrations: Vec<Migration> = sources
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}
