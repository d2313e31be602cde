//! Resources that are one import section each and are created or replaced by code with `PUT`:
//! merchants, tiers, discount rules, the three kinds of groups and members. The body is the record in the import format;
//! `GET` returns the same shape, so a read can be sent back.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::auth::{Operator, Reader, Writer};
use crate::api::change::{names_in, AuditEntry, Change};
use crate::api::error::ApiError;
use crate::api::views::Params;
use crate::api::{body_object, find, named, ApiState};
use crate::domain::reference::{GroupRecord, MemberRecord, RuleRecord, TierRecord};
use crate::domain::{Code, Rials, RuleKind, Weekday};
use crate::domain::{LoadedReference, ReferenceData};
use crate::import;
use crate::store::reference;

/// One kind of record: its import section, its name in errors and audit rows, and how it is
/// found and shown.
pub struct Kind {
    /// The import section (`tiers`, `merchant_groups`, ...).
    pub section: &'static str,
    /// The resource's name (`tier`, `merchant group`, ...).
    pub resource: &'static str,
    /// Every stored record of this kind, shown.
    pub all: fn(&LoadedReference) -> Vec<(String, Value)>,
    /// The records of this kind in a parsed change, shown.
    pub changed: fn(&ReferenceData) -> Vec<Value>,
}

/// Discount rules and campaigns (`/api/v1/rules`).
pub const RULES: Kind = Kind {
    section: "rules",
    resource: "rule",
    all: |loaded| {
        loaded
            .data
            .rules
            .iter()
            .map(|r| (r.code.to_string(), rule(r)))
            .collect()
    },
    changed: |data| data.rules.iter().map(rule).collect(),
};
/// Merchants (`/api/v1/merchants`).
pub const MERCHANTS: Kind = Kind {
    section: "merchants",
    resource: "merchant",
    all: |loaded| {
        let merchants = &loaded.data.merchants;
        merchants
            .iter()
            .map(|m| (m.code.to_string(), crate::api::merchants::view(m)))
            .collect()
    },
    changed: |data| {
        data.merchants
            .iter()
            .map(crate::api::merchants::view)
            .collect()
    },
};
/// Tiers (`/api/v1/tiers`).
pub const TIERS: Kind = Kind {
    section: "tiers",
    resource: "tier",
    all: |loaded| {
        loaded
            .data
            .tiers
            .iter()
            .map(|t| (t.code.to_string(), tier(t)))
            .collect()
    },
    changed: |data| data.tiers.iter().map(tier).collect(),
};
/// Merchant groups (`/api/v1/merchant-groups`).
pub const MERCHANT_GROUPS: Kind = Kind {
    section: "merchant_groups",
    resource: "merchant group",
    all: |loaded| groups(&loaded.data.merchant_groups),
    changed: |data| data.merchant_groups.iter().map(group).collect(),
};
/// Member groups (`/api/v1/member-groups`).
pub const MEMBER_GROUPS: Kind = Kind {
    section: "member_groups",
    resource: "member group",
    all: |loaded| groups(&loaded.data.member_groups),
    changed: |data| data.member_groups.iter().map(group).collect(),
};
/// Terminal groups (`/api/v1/terminal-groups`).
pub const TERMINAL_GROUPS: Kind = Kind {
    section: "terminal_groups",
    resource: "terminal group",
    all: |loaded| groups(&loaded.data.terminal_groups),
    changed: |data| data.terminal_groups.iter().map(group).collect(),
};
/// Members (`/api/v1/members`).
pub const MEMBERS: Kind = Kind {
    section: "members",
    resource: "member",
    all: |loaded| {
        loaded
            .data
            .members
            .iter()
            .map(|m| (m.code.to_string(), member(m)))
            .collect()
    },
    changed: |data| data.members.iter().map(member).collect(),
};

/// Records a list answers when `limit` is not given.
pub const LIST_LIMIT_DEFAULT: i64 = 100;
/// Most records one page of a list answers: a page is read and rendered whole.
pub const LIST_LIMIT_MAX: i64 = 1_000;

