//! `GET /api/v1/transactions/{id}/explanation`: why a transaction was priced so, from the
//! terms of the reference version that priced it (`store::explain`, docs/console.md).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::store::explain;

/// The explanation of one transaction.
///
/// # Errors
/// [`ApiError::NotFound`] when the id names no transaction (or is not a number).
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = ApiError::NotFound {
        what: "transaction",
    };
    let id: i64 = id.parse().map_err(|_| not_found)?;
    let explanation = explain::explain(&state.pool, id)
        .await
        .map_err(ApiError::store)?
        .ok_or(ApiError::NotFound {
            what: "transaction",
        })?;
    serde_json::to_value(explanation)
        .map(Json)
        .map_err(ApiError::store)
}
