//! Operator tokens: `Authorization: Bearer <token>`. A token is 32 random bytes in hex behind
//! `lsw_`, shown once when it is made (`lsw-switch token add`) and stored only as its SHA-256,
//! with the operator's name and role. `read` tokens may call every `GET`; `write` tokens may
//! also change reference data.

use std::sync::Arc;

use crate::store::Pool;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::domain::UnixMillis;
use crate::store::StoreError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read only.
    Read,
    /// Read and change.
    Write,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            _ => None,
        }
    }
}

/// The operator a request's token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The token's name, written in the audit log.
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A request with any valid token.
#[derive(Debug)]
pub struct Reader(pub Operator);

/// A request with a `write` token.
#[derive(Debug)]
pub struct Writer(pub Operator);

impl FromRequestParts<Arc<ApiState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Reader, ApiError> {
        authenticate(parts, &state.pool).await.map(Reader)
    }
}

impl FromRequestParts<Arc<ApiState>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Writer, ApiError> {
        let operator = authenticate(parts, &state.pool).await?;
        if operator.role != Role::Write {
            return Err(ApiError::Forbidden);
        }
        Ok(Writer(operator))
    }
}

/// Makes a token for `name` with `role` and returns its text: the only time it is shown.
///
/// # Errors
/// [`StoreError`] when the name is taken or the database fails.
pub async fn add_token(
    pool: &Pool,
    name: &str,
    role: Role,
    now: UnixMillis,
) -> Result<String, StoreError> {
    let mut secret = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!("lsw_{}", hex::encode(secret));
    sqlx::query(
        "INSERT INTO operator_tokens (name, token_sha256, role, created_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(name)
    .bind(digest(&token).to_vec())
    .bind(role.as_str())
    .bind(now.get())
    .execute(pool)
    .await?;
    Ok(token)
}

/// Revokes the token named `name`; `false` when there is none (or it was revoked already).
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn revoke_token(pool: &Pool, name: &str, now: UnixMillis) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE operator_tokens SET revoked_at_ms = $1 WHERE name = $2 AND revoked_at_ms IS NULL",
    )
    .bind(now.get())
    .bind(name)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn authenticate(parts: &Parts, pool: &Pool) -> Result<Operator, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    let token = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthenticated)?;
    let row = sqlx::query(
        "SELECT name, role, merchant_code FROM operator_tokens \
         WHERE token_sha256 = $1 AND revoked_at_ms IS NULL",
    )
    .bind(digest(token).to_vec())
    .fetch_optional(pool)
    .await
    .map_err(ApiError::store)?
    .ok_or(ApiError::Unauthenticated)?;
    let name: String = row.try_get("name").map_err(ApiError::store)?;
    let role: String = row.try_get("role").map_err(ApiError::store)?;
    let role = Role::parse(&role).ok_or(ApiError::Unauthenticated)?;
    // A merchant operator reads one merchant's data, through the console only (docs/console.md).
    let merchant: Option<String> = row.try_get("merchant_code").map_err(ApiError::store)?;
    if merchant.is_some() {
        return Err(ApiError::Forbidden);
    }
    Ok(Operator { name, role })
}
