//! The demo's loyalty programme (docs/loyalty.md): campaign coupons issued through the operator
//! API before the traffic, and what the programme did, read back from the database after it:
//! tier promotions and demotions, cashback, coupons used, and the members' messages.

use std::net::SocketAddr;

use anyhow::Context;
use sqlx::Row;
use switch::store::Pool;
use tokio::task::JoinSet;

use crate::operator;

/// Every how many members get the demo's campaign coupon (a third of them: some with a phone,
/// some without, so the outbox shows that only the first get the message).
pub const COUPON_MEMBER_EVERY: usize = 3;
/// Coupon issues in flight at once: each call waits for a group commit, so concurrent calls
/// share commits; the bound keeps the admin port's connections and the committer's credit
/// queue small.
pub const COUPON_ISSUES_IN_FLIGHT: usize = 16;
/// The campaign: 10 % off a basket of at least 100 000 rials, at most 50 000 rials, for 30 days.
const CAMPAIGN: &str = r#"{"kind":"campaign","percent":"10","basket_rials_min":100000,"discount_rials_max":50000,"valid_days":30}"#;

/// What the loyalty programme did over the run, read from the database after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoyaltySummary {
    /// Changes of a member's held tier to a higher-ranked one (from none included).
    pub promotions: i64,
    /// Changes of a member's held tier to a lower-ranked one or to none.
    pub demotions: i64,
    /// Promotions by the tier reached, highest rank first.
    pub promoted_to: Vec<(String, i64)>,
    /// Members by the tier they hold now, highest rank first, `none` last.
    pub members_by_tier: Vec<(String, i64)>,
    /// Members by the tier their card was given at import (a floor), highest rank first.
    pub given_by_tier: Vec<(String, i64)>,
    /// Store-credit lots issued as cashback.
    pub cashback_lots: i64,
    /// What those lots were issued with.
    pub cashback_rials: i64,
    /// Coupons in the database (all issued by the demo).
    pub coupons_issued: i64,
    /// Coupons a confirmed purchase used.
    pub coupons_used: i64,
    /// Discount those purchases got from their coupons.
    pub coupon_rials: i64,
    /// Coupons a pending purchase holds.
    pub coupons_held: i64,
    /// Coupons still available.
    pub coupons_available: i64,
    /// `tier` messages in the outbox.
    pub tier_messages: i64,
    /// `coupon` messages in the outbox.
    pub coupon_messages: i64,
    /// Members with a phone (only they get messages).
    pub members_with_phone: i64,
}

/// Issues the campaign coupon to every [`COUPON_MEMBER_EVERY`]th of the generated network's
/// `members` (codes `MB-0000000`…) through `POST /api/v1/members/{code}/coupons` on `admin`,
/// [`COUPON_ISSUES_IN_FLIGHT`] at a time. Returns how many were answered `201 Created`.
///
/// # Errors
/// When a call gets no answer, or an answer other than `201`.
pub async fn issue_coupons(admin: SocketAddr, token: &str, members: usize) -> anyhow::Result<u64> {
    let mut codes = (0..members)
        .step_by(COUPON_MEMBER_EVERY)
        .map(|index| format!("MB-{index:07}"));
    let mut calls = JoinSet::new();
    let mut created = 0_u64;
    loop {
        while calls.len() < COUPON_ISSUES_IN_FLIGHT {
            let Some(code) = codes.next() else { break };
            let token = token.to_owned();
            calls.spawn(async move {
                let path = format!("/api/v1/members/{code}/coupons");
                let key = format!("demo-campaign-{code}");
                let answer = operator::post(admin, &path, &token, &key, CAMPAIGN).await;
                (code, answer)
            });
        }
        let Some(joined) = calls.join_next().await else {
            break;
        };
        let (code, answer) = joined.context("a coupon call failed")?;
        let answer = answer.with_context(|| format!("issuing a coupon to {code}"))?;
        anyhow::ensure!(
            answer.status == 201,
            "issuing a coupon to {code}: {} {}",
            answer.status,
            answer.body
        );
        created += 1;
    }
    Ok(created)
}

