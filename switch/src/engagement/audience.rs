//! Who is in a segment, and who a tag's rule picks: read from the database, off the hot path.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};
use sqlx::Row;

use crate::domain::time::DAY_MS;
use crate::domain::{Locale, UnixMillis};
use crate::engagement::segment::{Expr, Facts};
use crate::store::Pool;

/// One member, with what a segment and a campaign need.
#[derive(Debug, Clone)]
pub struct Member {
    /// Row id.
    pub id: i64,
    /// Code.
    pub code: String,
    /// The card their messages go by (their lowest active card), if any.
    pub card: Option<i64>,
    /// Mobile number, if any.
    pub phone: Option<String>,
    /// Language of their messages.
    pub locale: Locale,
    /// `YYYY-MM-DD`, if known.
    pub birth_date: Option<String>,
    /// `YYYY-MM-DD`, if known.
    pub joined_on: Option<String>,
    /// Tags, tier and RFM scores.
    pub facts: Facts,
}

/// The tiers members hold: the one each member's activity earned, and each active card's
/// given tier (a floor). A member holds the highest-ranked of theirs, the smallest code on a
/// tie.
const TIER_HOLDINGS: &str = "SELECT mt.member_id, t.code, t.rank FROM member_tiers mt \
     JOIN tiers t ON t.id = mt.tier_id \
     UNION ALL SELECT c.member_id, t.code, t.rank FROM cards c JOIN tiers t ON t.id = c.tier_id \
     WHERE c.status = 'active'";

/// How many members hold each tier (by code), as [`members`] gives each their `tier` fact, and
/// how many members there are in all. One statement over every card with a tier: the
/// console caches it.
///
/// # Errors
/// The database's error.
pub async fn tier_distribution(pool: &Pool) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
    let sql = format!(
        "WITH held AS ({TIER_HOLDINGS}), \
         best AS (SELECT member_id, MAX(rank) AS rank FROM held GROUP BY member_id), \
         chosen AS (SELECT h.member_id, MIN(h.code) AS code FROM held h \
           JOIN best b ON b.member_id = h.member_id AND b.rank = h.rank GROUP BY h.member_id) \
         SELECT code, COUNT(*) AS members FROM chosen GROUP BY code ORDER BY code"
    );
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    let tiers = rows
        .iter()
        .map(|row| Ok((row.try_get("code")?, row.try_get("members")?)))
        .collect::<Result<Vec<(String, i64)>, sqlx::Error>>()?;
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM members")
        .fetch_one(pool)
        .await?;
    Ok((tiers, all))
}

/// Every member with their facts at `now`, by id.
///
/// # Errors
/// The database's error.
pub async fn members(pool: &Pool, now: UnixMillis) -> Result<Vec<Member>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT m.id, m.code, m.phone, m.locale, m.birth_date, m.joined_on, (SELECT MIN(c.id) \
         FROM cards c WHERE c.member_id = m.id AND c.status = 'active') AS card_id \
         FROM members m ORDER BY m.id",
    )
    .fetch_all(pool)
    .await?;
    let mut members = Vec::with_capacity(rows.len());
    let mut index = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let locale: String = row.try_get("locale")?;
        index.insert(id, members.len());
        members.push(Member {
            id,
            code: row.try_get("code")?,
            card: row.try_get("card_id")?,
            phone: row.try_get("phone")?,
            locale: Locale::parse(&locale).unwrap_or(Locale::Fa),
            birth_date: row.try_get("birth_date")?,
            joined_on: row.try_get("joined_on")?,
            facts: Facts::default(),
        });
    }
    for row in sqlx::query(
        "SELECT mt.member_id, t.code FROM member_tags mt JOIN tags t ON t.id = mt.tag_id",
    )
    .fetch_all(pool)
    .await?
    {
        if let Some(&at) = index.get(&row.try_get::<i64, _>("member_id")?) {
            if let Some(member) = members.get_mut(at) {
                member.facts.tags.insert(row.try_get("code")?);
            }
        }
    }
    // The tier held: the higher-ranked of the one activity earned and the cards' floors.
    let mut best: HashMap<i64, (i64, String)> = HashMap::new();
    for row in sqlx::query(TIER_HOLDINGS).fetch_all(pool).await? {
        let member: i64 = row.try_get("member_id")?;
        let rank: i64 = row.try_get("rank")?;
        let code: String = row.try_get("code")?;
        let entry = best.entry(member).or_insert((rank, code.clone()));
        if rank > entry.0 || (rank == entry.0 && code < entry.1) {
            *entry = (rank, code);
        }
    }
    for (member, (_, code)) in best {
        if let Some(&at) = index.get(&member) {
            if let Some(member) = members.get_mut(at) {
                member.facts.tier = Some(code);
            }
        }
    }
    for row in sqlx::query(crate::engagement::rfm::SCORED)
        .bind(now.get() - crate::engagement::rfm::WINDOW_DAYS * DAY_MS)
        .fetch_all(pool)
        .await?
    {
        let score = |name: &str| -> Result<u8, sqlx::Error> {
            let value: i64 = row.try_get(name)?;
            Ok(u8::try_from(value.clamp(1, 5)).unwrap_or(1))
        };
        let scores = (score("r")?, score("f")?, score("m")?);
        if let Some(&at) = index.get(&row.try_get::<i64, _>("member_id")?) {
            if let Some(member) = members.get_mut(at) {
                member.facts.rfm = Some(scores);
            }
        }
    }
    Ok(members)
}

