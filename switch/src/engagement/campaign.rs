//! Occasion campaigns (docs/campaigns.md): a segment, an optional occasion, a coupon and/or an
//! SMS, a window of Tehran days. Previewed (who, how many, the cost ceiling) and run once: each
//! member reached has one `campaign_members` row, one coupon keyed `campaign:<code>:<member>`
//! through the engine and at most one message (the campaign's SMS, or, without one, the
//! coupon's own notice), so running it again, or resuming a run a crash cut short, reaches
//! nobody twice.

use serde_json::{json, Value};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::committer::{CreditJob, Operation};
use crate::config::CouponConfig;
use crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;
use crate::domain::{
    CardId, CivilDate, CouponKind, CouponTemplate, LocalDateTime, Locale, MemberId, RuleKind,
    UnixMillis,
};
use crate::engagement::audience::{self, Member};
use crate::engagement::in_language;
use crate::engagement::segment::Expr;
use crate::engine::coupon::CouponIssue;
use crate::engine::credit::CreditOutcome;
use crate::notify::templates::Message;
use crate::store::Pool;

/// What a campaign is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occasion {
    /// A national holiday of the settlement calendar, on its date.
    Holiday(CivilDate),
    /// An operator-defined event (by code).
    Event(String),
    /// Members whose birthday falls in the campaign's window.
    Birthday,
    /// Members whose joining anniversary falls in the campaign's window.
    Anniversary,
}

impl Occasion {
    /// Parses `{"kind": "holiday", "date": "YYYY-MM-DD"}`, `{"kind": "event", "code": c}`,
    /// `{"kind": "birthday"}` or `{"kind": "anniversary"}`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(value: &Value) -> Result<Occasion, String> {
        let object = value.as_object().ok_or("an object with kind")?;
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let allowed: &[&str] = match kind {
            "holiday" => &["kind", "date"],
            "event" => &["kind", "code"],
            "birthday" | "anniversary" => &["kind"],
            _ => return Err("kind: one of holiday, event, birthday, anniversary".to_owned()),
        };
        if let Some(field) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("{field}: unknown field"));
        }
        match kind {
            "holiday" => object
                .get("date")
                .and_then(Value::as_str)
                .and_then(|text| CivilDate::parse(text).ok())
                .map(Occasion::Holiday)
                .ok_or_else(|| "date: required, YYYY-MM-DD".to_owned()),
            "event" => object
                .get("code")
                .and_then(Value::as_str)
                .filter(|code| !code.is_empty())
                .map(|code| Occasion::Event(code.to_owned()))
                .ok_or_else(|| "code: required, an occasion's code".to_owned()),
            "birthday" => Ok(Occasion::Birthday),
            _ => Ok(Occasion::Anniversary),
        }
    }

    /// As stored and answered.
    pub fn to_json(&self) -> Value {
        match self {
            Occasion::Holiday(date) => json!({"kind": "holiday", "date": date.to_string()}),
            Occasion::Event(code) => json!({"kind": "event", "code": code}),
            Occasion::Birthday => json!({"kind": "birthday"}),
            Occasion::Anniversary => json!({"kind": "anniversary"}),
        }
    }
}

/// A stored campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Row id.
    pub id: i64,
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// The segment's code.
    pub segment: String,
    /// The segment's expression.
    pub expression: Expr,
    /// What it is for.
    pub occasion: Option<Occasion>,
    /// First day it may run.
    pub starts_on: CivilDate,
    /// Last day it may run.
    pub ends_on: CivilDate,
    /// The coupon, if any.
    pub coupon: Option<CouponConfig>,
    /// The coupon as stored (the operator's JSON), for answers.
    pub coupon_json: Option<Value>,
    /// The SMS in Persian, if any.
    pub sms_fa: Option<String>,
    /// The SMS in English, if any.
    pub sms_en: Option<String>,
    /// `scheduled`, `running` or `done`.
    pub state: String,
}

impl Campaign {
    /// Whether it sends its own SMS (else a coupon's notice is the one message).
    pub fn has_sms(&self) -> bool {
        self.sms_fa.is_some() || self.sms_en.is_some()
    }

    /// The coupon's terms template.
    pub fn template(&self) -> Option<CouponTemplate> {
        self.coupon
            .as_ref()
            .and_then(|coupon| coupon.template().ok())
    }

