//! A minimal client of the operator API (`docs/operator-api.md`): one HTTP/1.1 request per
//! connection (`connection: close`), bearer token and optional idempotency key, so the demo
//! drives the API the way an operator's script would, over real TCP.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest answer read: the API's answers to the calls the simulator makes are small JSON
/// objects, so anything larger is a fault, not something to buffer.
pub const ANSWER_BYTES_MAX: u64 = 64 * 1024;
/// Longest wait for one call, connection included: a call waits for one group commit, which
/// takes milliseconds; a stalled switch must not stall the caller for ever.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One call's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// Whether the switch answered a repeat (`Idempotent-Replayed: true`).
    pub replayed: bool,
    /// The body, as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Connecting, writing or reading failed.
    #[error("operator api: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within [`CALL_TIMEOUT`].
    #[error("operator api: no answer within {CALL_TIMEOUT:?}")]
    Timeout,
    /// The answer was not HTTP, or was larger than [`ANSWER_BYTES_MAX`].
    #[error("operator api: malformed answer")]
    Malformed,
}

/// A `POST` of the JSON `body` to `path` with a bearer `token` and an `Idempotency-Key`.
///
/// # Errors
/// [`CallError`] when the switch cannot be reached or does not answer in HTTP.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    token: &str,
    key: &str,
    body: &str,
) -> Result<Answer, CallError> {
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str()), ("idempotency-key", key)];
    call(addr, "POST", path, &headers, body).await
}

/// A `method` call of `path` with these headers and the JSON `body` (empty: none).
///
/// # Errors
/// [`CallError`] when the switch cannot be reached or does not answer in HTTP.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, CallError> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    tokio::time::timeout(CALL_TIMEOUT, exchange(addr, request.as_bytes()))
        .await
        .map_err(|_| CallError::Timeout)?
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> Result<Answer, CallError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut bytes = Vec::new();
    // One byte over the limit tells a full answer from a cut one.
    let read = (&mut stream)
        .take(ANSWER_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .await?;
    if u64::try_from(read).map_or(true, |read| read > ANSWER_BYTES_MAX) {
        return Err(CallError::Malformed);
    }
    parse(&bytes)
}

/// The status line, the one header the simulator reads, and the body; the server closes the
/// connection after its answer, so the body is everything after the head.
fn parse(bytes: &[u8]) -> Result<Answer, CallError> {
    let text = std::str::from_utf8(bytes).map_err(|_| CallError::Malformed)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or(CallError::Malformed)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse::<u16>().ok())
        .ok_or(CallError::Malformed)?;
    let replayed = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("idempotent-replayed: true"));
    Ok(Answer {
        status,
        replayed,
        body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let answer = parse(
            b"HTTP/1.1 200 OK\r\nidempotent-replayed: true\r\ncontent-length: 8\r\n\r\n{\"a\": 1}",
        );
        assert!(answer.as_ref().is_ok_and(|a| a.status == 200 && a.replayed));
        assert!(answer.is_ok_and(|a| a.body["a"] == 1));
        let created = parse(b"HTTP/1.1 201 Created\r\n\r\n");
        assert!(created.is_ok_and(|a| a.status == 201 && !a.replayed && a.body.is_null()));
        assert!(parse(b"HTTP/1.1 201").is_err());
        assert!(parse(b"garbage\r\n\r\n").is_err());
    }
}