/// The members of the segment `expr`.
///
/// # Errors
/// The database's error.
pub async fn segment(
    pool: &Pool,
    now: UnixMillis,
    expr: &Expr,
) -> Result<Vec<Member>, sqlx::Error> {
    let mut all = members(pool, now).await?;
    all.retain(|member| expr.matches(&member.facts));
    Ok(all)
}

/// A tag's rule: which members it gives the tag to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagRule {
    /// A confirmed purchase at the merchant (by code) in the last `days` days.
    BoughtAt {
        /// The merchant's code.
        merchant: String,
        /// How far back.
        days: i64,
    },
    /// A confirmed purchase paid partly with store credit in the last `days` days.
    UsedStoreCredit {
        /// How far back.
        days: i64,
    },
    /// A confirmed purchase paid partly from the club balance in the last `days` days.
    UsedClub {
        /// How far back.
        days: i64,
    },
}

/// Longest look-back of a rule, in days.
pub const RULE_DAYS_MAX: i64 = 3650;

impl TagRule {
    /// Parses a rule: `{"bought_at": {"merchant": "M-A", "days": 30}}`,
    /// `{"used_store_credit": {"days": 90}}` or `{"used_club": {"days": 90}}`.
    ///
    /// # Errors
    /// The problems, each with its path (`rule.bought_at.days`).
    pub fn parse(value: &Value) -> Result<TagRule, Vec<(String, String)>> {
        let one = |message: &str| vec![("rule".to_owned(), message.to_owned())];
        let Some((kind, inner)) = value
            .as_object()
            .filter(|object| object.len() == 1)
            .and_then(|object| object.iter().next())
        else {
            return Err(one(
                "an object with one of bought_at, used_store_credit, used_club",
            ));
        };
        let Some(inner) = inner.as_object() else {
            return Err(vec![(format!("rule.{kind}"), "an object".to_owned())]);
        };
        let mut problems = Vec::new();
        let allowed: &[&str] = if kind == "bought_at" {
            &["merchant", "days"]
        } else {
            &["days"]
        };
        for name in inner.keys() {
            if !allowed.contains(&name.as_str()) {
                problems.push((format!("rule.{kind}.{name}"), "unknown field".to_owned()));
            }
        }
        let days = inner
            .get("days")
            .and_then(Value::as_i64)
            .filter(|days| (1..=RULE_DAYS_MAX).contains(days));
        if days.is_none() {
            problems.push((format!("rule.{kind}.days"), "required, 1..=3650".to_owned()));
        }
        let rule = match kind.as_str() {
            "bought_at" => {
                let merchant = inner.get("merchant").and_then(Value::as_str);
                if merchant.is_none() {
                    problems.push((
                        "rule.bought_at.merchant".to_owned(),
                        "required, a merchant code".to_owned(),
                    ));
                }
                merchant
                    .zip(days)
                    .map(|(merchant, days)| TagRule::BoughtAt {
                        merchant: merchant.to_owned(),
                        days,
                    })
            }
            "used_store_credit" => days.map(|days| TagRule::UsedStoreCredit { days }),
            "used_club" => days.map(|days| TagRule::UsedClub { days }),
            _ => {
                return Err(one(
                    "unknown: one of bought_at, used_store_credit, used_club",
                ))
            }
        };
        match rule {
            Some(rule) if problems.is_empty() => Ok(rule),
            _ => Err(problems),
        }
    }