    /// The most one coupon can give: its fixed amount, or a percent coupon's cap (a campaign's
    /// percent coupon must have one).
    pub fn coupon_ceiling(&self) -> i64 {
        match self.template() {
            Some(CouponTemplate {
                kind: RuleKind::Fixed(amount),
                ..
            }) => amount.get(),
            Some(template) => template.discount_rials_max.map_or(0, |cap| cap.get()),
            None => 0,
        }
    }

    /// Whether the member is in the audience on the occasion: always, except for birthdays and
    /// anniversaries, whose date (month and day) must fall in the window.
    fn on_occasion(&self, member: &Member) -> bool {
        let date = match self.occasion {
            Some(Occasion::Birthday) => member.birth_date.as_deref(),
            Some(Occasion::Anniversary) => member.joined_on.as_deref(),
            _ => return true,
        };
        let Some(date) = date.and_then(|text| CivilDate::parse(text).ok()) else {
            return false;
        };
        falls_in(date, self.starts_on, self.ends_on)
    }
}

/// Whether the yearly date `date` (its month and day; 29 February is 28 February in other
/// years) falls within `from..=to`, in a year after its own.
pub fn falls_in(date: CivilDate, from: CivilDate, to: CivilDate) -> bool {
    (from.year()..=to.year()).any(|year| {
        if year <= date.year() {
            return false;
        }
        let on =
            CivilDate::new(year, date.month(), date.day()).or_else(|_| CivilDate::new(year, 2, 28));
        on.is_ok_and(|on| from <= on && on <= to)
    })
}

/// Loads the campaign `code`.
///
/// # Errors
/// The database's error, or a message for a stored row that does not parse.
pub async fn load(pool: &Pool, code: &str) -> Result<Option<Campaign>, String> {
    let row = sqlx::query(
        "SELECT c.id, c.code, c.name, s.code AS segment, s.expression, c.occasion, c.starts_on, \
         c.ends_on, c.coupon, c.sms_fa, c.sms_en, c.state FROM campaigns c \
         JOIN segments s ON s.id = c.segment_id WHERE c.code = $1",
    )
    .bind(code)
    .fetch_optional(pool)
    .await
    .map_err(|e| e.to_string())?;
    let Some(row) = row else {
        return Ok(None);
    };
    let text = |name: &str| row.try_get::<String, _>(name).map_err(|e| e.to_string());
    let optional = |name: &str| {
        row.try_get::<Option<String>, _>(name)
            .map_err(|e| e.to_string())
    };
    let corrupt = |what: &str| format!("campaign {code}: stored {what} does not parse");
    let expression = serde_json::from_str(&text("expression")?)
        .ok()
        .and_then(|value| Expr::parse(&value).ok())
        .ok_or_else(|| corrupt("segment"))?;
    let occasion = match optional("occasion")? {
        Some(text) => Some(
            serde_json::from_str(&text)
                .ok()
                .and_then(|value| Occasion::parse(&value).ok())
                .ok_or_else(|| corrupt("occasion"))?,
        ),
        None => None,
    };
    let coupon_json: Option<Value> = match optional("coupon")? {
        Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt("coupon"))?),
        None => None,
    };
    let coupon = match &coupon_json {
        Some(value) => Some(serde_json::from_value(value.clone()).map_err(|_| corrupt("coupon"))?),
        None => None,
    };
    let date = |name: &str| -> Result<CivilDate, String> {
        CivilDate::parse(&text(name)?).map_err(|_| corrupt(name))
    };
    Ok(Some(Campaign {
        id: row.try_get("id").map_err(|e| e.to_string())?,
        code: text("code")?,
        name: text("name")?,
        segment: text("segment")?,
        expression,
        occasion,
        starts_on: date("starts_on")?,
        ends_on: date("ends_on")?,
        coupon,
        coupon_json,
        sms_fa: optional("sms_fa")?,
        sms_en: optional("sms_en")?,
        state: text("state")?,
    }))
}

/// Who the campaign reaches at `now`: the segment's members on the occasion.
///
/// # Errors
/// The database's error.
pub async fn audience(
    pool: &Pool,
    campaign: &Campaign,
    now: UnixMillis,
) -> Result<Vec<Member>, String> {
    let mut members = audience::segment(pool, now, &campaign.expression)
        .await
        .map_err(|e| e.to_string())?;
    members.retain(|member| campaign.on_occasion(member));
    Ok(members)
}