/// Reads the programme's outcome from the database.
///
/// # Errors
/// When a query fails.
pub async fn summary(pool: &Pool) -> anyhow::Result<LoyaltySummary> {
    // A change ranks by its tiers; no tier ranks below every tier.
    let changes = sqlx::query(
        "SELECT count(*) AS n, COALESCE(CAST(SUM(CASE WHEN COALESCE(t.rank, -1) > \
         COALESCE(f.rank, -1) THEN 1 ELSE 0 END) AS BIGINT), 0) AS up FROM tier_changes c \
         LEFT JOIN tiers f ON f.id = c.from_tier_id LEFT JOIN tiers t ON t.id = c.to_tier_id",
    )
    .fetch_one(pool)
    .await?;
    let changed: i64 = changes.try_get("n")?;
    let promotions: i64 = changes.try_get("up")?;
    let promoted_to = counts(
        pool,
        "SELECT t.code AS k, count(*) AS n FROM tier_changes c JOIN tiers t ON t.id = c.to_tier_id \
         LEFT JOIN tiers f ON f.id = c.from_tier_id WHERE t.rank > COALESCE(f.rank, -1) \
         GROUP BY t.code, t.rank ORDER BY t.rank DESC, t.code",
    )
    .await?;
    // The tier a member holds is the one their latest change went to; a member whose tier never
    // changed holds the best tier their cards were given.
    let members_by_tier = counts(
        pool,
        "SELECT COALESCE(t.code, 'none') AS k, count(*) AS n FROM (SELECT m.id, CASE WHEN EXISTS \
         (SELECT 1 FROM tier_changes c WHERE c.member_id = m.id) THEN (SELECT c.to_tier_id FROM \
         tier_changes c WHERE c.member_id = m.id ORDER BY c.id DESC LIMIT 1) ELSE (SELECT \
         d.tier_id FROM cards d JOIN tiers g ON g.id = d.tier_id WHERE d.member_id = m.id ORDER \
         BY g.rank DESC, g.id LIMIT 1) END AS tier_id FROM members m) h LEFT JOIN tiers t ON \
         t.id = h.tier_id GROUP BY t.code, t.rank ORDER BY COALESCE(t.rank, -1) DESC, t.code",
    )
    .await?;
    let given_by_tier = counts(
        pool,
        "SELECT t.code AS k, count(DISTINCT d.member_id) AS n FROM cards d JOIN tiers t ON \
         t.id = d.tier_id GROUP BY t.code, t.rank ORDER BY t.rank DESC, t.code",
    )
    .await?;
    let cashback = sqlx::query(
        "SELECT count(*) AS n, COALESCE(CAST(SUM(original_rials) AS BIGINT), 0) AS rials \
         FROM store_credit_lots WHERE source = 'cashback'",
    )
    .fetch_one(pool)
    .await?;
    let used = sqlx::query(
        "SELECT count(*) AS n, COALESCE(CAST(SUM(coupon_rials) AS BIGINT), 0) AS rials \
         FROM transactions WHERE state = 'confirmed' AND coupon_id IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    let coupons = counts(
        pool,
        "SELECT state AS k, count(*) AS n FROM coupons GROUP BY state",
    )
    .await?;
    let messages = counts(
        pool,
        "SELECT kind AS k, count(*) AS n FROM notifications GROUP BY kind",
    )
    .await?;
    let members_with_phone: i64 =
        sqlx::query_scalar("SELECT count(*) FROM members WHERE phone IS NOT NULL")
            .fetch_one(pool)
            .await?;
    Ok(LoyaltySummary {
        promotions,
        demotions: changed - promotions,
        promoted_to,
        members_by_tier,
        given_by_tier,
        cashback_lots: cashback.try_get("n")?,
        cashback_rials: cashback.try_get("rials")?,
        coupons_issued: coupons.iter().map(|(_, n)| n).sum(),
        coupons_used: used.try_get("n")?,
        coupon_rials: used.try_get("rials")?,
        coupons_held: count_of(&coupons, "held"),
        coupons_available: count_of(&coupons, "available"),
        tier_messages: count_of(&messages, "tier"),
        coupon_messages: count_of(&messages, "coupon"),
        members_with_phone,
    })
}

/// Prints the `== loyalty ==` section of the summary.
pub fn print(loyalty: &LoyaltySummary) {
    println!("== loyalty ==");
    let promoted_to = if loyalty.promoted_to.is_empty() {
        String::new()
    } else {
        format!(" (to {})", listed(&loyalty.promoted_to))
    };
    println!(
        "  tiers     {} promotions{promoted_to}, {} demotions",
        loyalty.promotions, loyalty.demotions
    );
    let given = if loyalty.given_by_tier.is_empty() {
        "none".to_owned()
    } else {
        listed(&loyalty.given_by_tier)
    };
    println!(
        "  members   now {}; given at import: {given}",
        listed(&loyalty.members_by_tier)
    );
    println!(
        "  cashback  {} store-credit lots, {} rials",
        loyalty.cashback_lots, loyalty.cashback_rials
    );
    println!(
        "  coupons   {} issued, {} used ({} rials of discount), {} held, {} available",
        loyalty.coupons_issued,
        loyalty.coupons_used,
        loyalty.coupon_rials,
        loyalty.coupons_held,
        loyalty.coupons_available
    );
    println!(
        "  outbox    {} tier and {} coupon messages (to the {} members with a phone)",
        loyalty.tier_messages, loyalty.coupon_messages, loyalty.members_with_phone
    );
}

/// Rows of `(k TEXT, n BIGINT)`.
async fn counts(pool: &Pool, sql: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(sql).fetch_all(pool).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("k")?, row.try_get("n")?)))
        .collect()
}

fn count_of(counts: &[(String, i64)], key: &str) -> i64 {
    counts.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n)
}

/// `"gold 3, silver 5"`.
fn listed(counts: &[(String, i64)]) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}
