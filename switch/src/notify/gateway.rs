//! The SMS gateway client: one JSON `POST` per message over plain HTTP/1.1 on a
//! `tokio::net::TcpStream`. Only `http://` URLs: TLS is expected from a local proxy (a
//! sidecar such as stunnel or nginx on the same host), which keeps a TLS stack and an HTTP
//! client crate out of the switch.
//!
//! The request: `POST path` with `Content-Type: application/json`, the body
//! `{"to": phone, "text": body, "key": key}`, the header `Idempotency-Key: key`, and
//! `Authorization: Bearer token` when a token is configured. Any `2xx` status is delivered;
//! anything else, a timeout or a connection closed before the status line is a failure to
//! retry.

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Bytes of the response read to find its status line: the line is short, and the rest of
/// the response is not needed.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 1024;

/// A gateway URL, `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl {
    host: String,
    port: u16,
    path: String,
}

/// Why a gateway URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `http://`.
    #[error("must start with http:// (put a local TLS proxy in front of an https gateway)")]
    Scheme,
    /// No host, or a port that is not a number.
    #[error("must be http://host[:port][/path]")]
    Malformed,
}

impl GatewayUrl {
    /// Parses `http://host[:port][/path]`.
    ///
    /// # Errors
    /// [`UrlError`] for another scheme or a malformed authority.
    pub fn parse(url: &str) -> Result<GatewayUrl, UrlError> {
        let rest = url.strip_prefix("http://").ok_or(UrlError::Scheme)?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| UrlError::Malformed)?),
            None => (authority, 80),
        };
        let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if host.is_empty() || !printable(host) || !printable(path) {
            return Err(UrlError::Malformed);
        }
        Ok(GatewayUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// The gateway's bearer token. Its `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayToken(String);

impl GatewayToken {
    /// A token; surrounding white space (a file's last newline) is removed.
    ///
    /// # Errors
    /// [`UrlError::Malformed`] when it is empty or holds other than visible ASCII (it goes in a
    /// header).
    pub fn new(token: &str) -> Result<GatewayToken, UrlError> {
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UrlError::Malformed);
        }
        Ok(GatewayToken(token.to_owned()))
    }
}

impl fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

/// Why a message was not delivered: short texts for the outbox's `last_error`, never with the
/// number or the text of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The gateway answered with a status other than `2xx`.
    #[error("gateway answered {0}")]
    Status(u16),
    /// No complete answer within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The connection failed or closed before a status line.
    #[error("connection: {0}")]
    Io(String),
    /// The answer does not start with an HTTP status line.
    #[error("not an http response")]
    Malformed,
}

/// A client of one gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    url: GatewayUrl,
    token: Option<GatewayToken>,
    timeout: Duration,
}

impl Gateway {
    /// A client that gives each request `timeout`, connection included.
    pub fn new(url: GatewayUrl, token: Option<GatewayToken>, timeout: Duration) -> Gateway {
        Gateway {
            url,
            token,
            timeout,
        }
    }

    /// Sends one message.
    ///
    /// # Errors
    /// [`SendError`] unless the gateway answered `2xx` in time.
    pub async fn send(&self, to: &str, text: &str, key: &str) -> Result<(), SendError> {
        let request = self.request(to, text, key);
        let status = tokio::time::timeout(self.timeout, self.exchange(&request))
            .await
            .map_err(|_| SendError::Timeout)??;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(SendError::Status(status))
        }
    }

    fn request(&self, to: &str, text: &str, key: &str) -> Vec<u8> {
        let body = serde_json::json!({ "to": to, "text": text, "key": key }).to_string();
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nIdempotency-Key: {}\r\nConnection: close\r\n",
            self.url.path,
            self.url.host,
            self.url.port,
            body.len(),
            header_value(key),
        );
        if let Some(token) = &self.token {
            head.push_str("Authorization: Bearer ");
            head.push_str(&token.0);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body.as_bytes());
        request
    }

    async fn exchange(&self, request: &[u8]) -> Result<u16, SendError> {
        let io = |e: std::io::Error| SendError::Io(e.kind().to_string());
        let mut stream = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(io)?;
        stream.write_all(request).await.map_err(io)?;
        let mut head = Vec::with_capacity(256);
        let mut buffer = [0_u8; 256];
        loop {
            if let Some(status) = status_code(&head)? {
                return Ok(status);
            }
            if head.len() >= RESPONSE_HEAD_BYTES_MAX {
                return Err(SendError::Malformed);
            }
            let read = stream.read(&mut buffer).await.map_err(io)?;
            if read == 0 {
                return Err(SendError::Io("closed before answering".to_owned()));
            }
            head.extend_from_slice(buffer.get(..read).unwrap_or_default());
        }
    }
}

/// The status of a response whose first line is complete: `HTTP/1.x NNN …\r\n`.
fn status_code(head: &[u8]) -> Result<Option<u16>, SendError> {
    let Some(end) = head.windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(head.get(..end).unwrap_or_default())
        .map_err(|_| SendError::Malformed)?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") && code.len() == 3 => {
            code.parse().map(Some).map_err(|_| SendError::Malformed)
        }
        _ => Err(SendError::Malformed),
    }
}

/// A key as a header value: visible ASCII as is, any other byte percent-encoded, so a key can
/// never end the header early.
fn header_value(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let url = GatewayUrl::parse("http://127.0.0.1:8080/sms/send").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 8080, "/sms/send")
        );
        let url = GatewayUrl::parse("http://sms.local").unwrap();
        assert_eq!((url.port, url.path.as_str()), (80, "/"));
        assert_eq!(
            GatewayUrl::parse("https://sms.example"),
            Err(UrlError::Scheme)
        );
        assert_eq!(GatewayUrl::parse("http://:80/"), Err(UrlError::Malformed));
        assert_eq!(
            GatewayUrl::parse("http://host:port/"),
            Err(UrlError::Malformed)
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n").unwrap(), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Busy\r\nX: y").unwrap(),
            Some(503)
        );
        assert_eq!(status_code(b"HTTP/1.1 20").unwrap(), None);
        assert!(status_code(b"SMTP 220\r\n").is_err());
    }

    #[test]
    fn keys_cannot_break_the_header() {
        assert_eq!(header_value("capture:17"), "capture:17");
        assert_eq!(header_value("a b\r\nX: 1%"), "a%20b%0D%0AX:%201%25");
    }

    #[test]
    fn token_is_never_printed() {
        let token = GatewayToken::new("s3cret\n").unwrap();
        assert_eq!(format!("{token:?}"), "GatewayToken(<redacted>)");
        assert!(GatewayToken::new(" ").is_err());
    }
}
