//! The demo's member engagement (docs/surveys.md): a survey defined for one merchant through
//! the operator API before the traffic, an SMS gateway the demo runs itself, and, after the
//! traffic, one member's signed reply to a survey SMS the gateway received, posted twice (the
//! second is a duplicate and changes nothing).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::operator;

/// The secret the demo's SMS gateway signs replies with (`LSW_SMS_INBOUND_SECRET`).
pub const SMS_INBOUND_SECRET: &str = "demo-sms-inbound-secret-0123456789";
/// The merchant whose purchases are surveyed.
pub const SURVEY_MERCHANT: &str = "M-00000";
/// The survey: asked at once after the confirm (the demo is short), at most once a month.
const SURVEY: &str = r#"{"question_en":"How was your visit?","question_fa":"از خرید خود راضی بودید؟","comment_prompt_en":"Tell us why.","delay_minutes":0}"#;
/// How long the demo waits for the first survey SMS after the traffic.
const SURVEY_WAIT: Duration = Duration::from_secs(10);
/// Largest request the demo's gateway reads.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// What the SMS gateway received: (idempotency key, `to`) per message, in arrival order.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// The demo's SMS gateway: answers `200` to every message and remembers its key and recipient.
pub struct SmsGateway {
    /// Its URL, for `sms_gateway_url`.
    pub url: String,
    received: Received,
}

impl SmsGateway {
    /// Starts it on a free local port.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<SmsGateway> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo's SMS gateway")?;
        let url = format!("http://{}/sms", listener.local_addr()?);
        let received: Received = Arc::default();
        let shared = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(SmsGateway { url, received })
    }

    /// Messages received whose key starts with `prefix`, with their recipients.
    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.received
            .lock()
            .map(|received| {
                received
                    .iter()
                    .filter(|(key, _)| key.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Messages received in all.
    pub fn count(&self) -> usize {
        self.received.lock().map_or(0, |received| received.len())
    }
}

/// One connection: reads requests (keep-alive or not) and answers each `200`.
async fn serve(mut stream: TcpStream, received: Received) {
    let mut data = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        while let Some((length, key, to)) = request(&data) {
            if let Ok(mut received) = received.lock() {
                received.push((key, to));
            }
            data.drain(..length);
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => data.extend_from_slice(buffer.get(..read).unwrap_or_default()),
        }
        if data.len() > REQUEST_BYTES_MAX {
            return;
        }
    }
}

/// The first complete request in `data`: its length, `Idempotency-Key` and the body's `to`.
fn request(data: &[u8]) -> Option<(usize, String, String)> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(data.get(..end)?).to_string();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")?.parse().ok()?;
    let body = data.get(end + 4..end + 4 + length)?;
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let to = body.get("to")?.as_str()?.to_owned();
    Some((end + 4 + length, header("idempotency-key")?, to))
}

/// What the survey part of the demo did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyDemo {
    /// The merchant surveyed.
    pub merchant: String,
    /// Survey SMS the gateway received.
    pub sent: usize,
    /// The outcome of the member's reply (`answered`).
    pub outcome: String,
    /// Whether posting the same reply again was answered as a duplicate.
    pub duplicate_ignored: bool,
}

/// Defines the survey of [`SURVEY_MERCHANT`] (before the traffic).
///
/// # Errors
/// When the call fails or is not answered `201`/`200`.
pub async fn define_survey(admin: SocketAddr, token: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/merchants/{SURVEY_MERCHANT}/survey");
    let bearer = format!("Bearer {token}");
    let answer = operator::call(admin, "PUT", &path, &[("authorization", &bearer)], SURVEY).await?;
    if !matches!(answer.status, 200 | 201) {
        bail!("defining the survey: {} {}", answer.status, answer.body);
    }
    Ok(())
}

/// After the traffic: waits for a survey SMS, and answers it as its member would, through the
/// SMS gateway's signed webhook, then posts the same message again.
///
/// # Errors
/// When no survey SMS arrives, or the webhook does not take the reply.
pub async fn answer_survey(admin: SocketAddr, gateway: &SmsGateway) -> anyhow::Result<SurveyDemo> {
    let started = std::time::Instant::now();
    let surveys = loop {
        let surveys = gateway.with_prefix("survey:");
        if !surveys.is_empty() || started.elapsed() > SURVEY_WAIT {
            break surveys;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some((key, phone)) = surveys.first() else {
        bail!("no survey SMS reached the gateway within {SURVEY_WAIT:?}");
    };
    let body = serde_json::json!({
        "message_id": format!("demo-reply-{key}"),
        "from": phone,
        "text": "5 quick and friendly",
    })
    .to_string();
    let signature = sign(&body)?;
    let headers = [("x-signature", signature.as_str())];
    let first = operator::call(admin, "POST", "/api/v1/sms/inbound", &headers, &body).await?;
    if first.status != 200 {
        bail!("the survey reply: {} {}", first.status, first.body);
    }
    let again = operator::call(admin, "POST", "/api/v1/sms/inbound", &headers, &body).await?;
    Ok(SurveyDemo {
        merchant: SURVEY_MERCHANT.to_owned(),
        sent: surveys.len(),
        outcome: first.body["outcome"].as_str().unwrap_or("?").to_owned(),
        duplicate_ignored: again.status == 200 && again.body["duplicate"] == true,
    })
}

/// The webhook's signature of `body`: HMAC-SHA256 in hex.
fn sign(body: &str) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SMS_INBOUND_SECRET.as_bytes())
        .context("the inbound secret")?;
    mac.update(body.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Prints the engagement section of the summary.
pub fn print(survey: &SurveyDemo, sms_received: usize) {
    println!("== member engagement ==");
    println!(
        "  survey at {}: {} survey SMS sent; a member's reply: {}; the same reply again: {}",
        survey.merchant,
        survey.sent,
        survey.outcome,
        if survey.duplicate_ignored {
            "ignored as a duplicate"
        } else {
            "NOT recognised as a duplicate"
        }
    );
    println!("  SMS gateway received {sms_received} messages in all");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_reads_complete_requests_only() {
        let body = r#"{"to":"+989120000001","text":"hi","key":"survey:7"}"#;
        let full = format!(
            "POST /sms HTTP/1.1\r\nIdempotency-Key: survey:7\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let parsed = request(full.as_bytes());
        assert_eq!(
            parsed,
            Some((
                full.len(),
                "survey:7".to_owned(),
                "+989120000001".to_owned()
            ))
        );
        assert_eq!(
            request(full.as_bytes().get(..full.len() - 1).unwrap_or_default()),
            None
        );
        assert_eq!(request(b"POST / HTTP/1.1\r\n\r\n"), None);
    }
}
