//! Sign-in, sessions, CSRF and roles of the console.
//!
//! An operator signs in with their name and password (set by `lsw-switch operator add`, kept
//! as an Argon2id hash) or with their API token. The session is a random 32-byte cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` when the request came over TLS through a proxy that
//! says so with `X-Forwarded-Proto: https`), stored only as its SHA-256 with an expiry of
//! [`SESSION_MS`]. Every form carries the session's CSRF token; a POST without it, or with
//! another, is refused 403 before anything else is read. The sign-in form, before a session
//! exists, carries a token that must equal a cookie set with the form (double submit).

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::auth::{Operator, Role};
use crate::api::error::ApiError;
use crate::console::i18n::Locale;
use crate::console::layout::{self, Ctx};
use crate::console::limit::{self, ClientAddress};
use crate::console::ConsoleState;
use crate::store::console as store;

/// The session cookie's name.
pub const COOKIE: &str = "lsw_console";
/// The sign-in form's double-submit cookie.
pub const SIGN_IN_COOKIE: &str = "lsw_console_sign_in";
/// How long a session lasts: 8 hours.
pub const SESSION_MS: i64 = 8 * 3_600_000;

/// What a signed-in operator may do in the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleRole {
    /// Read every screen; no action buttons.
    Read,
    /// Read and act.
    Write,
    /// Read their own merchant's transactions, settlement and reports only.
    Merchant(String),
}

/// A signed-in request: who, their language, and the CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    /// The operator's name.
    pub name: String,
    /// Their role.
    pub role: ConsoleRole,
    /// Their language.
    pub locale: Locale,
    /// Toman beside rials.
    pub toman: bool,
    /// The token every form must carry.
    pub csrf: String,
}

impl Session {
    /// The operator as the API's handlers take them (a merchant operator reads as `read`).
    pub fn operator(&self) -> Operator {
        let role = if self.role == ConsoleRole::Write {
            Role::Write
        } else {
            Role::Read
        };
        Operator {
            name: self.name.clone(),
            role,
        }
    }

    /// A merchant operator's merchant.
    pub fn merchant(&self) -> Option<&str> {
        match &self.role {
            ConsoleRole::Merchant(code) => Some(code),
            _ => None,
        }
    }

    /// Whether action buttons are shown.
    pub fn can_write(&self) -> bool {
        self.role == ConsoleRole::Write
    }

    /// Refused unless the operator may see the whole network (not a merchant operator).
    ///
    /// # Errors
    /// [`Refusal::Forbidden`] for a merchant operator.
    pub fn network(&self) -> Result<(), Refusal> {
        if self.merchant().is_some() {
            Err(Refusal::Forbidden)
        } else {
            Ok(())
        }
    }