    /// The rule as JSON, as stored and answered.
    pub fn to_json(&self) -> Value {
        match self {
            TagRule::BoughtAt { merchant, days } => {
                json!({"bought_at": {"merchant": merchant, "days": days}})
            }
            TagRule::UsedStoreCredit { days } => json!({"used_store_credit": {"days": days}}),
            TagRule::UsedClub { days } => json!({"used_club": {"days": days}}),
        }
    }

    /// The ids of the members the rule picks at `now`.
    ///
    /// # Errors
    /// The database's error.
    pub async fn members(&self, pool: &Pool, now: UnixMillis) -> Result<Vec<i64>, sqlx::Error> {
        let base =
            "SELECT DISTINCT c.member_id FROM transactions t JOIN cards c ON c.id = t.card_id \
                    WHERE t.state = 'confirmed' AND t.confirmed_at_ms >= $1";
        let since = |days: i64| now.get() - days * DAY_MS;
        match self {
            TagRule::BoughtAt { merchant, days } => {
                sqlx::query_scalar(&format!(
                    "{base} AND t.merchant_id = (SELECT id FROM merchants WHERE code = $2) \
                     ORDER BY c.member_id"
                ))
                .bind(since(*days))
                .bind(merchant)
                .fetch_all(pool)
                .await
            }
            TagRule::UsedStoreCredit { days } => {
                sqlx::query_scalar(&format!(
                    "{base} AND t.store_credit_rials > 0 ORDER BY c.member_id"
                ))
                .bind(since(*days))
                .fetch_all(pool)
                .await
            }
            TagRule::UsedClub { days } => {
                sqlx::query_scalar(&format!("{base} AND t.club_rials > 0 ORDER BY c.member_id"))
                    .bind(since(*days))
                    .fetch_all(pool)
                    .await
            }
        }
    }
}

/// Applies the rule of the tag `tag` (row id) at `now`: members it picks get the tag (source
/// `rule`), members who had it by rule and are no longer picked lose it; tags given by hand or
/// file stay. The difference is computed from reads first and only it is written, in short
/// transactions of [`CHANGES_PER_TRANSACTION`] (a rule that picks the same members again
/// writes nothing and never takes the database's write lock). Returns (added, removed).
///
/// # Errors
/// The database's error; the chunks written stay written, and the next run writes the rest.
pub async fn apply_rule(
    pool: &Pool,
    tag: i64,
    rule: &TagRule,
    now: UnixMillis,
    operator: &str,
) -> Result<(u64, u64), sqlx::Error> {
    let picked: BTreeSet<i64> = rule.members(pool, now).await?.into_iter().collect();
    let had: BTreeSet<i64> =
        sqlx::query_scalar::<_, i64>("SELECT member_id FROM member_tags WHERE tag_id = $1")
            .bind(tag)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let by_rule: BTreeSet<i64> = sqlx::query_scalar::<_, i64>(
        "SELECT member_id FROM member_tags WHERE tag_id = $1 AND source = 'rule'",
    )
    .bind(tag)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let add: Vec<i64> = picked.difference(&had).copied().collect();
    let remove: Vec<i64> = by_rule.difference(&picked).copied().collect();
    let mut added = 0;
    for chunk in add.chunks(CHANGES_PER_TRANSACTION) {
        let mut tx = crate::store::begin_write(pool).await?;
        for member in chunk {
            added += sqlx::query(
                "INSERT INTO member_tags (member_id, tag_id, source, assigned_at_ms, operator) \
                 VALUES ($1, $2, 'rule', $3, $4) ON CONFLICT (member_id, tag_id) DO NOTHING",
            )
            .bind(member)
            .bind(tag)
            .bind(now.get())
            .bind(operator)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        crate::engagement::commit_and_rest(tx).await?;
    }
    let mut removed = 0;
    for chunk in remove.chunks(CHANGES_PER_TRANSACTION) {
        let mut tx = crate::store::begin_write(pool).await?;
        for member in chunk {
            removed += sqlx::query(
                "DELETE FROM member_tags WHERE tag_id = $1 AND member_id = $2 AND source = 'rule'",
            )
            .bind(tag)
            .bind(member)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        crate::engagement::commit_and_rest(tx).await?;
    }
    Ok((added, removed))
}

/// Tag changes written per transaction by a rule.
pub const CHANGES_PER_TRANSACTION: usize = 200;