/// The preview: who and how many, the messages, the coupons and the cost ceiling.
///
/// # Errors
/// The database's error.
pub async fn preview(pool: &Pool, campaign: &Campaign, now: UnixMillis) -> Result<Value, String> {
    let members = audience(pool, campaign, now).await?;
    let count = i64::try_from(members.len()).unwrap_or(i64::MAX);
    let with_phone = members.iter().filter(|m| m.phone.is_some()).count();
    let messages = if campaign.has_sms() || campaign.coupon.is_some() {
        with_phone
    } else {
        0
    };
    let coupons = if campaign.coupon.is_some() { count } else { 0 };
    Ok(json!({
        "campaign": campaign.code,
        "state": campaign.state,
        "members": count,
        "with_phone": with_phone,
        "messages": messages,
        "coupons": coupons,
        "coupon_ceiling_rials": campaign.coupon_ceiling(),
        "cost_ceiling_rials": coupons.saturating_mul(campaign.coupon_ceiling()),
        "sample": members.iter().take(20).map(|m| m.code.clone()).collect::<Vec<_>>(),
    }))
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// Members reached now.
    pub reached: u64,
    /// Members an earlier run (or the interrupted part of this one) had reached.
    pub already: u64,
    /// Coupons issued now.
    pub coupons: u64,
    /// Messages written to the outbox now.
    pub messages: u64,
}

/// Why a campaign did not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// No such campaign.
    #[error("no such campaign")]
    Unknown,
    /// Today is outside its window.
    #[error("the campaign runs from {starts_on} to {ends_on}; today is {today}")]
    OutsideWindow {
        /// Its first day.
        starts_on: CivilDate,
        /// Its last day.
        ends_on: CivilDate,
        /// Today (Tehran).
        today: CivilDate,
    },
    /// The database or the committer failed; what was done stays done, a run again finishes.
    #[error("{0}")]
    Store(String),
}

/// Runs the campaign `code` at `now`, once: a campaign already done answers with nothing
/// reached; a run cut short is finished by the next.
///
/// # Errors
/// [`RunError`].
pub async fn run(
    pool: &Pool,
    credits: &mpsc::Sender<CreditJob>,
    code: &str,
    now: UnixMillis,
    operator: &str,
) -> Result<RunOutcome, RunError> {
    let campaign = load(pool, code)
        .await
        .map_err(RunError::Store)?
        .ok_or(RunError::Unknown)?;
    let mut outcome = RunOutcome::default();
    if campaign.state == "done" {
        outcome.already = reached_count(pool, campaign.id).await?;
        return Ok(outcome);
    }
    let today = LocalDateTime::at(now, TEHRAN_UTC_OFFSET_MINUTES).date;
    if today < campaign.starts_on || today > campaign.ends_on {
        return Err(RunError::OutsideWindow {
            starts_on: campaign.starts_on,
            ends_on: campaign.ends_on,
            today,
        });
    }
    let store = |e: sqlx::Error| RunError::Store(e.to_string());
    sqlx::query(
        "UPDATE campaigns SET state = 'running', started_at_ms = COALESCE(started_at_ms, $1) \
         WHERE id = $2 AND state <> 'done'",
    )
    .bind(now.get())
    .bind(campaign.id)
    .execute(pool)
    .await
    .map_err(store)?;
    let members = audience(pool, &campaign, now)
        .await
        .map_err(RunError::Store)?;
    outcome.reached = reach(pool, &campaign, &members, now).await?;
    outcome.already = u64::try_from(members.len())
        .unwrap_or(u64::MAX)
        .saturating_sub(outcome.reached);
    if let Some(template) = campaign.template() {
        outcome.coupons =
            issue_coupons(pool, credits, &campaign, &members, &template, now, operator).await?;
        link(pool, &campaign, "coupon_id", "coupons").await?;
    }
    if campaign.has_sms() {
        outcome.messages = queue_messages(pool, &campaign, &members, now).await?;
        link(pool, &campaign, "notification_id", "notifications").await?;
    }
    sqlx::query("UPDATE campaigns SET state = 'done', done_at_ms = $1 WHERE id = $2")
        .bind(now.get())
        .bind(campaign.id)
        .execute(pool)
        .await
        .map_err(store)?;
    Ok(outcome)
}