/// `GET` of one page of the records of `kind`, by code ascending: `{section: [...], "next":
/// the code to pass as `after` for the next page, or null}`. One indexed range read.
///
/// # Errors
/// [`ApiError`] when the store fails or the paging is wrong.
pub async fn list(
    kind: &Kind,
    state: &ApiState,
    pairs: Vec<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::new(pairs, &["after", "limit"]);
    let limit = params.integer("limit", 1..=LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT);
    let after = params.code("after");
    params.checked()?;
    // Given once checked passes; the defaults are the parser's own ("" is before every code).
    let after = after.unwrap_or_default();
    let limit = u32::try_from(limit.unwrap_or(LIST_LIMIT_DEFAULT)).unwrap_or(u32::MAX);
    let loaded = reference::load_page(&state.pool, &state.kek, kind.section, &after, limit)
        .await
        .map_err(ApiError::store)?;
    let mut records = (kind.all)(&loaded);
    // Tiers and groups are read whole (tens of rows); the other kinds come paged already.
    records.retain(|(code, _)| code.as_str() > after.as_str());
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let full = records.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next = records
        .last()
        .filter(|_| full)
        .map(|(code, _)| Value::from(code.clone()));
    let items: Vec<Value> = records.into_iter().map(|(_, value)| value).collect();
    Ok(Json(json!({ kind.section: items, "next": next })))
}

/// `GET` of one record of `kind`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown code.
pub async fn show(kind: &Kind, state: &ApiState, code: &str) -> Result<Json<Value>, ApiError> {
    let loaded = named(state, vec![code.to_owned()]).await?;
    let records = (kind.all)(&loaded);
    let (_, value) = find(&records, kind.resource, |(c, _)| c == code)?;
    Ok(Json(value.clone()))
}

/// `PUT` of one record of `kind`: created (201) or replaced (200), validated as an import.
///
/// # Errors
/// [`ApiError::Invalid`] naming each wrong field; nothing is changed.
pub async fn put(
    kind: &Kind,
    state: &ApiState,
    operator: &Operator,
    code: String,
    body: &[u8],
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = with_code(body_object(body)?, &code)?;
    let detail = Value::Object(record.clone());
    let mut names = vec![code.clone()];
    names_in(&detail, &mut names);
    let change = Change::begin(state, names).await?;
    let exists = (kind.all)(&change.current).iter().any(|(c, _)| *c == code);
    let data = import::parse_over(
        json!({ kind.section: [Value::Object(record)] }),
        &state.pan_key,
        &change.current.ids,
    )
    .map_err(ApiError::from_import)?;
    let saved = (kind.changed)(&data)
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound {
            what: kind.resource,
        })?;
    let entry = AuditEntry {
        action: if exists { "replace" } else { "create" },
        resource: kind.resource,
        code,
        detail,
    };
    change.save(operator, &data, entry).await?;
    let status = if exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved)))
}

/// The body with its `code` set to the path's; a different `code` in the body is refused.
///
/// # Errors
/// [`ApiError::Invalid`] when the body names another code.
pub fn with_code(
    mut record: Map<String, Value>,
    code: &str,
) -> Result<Map<String, Value>, ApiError> {
    match record.get("code") {
        None => {
            record.insert("code".to_owned(), Value::from(code));
            Ok(record)
        }
        Some(given) if given.as_str() == Some(code) => Ok(record),
        Some(_) => Err(ApiError::Invalid {
            problems: vec![("code".to_owned(), "must be the code in the path".to_owned())],
        }),
    }
}