    /// Refused unless the form's token is the session's and the operator may write.
    ///
    /// # Errors
    /// [`Refusal::Forbidden`] when the token is missing or wrong, or the role only reads.
    pub fn check_form(&self, form: &HashMap<String, String>) -> Result<(), Refusal> {
        let given = form.get("csrf").map(String::as_bytes).unwrap_or_default();
        if !bool::from(given.ct_eq(self.csrf.as_bytes())) || !self.can_write() {
            return Err(Refusal::Forbidden);
        }
        Ok(())
    }
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum Refusal {
    /// Not signed in: to the sign-in page.
    SignIn,
    /// Not allowed (403).
    Forbidden,
    /// No such thing, or not this operator's (404).
    NotFound,
    /// The API refused or failed.
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        match error {
            ApiError::NotFound { .. } => Refusal::NotFound,
            ApiError::Forbidden => Refusal::Forbidden,
            other => Refusal::Api(other),
        }
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Refusal {
        Refusal::Api(ApiError::store(error))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refusal::SignIn => return Redirect::to("/console/sign-in").into_response(),
            Refusal::Forbidden => (StatusCode::FORBIDDEN, "Forbidden".to_owned()),
            Refusal::NotFound => (StatusCode::NOT_FOUND, "Not found".to_owned()),
            Refusal::Api(ApiError::Invalid { problems }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                problems
                    .iter()
                    .map(|(field, message)| format!("{field}: {message}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Refusal::Api(error) => return error.into_response(),
        };
        let body = html! {
            (maud::DOCTYPE)
            html { head { meta charset="utf-8"; title { (message) } link rel="stylesheet" href="/console/static/console.css"; }
                body { main { h1 class="refusal" { (status.as_u16()) " " (message) } p { a href="/console" { "Console" } } } } }
        };
        (status, body).into_response()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn secure(headers: &HeaderMap) -> &'static str {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    if tls {
        "; Secure"
    } else {
        ""
    }
}

impl FromRequestParts<Arc<ConsoleState>> for Session {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ConsoleState>,
    ) -> Result<Session, Refusal> {
        let id = cookie(&parts.headers, COOKIE).ok_or(Refusal::SignIn)?;
        let now = state.api.clock.now().get();
        let row = store::session(&state.api.pool, &digest(&id), now)
            .await?
            .ok_or(Refusal::SignIn)?;
        let operator = row.operator;
        let role = match (&operator.merchant_code, operator.role.as_str()) {
            (Some(code), _) => ConsoleRole::Merchant(code.clone()),
            (None, "write") => ConsoleRole::Write,
            (None, _) => ConsoleRole::Read,
        };
        Ok(Session {
            name: operator.name,
            role,
            locale: Locale::parse(&operator.locale),
            toman: operator.show_toman,
            csrf: row.csrf,
        })
    }
}

/// Hashes a password with Argon2id and a random salt (PHC string).
///
/// # Errors
/// When hashing fails (it does not for valid parameters).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let mut salt = [0_u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// `GET /console/sign-in`.
pub async fn sign_in_page(headers: HeaderMap) -> Response {
    sign_in_form(&headers, None)
}

fn sign_in_form(headers: &HeaderMap, failed: Option<&str>) -> Response {
    let token = random_hex();
    let locale = Locale::En;
    let body = layout::bare(
        locale,
        "Sign in",
        html! {
            h1 { (locale.t("title")) }
            @if let Some(message) = failed { p class="error" role="alert" { (message) } }
            form method="post" action="/console/sign-in" class="sign-in" {
                input type="hidden" name="csrf" value=(token);
                label { (locale.t("operator")) input name="name" autocomplete="username"; }
                label { (locale.t("password")) input name="password" type="password" autocomplete="current-password"; }
                p { (locale.t("or")) }
                label { (locale.t("token")) input name="token" type="password" autocomplete="off"; }
                button type="submit" { (locale.t("sign_in")) }
            }
        },
    );
    let set = format!(
        "{SIGN_IN_COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=600{}",
        secure(headers)
    );
    let status = if failed.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, [(header::SET_COOKIE, set)], body).into_response()
}

/// `POST /console/sign-in`: name and password, or an API token. Refused with 429, before
/// the password or token is checked, while the name or the address is over the sign-in limit
/// ([`limit`]); every failure counts against the address, and a password's also against the
/// name.
pub async fn sign_in(
    State(state): State<Arc<ConsoleState>>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    let given = form.get("csrf").cloned().unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        return Refusal::Forbidden.into_response();
    }
    let pool = &state.api.pool;
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    let name = form.get("name").map(|n| n.trim()).unwrap_or_default();
    // A token names no operator until it is looked up: it counts against the address only.
    let limited_name = if token.is_empty() { name } else { "" };
    let now = state.api.clock.now().get();
    if let Some(refused) = state.limit.refused(limited_name, address, now) {
        let by = if refused.by_name { "name" } else { "address" };
        tracing::warn!(operator = limited_name, %address, by, "console sign-in refused: too many failed sign-ins");
        return limit::refusal_page(refused.retry_after_ms);
    }
    let found = if !token.is_empty() {
        store::operator_by_token(pool, &digest(token)).await
    } else {
        let password = form.get("password").cloned().unwrap_or_default();
        match store::operator_with_password(pool, name).await {
            Ok(Some((operator, Some(phc)))) => {
                let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
                    .await
                    .unwrap_or(false);
                Ok(ok.then_some(operator))
            }
            Ok(_) => Ok(None),
            Err(error) => Err(error),
        }
    };
    let operator = match found {
        Ok(Some(operator)) => operator,
        Ok(None) => {
            state.limit.failed(limited_name, address, now);
            let with = if token.is_empty() {
                "password"
            } else {
                "token"
            };
            tracing::info!(operator = limited_name, %address, with, "console sign-in failed");
            return sign_in_form(&headers, Some("Wrong name, password or token."));
        }
        Err(error) => return Refusal::from(error).into_response(),
    };
    state.limit.succeeded(&operator.name);
    let id = random_hex();
    if let Err(error) = store::open_session(
        pool,
        &digest(&id),
        &operator.name,
        &random_hex(),
        now,
        now + SESSION_MS,
    )
    .await
    {
        return Refusal::from(error).into_response();
    }
    let max_age = SESSION_MS / 1000;
    let set = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure(&headers)
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set),
            (header::LOCATION, "/console".to_owned()),
        ],
    )
        .into_response()
}

