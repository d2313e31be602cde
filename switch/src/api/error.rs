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

/// Puts an error answer that is not JSON into the error shape: axum's own rejections (413 for
/// a body over the limit, 400 for a path that is not UTF-8 or a query number out of range,
/// 405, 415) and a body cut off by the admin port's deadline; not the router's bare 404 for a
/// path outside the API. The status and headers (`Allow`)
/// stay; the message is this API's own for the status, never axum's text, which can quote
/// the request.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    // The router's bare 404 (no content type) is for a path outside the API, and stays bare:
    // it tells a route that is not served from a record that is not found.
    let outside =
        status == StatusCode::NOT_FOUND && !response.headers().contains_key(header::CONTENT_TYPE);
    if is_json || outside || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    let body = json!({"error": rejection_message(status), "problems": []});
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

fn rejection_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => {
            "malformed request: a path or query parameter that does not parse, or a body \
             that is not valid or did not arrive in time"
        }
        StatusCode::NOT_FOUND => "no such resource",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this path",
        StatusCode::PAYLOAD_TOO_LARGE => "body too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content type must be application/json",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid body",
        _ => status.canonical_reason().unwrap_or("request refused"),
    }
}