/// Writes each member of the audience as reached (once), in short transactions of
/// [`MEMBERS_PER_TRANSACTION`]: how many were new.
async fn reach(
    pool: &Pool,
    campaign: &Campaign,
    members: &[Member],
    now: UnixMillis,
) -> Result<u64, RunError> {
    let store = |e: sqlx::Error| RunError::Store(e.to_string());
    let mut reached = 0;
    // Members are written in short transactions of MEMBERS_PER_TRANSACTION each, so the group
    // commit never waits long for the database's write lock (and SQLite pays one sync per
    // chunk, not one per member).
    for chunk in members.chunks(MEMBERS_PER_TRANSACTION) {
        let mut tx = crate::store::begin_write(pool).await.map_err(store)?;
        for member in chunk {
            reached += sqlx::query(
                "INSERT INTO campaign_members (campaign_id, member_id, at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (campaign_id, member_id) DO NOTHING",
            )
            .bind(campaign.id)
            .bind(member.id)
            .bind(now.get())
            .execute(&mut *tx)
            .await
            .map_err(store)?
            .rows_affected();
        }
        crate::engagement::commit_and_rest(tx)
            .await
            .map_err(store)?;
    }
    Ok(reached)
}

/// Issues the campaign's coupon, through the committer, to each member not linked to one yet:
/// how many were new.
async fn issue_coupons(
    pool: &Pool,
    credits: &mpsc::Sender<CreditJob>,
    campaign: &Campaign,
    members: &[Member],
    template: &CouponTemplate,
    now: UnixMillis,
    operator: &str,
) -> Result<u64, RunError> {
    let store = |e: sqlx::Error| RunError::Store(e.to_string());
    let mut issued = 0;
    let linked: Vec<i64> = sqlx::query_scalar(
        "SELECT member_id FROM campaign_members WHERE campaign_id = $1 AND coupon_id IS NOT NULL",
    )
    .bind(campaign.id)
    .fetch_all(pool)
    .await
    .map_err(store)?;
    let linked: std::collections::HashSet<i64> = linked.into_iter().collect();
    // Coupons are queued together so they share group commits, then awaited.
    let mut waiting = Vec::new();
    for member in members.iter().filter(|member| !linked.contains(&member.id)) {
        let issue = CouponIssue {
            key: coupon_key(&campaign.code, member.id),
            member: MemberId::new(member.id),
            kind: CouponKind::Campaign,
            terms: template.terms_at(now),
            // The campaign's own SMS is the member's one message; without one, the
            // coupon's notice is.
            card: if campaign.has_sms() {
                None
            } else {
                member.card.map(CardId::new)
            },
            operator: operator.to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        credits
            .send(CreditJob {
                operation: Operation::Coupon(issue),
                reply,
            })
            .await
            .map_err(|_| RunError::Store("the committer is not running".to_owned()))?;
        waiting.push(answer);
    }
    for answer in waiting {
        match answer.await {
            Ok(Ok(CreditOutcome::Applied)) => issued += 1,
            Ok(Ok(CreditOutcome::Repeated)) => {}
            Ok(Err(failure)) => return Err(RunError::Store(failure.to_string())),
            Err(_) => return Err(RunError::Store("the committer dropped a coupon".to_owned())),
        }
    }
    Ok(issued)
}

/// Queues the campaign's SMS to each member with a phone and a text in a language they read:
/// how many were new.
async fn queue_messages(
    pool: &Pool,
    campaign: &Campaign,
    members: &[Member],
    now: UnixMillis,
) -> Result<u64, RunError> {
    let store = |e: sqlx::Error| RunError::Store(e.to_string());
    let mut queued = 0;
    let reachable: Vec<(&Member, &str, Locale, &str)> = members
        .iter()
        .filter_map(|member| {
            let phone = member.phone.as_deref()?;
            let (locale, text) = in_language(
                member.locale,
                campaign.sms_fa.as_deref(),
                campaign.sms_en.as_deref(),
            )?;
            Some((member, phone, locale, text))
        })
        .collect();
    for chunk in reachable.chunks(MEMBERS_PER_TRANSACTION) {
        let mut tx = crate::store::begin_write(pool).await.map_err(store)?;
        for (member, phone, locale, text) in chunk {
            let message = Message::Campaign { text };
            queued += sqlx::query(
                "INSERT INTO notifications (idempotency_key, member_id, kind, locale, phone, \
                 body, created_at_ms, attempts, next_attempt_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(coupon_key(&campaign.code, member.id))
            .bind(member.id)
            .bind(message.kind())
            .bind(locale.as_str())
            .bind(*phone)
            .bind(message.render(*locale))
            .bind(now.get())
            .execute(&mut *tx)
            .await
            .map_err(store)?
            .rows_affected();
        }
        crate::engagement::commit_and_rest(tx)
            .await
            .map_err(store)?;
    }
    Ok(queued)
}

/// Members written per transaction by a run.
pub const MEMBERS_PER_TRANSACTION: usize = 200;

/// Links each reached member's row to its coupon or message (by their key), where not linked
/// yet: after a run, or after one cut short.
async fn link(
    pool: &Pool,
    campaign: &Campaign,
    column: &'static str,
    table: &'static str,
) -> Result<(), RunError> {
    // `column` and `table` are names written above, never input.
    sqlx::query(&format!(
        "UPDATE campaign_members SET {column} = (SELECT t.id FROM {table} t WHERE \
         t.idempotency_key = 'campaign:' || $1 || ':' || campaign_members.member_id) \
         WHERE campaign_id = $2 AND {column} IS NULL"
    ))
    .bind(&campaign.code)
    .bind(campaign.id)
    .execute(pool)
    .await
    .map_err(|e| RunError::Store(e.to_string()))?;
    Ok(())
}

/// The key of a campaign's coupon and message to a member.
pub fn coupon_key(campaign: &str, member: i64) -> String {
    format!("campaign:{campaign}:{member}")
}

async fn reached_count(pool: &Pool, campaign: i64) -> Result<u64, RunError> {
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM campaign_members WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_one(pool)
            .await
            .map_err(|e| RunError::Store(e.to_string()))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The report: members reached, coupons issued and redeemed, messages queued and delivered
/// (the campaign's SMS, or the coupon's notice when it has none),
/// and the purchases that redeemed a coupon (count, revenue as Σ G, and the coupons' part of
/// their discount), counting confirmed purchases only.
///
/// # Errors
/// The database's error.
pub async fn report(pool: &Pool, campaign: &Campaign) -> Result<Value, String> {
    let row = sqlx::query(
        "SELECT \
         (SELECT count(*) FROM campaign_members WHERE campaign_id = $1) AS members, \
         (SELECT count(*) FROM campaign_members WHERE campaign_id = $1 AND coupon_id IS NOT NULL) \
           AS coupons, \
         (SELECT count(*) FROM campaign_members cm JOIN notifications n ON n.id = cm.notification_id \
           OR n.idempotency_key = 'coupon:' || cm.coupon_id WHERE cm.campaign_id = $1) AS messages, \
         (SELECT count(*) FROM campaign_members cm JOIN notifications n ON n.id = cm.notification_id \
           OR n.idempotency_key = 'coupon:' || cm.coupon_id \
           WHERE cm.campaign_id = $1 AND n.delivered_at_ms IS NOT NULL) AS delivered, \
         (SELECT count(*) FROM campaign_members cm JOIN coupons k ON k.id = cm.coupon_id \
           JOIN transactions t ON t.id = k.txn_id \
           WHERE cm.campaign_id = $1 AND k.state = 'used' AND t.state = 'confirmed') AS redeemed, \
         (SELECT CAST(COALESCE(SUM(t.gross_rials), 0) AS BIGINT) FROM campaign_members cm \
           JOIN coupons k ON k.id = cm.coupon_id JOIN transactions t ON t.id = k.txn_id \
           WHERE cm.campaign_id = $1 AND k.state = 'used' AND t.state = 'confirmed') AS revenue, \
         (SELECT CAST(COALESCE(SUM(t.coupon_rials), 0) AS BIGINT) FROM campaign_members cm \
           JOIN coupons k ON k.id = cm.coupon_id JOIN transactions t ON t.id = k.txn_id \
           WHERE cm.campaign_id = $1 AND k.state = 'used' AND t.state = 'confirmed') AS discount",
    )
    .bind(campaign.id)
    .fetch_one(pool)
    .await
    .map_err(|e| e.to_string())?;
    let get = |name: &str| row.try_get::<i64, _>(name).map_err(|e| e.to_string());
    Ok(json!({
        "campaign": campaign.code,
        "state": campaign.state,
        "members": get("members")?,
        "coupons_issued": get("coupons")?,
        "messages_queued": get("messages")?,
        "messages_delivered": get("delivered")?,
        "coupons_redeemed": get("redeemed")?,
        "revenue_rials": get("revenue")?,
        "coupon_discount_rials": get("discount")?,
    }))
}