/// `POST /console/sign-out`: ends the session.
///
/// # Errors
/// [`Refusal::Forbidden`] without the session's CSRF token.
pub async fn sign_out(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let given = form.get("csrf").map(String::as_bytes).unwrap_or_default();
    if !bool::from(given.ct_eq(session.csrf.as_bytes())) {
        return Err(Refusal::Forbidden);
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        store::close_session(&state.api.pool, &digest(&id)).await?;
    }
    let clear = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear),
            (header::LOCATION, "/console/sign-in".to_owned()),
        ],
    )
        .into_response())
}

/// `GET /console/settings`: language and toman.
pub async fn settings_page(session: Session, State(state): State<Arc<ConsoleState>>) -> Response {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let body = html! {
        h1 { (l.t("settings")) }
        form method="post" action="/console/settings" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { (l.t("language")) select name="locale" {
                option value="en" selected[l == Locale::En] { "English" }
                option value="fa" selected[l == Locale::Fa] { "فارسی" }
            } }
            label { input type="checkbox" name="toman" value="1" checked[session.toman]; (l.t("show_toman")) }
            button type="submit" { (l.t("save")) }
        }
    };
    layout::page(&ctx, "settings", body).into_response()
}

/// `POST /console/settings`: every operator may set their own language (CSRF checked).
///
/// # Errors
/// [`Refusal::Forbidden`] without the session's CSRF token.
pub async fn settings(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let given = form.get("csrf").map(String::as_bytes).unwrap_or_default();
    if !bool::from(given.ct_eq(session.csrf.as_bytes())) {
        return Err(Refusal::Forbidden);
    }
    let locale = Locale::parse(form.get("locale").map_or("en", String::as_str));
    let toman = form.get("toman").is_some_and(|v| v == "1");
    store::set_preferences(&state.api.pool, &session.name, locale.as_str(), toman).await?;
    Ok(Redirect::to("/console").into_response())
}

/// Adds an operator for the console and the API: a token (returned, shown once), the role,
/// for a merchant operator their merchant, their language and, when given, a password (kept
/// as its Argon2id hash). `role` is `read`, `write` or `merchant` (which needs `merchant`).
///
/// # Errors
/// When the role or merchant is wrong, the name is taken or the database fails.
pub async fn add_operator(
    pool: &crate::store::Pool,
    name: &str,
    role: &str,
    merchant: Option<&str>,
    locale: Locale,
    password: Option<&str>,
    now: crate::domain::UnixMillis,
) -> anyhow::Result<String> {
    let stored = match (role, merchant) {
        ("merchant", Some(_)) => Role::Read,
        ("merchant", None) => anyhow::bail!("a merchant operator needs --merchant CODE"),
        (_, Some(_)) => anyhow::bail!("--merchant goes with --role merchant only"),
        (other, None) => Role::parse(other)
            .ok_or_else(|| anyhow::anyhow!("role must be read, write or merchant"))?,
    };
    let token = crate::api::auth::add_token(pool, name, stored, now).await?;
    let phc = match password {
        Some(password) if password.len() >= 8 => {
            Some(hash_password(password).map_err(|error| anyhow::anyhow!("hashing: {error}"))?)
        }
        Some(_) => anyhow::bail!("a password has at least 8 characters"),
        None => None,
    };
    store::set_operator_console(pool, name, phc.as_deref(), merchant, locale.as_str()).await?;
    Ok(token)
}
