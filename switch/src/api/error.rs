//! The API's one error shape: `{"error": "...", "problems": [{"field": ..., "message": ...}]}`
//! with a status code per kind. Messages never carry a PAN, a key or a token; store failures
//! are logged and answered with a generic message.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::import::{ImportError, Problem};

/// Why a request was refused. Nothing was changed.
#[derive(Debug)]
pub enum ApiError {
    /// No bearer token, or one that is unknown or revoked (401).
    Unauthenticated,
    /// A read-only token asked to change something (403).
    Forbidden,
    /// No such resource (404).
    NotFound {
        /// What was looked for.
        what: &'static str,
    },
    /// The body is not JSON or not an object (400).
    BadJson {
        /// The parser's message (position, never content).
        message: String,
    },
    /// The request is well-formed but its fields are wrong (422), each with its field name.
    Invalid {
        /// Field and message per problem.
        problems: Vec<(String, String)>,
    },
    /// It conflicts with what exists (409).
    Conflict {
        /// Which conflict.
        message: String,
    },
    /// The store failed (500); the cause is logged, not returned.
    Store {
        /// The cause, for the log.
        cause: String,
    },
}

impl ApiError {
    /// A store error, logged once here.
    pub fn store(cause: impl std::fmt::Display) -> ApiError {
        ApiError::Store {
            cause: cause.to_string(),
        }
    }

    /// The problems of a rejected document, with the section and index (`merchants[0].`) cut
    /// from their paths: the API takes one record, so the field name is what the caller needs.
    pub fn from_import(error: ImportError) -> ApiError {
        match error {
            ImportError::Invalid { problems, .. } => ApiError::Invalid {
                problems: problems.into_iter().map(field_of).collect(),
            },
            ImportError::Syntax { message } => ApiError::BadJson { message },
            ImportError::TooLarge { .. } => ApiError::BadJson {
                message: "body too large".to_owned(),
            },
        }
    }
}

fn field_of(problem: Problem) -> (String, String) {
    let field = match problem.path.split_once("].") {
        Some((_, field)) => field.to_owned(),
        // A problem of the whole record: an unknown field names itself in the message.
        None => problem
            .message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map_or(String::new(), |(field, _)| field.to_owned()),
    };
    (field, problem.message)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, problems) = match self {
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "missing, unknown or revoked bearer token".to_owned(),
                Vec::new(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "this token may only read".to_owned(),
                Vec::new(),
            ),
            ApiError::NotFound { what } => {
                (StatusCode::NOT_FOUND, format!("no such {what}"), Vec::new())
            }
            ApiError::BadJson { message } => (
                StatusCode::BAD_REQUEST,
                format!("body is not a JSON object: {message}"),
                Vec::new(),
            ),
            ApiError::Invalid { problems } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid fields".to_owned(),
                problems,
            ),
            ApiError::Conflict { message } => (StatusCode::CONFLICT, message, Vec::new()),
            ApiError::Store { cause } => {
                error!(%cause, "operator api: store failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store failed; nothing was changed".to_owned(),
                    Vec::new(),
                )
            }
        };
        let problems: Vec<_> = problems
            .into_iter()
            .map(|(field, message)| json!({"field": field, "message": message}))
            .collect();
        let body = json!({"error": message, "problems": problems});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