/// A rule as the import format writes it (BIN ranges as full 6-digit bounds).
fn rule(record: &RuleRecord) -> Value {
    let terms = &record.terms;
    let who = &record.eligibility;
    let list = |codes: &[Code]| {
        codes
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let (percent, fixed) = match terms.kind {
        RuleKind::Percent(rate) => (Value::from(rate.to_string()), Value::Null),
        RuleKind::Fixed(amount) => (Value::Null, Value::from(amount.get())),
    };
    let window = &terms.window;
    let weekdays: Vec<&str> = Weekday::ALL
        .iter()
        .filter(|day| window.weekdays.contains(**day))
        .map(|day| day.short_name())
        .collect();
    let minute = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let bins: Vec<Value> = who
        .bins
        .iter()
        .map(|range| {
            json!({
                "from": String::from_utf8_lossy(range.low()),
                "to": String::from_utf8_lossy(range.high()),
            })
        })
        .collect();
    json!({
        "code": record.code.as_str(),
        "name": terms.name,
        "percent": percent,
        "fixed_rials": fixed,
        "basket_rials_min": terms.basket_rials_min.get(),
        "discount_rials_max": terms.discount_rials_max.map(Rials::get),
        "valid_from": window.valid_from.map(|d| d.to_string()),
        "valid_until": window.valid_until.map(|d| d.to_string()),
        "weekdays": weekdays,
        "hours_from": window.hours.map(|h| minute(h.from())),
        "hours_until": window.hours.map(|h| minute(h.until())),
        "merchants": list(&who.merchants),
        "merchant_groups": list(&who.merchant_groups),
        "tiers": list(&who.tiers),
        "member_groups": list(&who.member_groups),
        "terminal_groups": list(&who.terminal_groups),
        "bins": bins,
        "budget_rials": terms.budget_rials.map(Rials::get),
        "member_daily_uses_max": terms.member_daily_uses_max,
    })
}

fn tier(record: &TierRecord) -> Value {
    json!({
        "code": record.code.as_str(),
        "name": record.name,
        "cashback_rate": record.cashback_rate.to_string(),
        "rank": record.rank,
        "spend_rials_min": record.spend_rials_min.map(Rials::get),
        "purchases_min": record.purchases_min,
    })
}

fn group(record: &GroupRecord) -> Value {
    json!({ "code": record.code.as_str(), "name": record.name })
}

fn groups(records: &[GroupRecord]) -> Vec<(String, Value)> {
    records
        .iter()
        .map(|g| (g.code.to_string(), group(g)))
        .collect()
}

fn member(record: &MemberRecord) -> Value {
    let groups: Vec<&str> = record.groups.iter().map(|code| code.as_str()).collect();
    json!({
        "code": record.code.as_str(),
        "groups": groups,
        "phone": record.phone.as_ref().map(crate::domain::Phone::as_str),
        "locale": record.locale.as_str(),
        "birth_date": record.birth_date.map(|date| date.to_string()),
        "joined_on": record.joined_on.map(|date| date.to_string()),
        "referred_by": record.referred_by.as_ref().map(|code| code.as_str()),
    })
}

/// Handlers for one [`Kind`], as axum wants them: a list, a read and a `PUT`.
macro_rules! kind_handlers {
    ($module:ident, $kind:expr) => {
        /// The handlers of one record kind.
        pub mod $module {
            use super::*;

            /// `GET` the list.
            ///
            /// # Errors
            /// See [`super::list`].
            pub async fn list(
                _reader: Reader,
                State(state): State<Arc<ApiState>>,
                Query(pairs): Query<Vec<(String, String)>>,
            ) -> Result<Json<Value>, ApiError> {
                super::list(&$kind, &state, pairs).await
            }

            /// `GET` one.
            ///
            /// # Errors
            /// See [`super::show`].
            pub async fn show(
                _reader: Reader,
                State(state): State<Arc<ApiState>>,
                Path(code): Path<String>,
            ) -> Result<Json<Value>, ApiError> {
                super::show(&$kind, &state, &code).await
            }

            /// `PUT` one.
            ///
            /// # Errors
            /// See [`super::put`].
            pub async fn put(
                Writer(operator): Writer,
                State(state): State<Arc<ApiState>>,
                Path(code): Path<String>,
                body: Bytes,
            ) -> Result<(StatusCode, Json<Value>), ApiError> {
                super::put(&$kind, &state, &operator, code, &body).await
            }
        }
    };
}

kind_handlers!(merchants, MERCHANTS);
kind_handlers!(tiers, TIERS);
kind_handlers!(rules, RULES);
kind_handlers!(merchant_groups, MERCHANT_GROUPS);
kind_handlers!(member_groups, MEMBER_GROUPS);
kind_handlers!(terminal_groups, TERMINAL_GROUPS);
kind_handlers!(members, MEMBERS);
