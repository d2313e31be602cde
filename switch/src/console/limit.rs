//! The sign-in rate limit: after [`FAILURES_MAX`] failed sign-ins (password or token) for one
//! operator name, or from one address, within [`WINDOW_MS`], further attempts for that name or
//! from that address are refused (429) without the password or token being checked, until
//! the oldest of those failures is older than the window. A successful sign-in clears its
//! operator name's failures (not its address's, so one operator cannot clear the way for
//! guesses at another's password).
//!
//! The counts are kept in memory: a restart of the switch forgets them. They are bounded by
//! [`KEYS_MAX`] names and addresses; past it, expired entries are dropped first, then the
//! entry whose newest failure is oldest.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::console::i18n::Locale;
use crate::console::layout;

/// Failed sign-ins within [`WINDOW_MS`] after which a name or an address is refused.
pub const FAILURES_MAX: usize = 5;
/// The window: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60_000;
/// Names and addresses remembered at most.
pub const KEYS_MAX: usize = 100_000;

/// Who a failure is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Name(String),
    Address(IpAddr),
}

/// The failed sign-ins of the last [`WINDOW_MS`], per operator name and per address.
#[derive(Debug, Default)]
pub struct SignInLimit {
    failures: Mutex<HashMap<Key, VecDeque<i64>>>,
}

/// A refused attempt: which limit, and when the next attempt may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Whether the operator name's limit refused it (else the address's).
    pub by_name: bool,
    /// Milliseconds until the oldest counted failure leaves the window.
    pub retry_after_ms: i64,
}

fn keys(name: &str, address: IpAddr) -> Vec<Key> {
    let mut keys = vec![Key::Address(address)];
    if !name.is_empty() {
        keys.push(Key::Name(name.to_owned()));
    }
    keys
}

impl SignInLimit {
    /// A limit with no failures.
    pub fn new() -> SignInLimit {
        SignInLimit::default()
    }

    /// `Some` when an attempt for `name` (empty for a token sign-in) from `address` is refused
    /// at `now_ms`.
    pub fn refused(&self, name: &str, address: IpAddr, now_ms: i64) -> Option<Refused> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        keys(name, address).into_iter().rev().find_map(|key| {
            let times = failures.get(&key)?;
            let recent: Vec<i64> = times
                .iter()
                .copied()
                .filter(|at| *at > now_ms - WINDOW_MS)
                .collect();
            let oldest_counted = recent.len().checked_sub(FAILURES_MAX)?;
            let oldest = recent.get(oldest_counted)?;
            Some(Refused {
                by_name: matches!(key, Key::Name(_)),
                retry_after_ms: (oldest + WINDOW_MS - now_ms).max(1),
            })
        })
    }

    /// Counts a failed attempt against `name` (when not empty) and `address`.
    pub fn failed(&self, name: &str, address: IpAddr, now_ms: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        for key in keys(name, address) {
            let times = failures.entry(key).or_default();
            while times.front().is_some_and(|at| *at <= now_ms - WINDOW_MS) {
                times.pop_front();
            }
            times.push_back(now_ms);
            // Only the newest FAILURES_MAX matter.
            while times.len() > FAILURES_MAX {
                times.pop_front();
            }
        }
        if failures.len() > KEYS_MAX {
            failures.retain(|_, times| times.back().is_some_and(|at| *at > now_ms - WINDOW_MS));
        }
        while failures.len() > KEYS_MAX {
            let stalest = failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied().unwrap_or(i64::MIN))
                .map(|(key, _)| key.clone());
            match stalest {
                Some(key) => failures.remove(&key),
                None => break,
            };
        }
    }

    /// Clears the failures of an operator who signed in.
    pub fn succeeded(&self, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&Key::Name(name.to_owned()));
    }
}

/// The address a request came from: the TCP peer, or, when the peer is a loopback address
/// (a reverse proxy on the same host), the last address the proxy appended to
/// `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        if !peer.is_loopback() {
            return Ok(ClientAddress(peer));
        }
        // The proxy appends the client's address: the last item, whatever came before it.
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .next_back()
            .and_then(|item| item.trim().parse::<IpAddr>().ok());
        Ok(ClientAddress(forwarded.unwrap_or(peer)))
    }
}

/// The 429 page of a refused sign-in, with `Retry-After`.
pub fn refusal_page(retry_after_ms: i64) -> Response {
    let minutes = (retry_after_ms + 59_999) / 60_000;
    let locale = Locale::En;
    let body = layout::bare(
        locale,
        "Too many failed sign-ins",
        html! {
            h1 class="refusal" { "429 Too many failed sign-ins" }
            p id="too-many" role="alert" {
                "Sign-in is refused: " (FAILURES_MAX) " sign-ins failed for this operator or from this address within "
                (WINDOW_MS / 60_000) " minutes. Try again in " (minutes) " minutes, or ask an administrator."
            }
            p { a href="/console/sign-in" { (locale.t("sign_in")) } }
        },
    );
    let seconds = (retry_after_ms + 999) / 1000;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.to_string())],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn five_failures_of_a_name_refuse_the_sixth_until_the_window_passes() {
        let limit = SignInLimit::new();
        for i in 0..5 {
            assert_eq!(limit.refused("alice", HOME, 1000 + i), None);
            // From five addresses, so only the name's limit is reached.
            let from = IpAddr::V4(Ipv4Addr::new(10, 1, 0, u8::try_from(i).unwrap_or(0)));
            limit.failed("alice", from, 1000 + i);
        }
        let refused = limit.refused("alice", HOME, 2000);
        assert_eq!(
            refused,
            Some(Refused {
                by_name: true,
                retry_after_ms: 1000 + WINDOW_MS - 2000
            })
        );
        assert_eq!(limit.refused("bob", HOME, 2000), None);
        assert_eq!(limit.refused("alice", HOME, 1000 + WINDOW_MS), None);
    }

    #[test]
    fn five_failures_from_an_address_refuse_any_name_from_it() {
        let limit = SignInLimit::new();
        for (i, name) in ["a", "b", "", "d", "e"].into_iter().enumerate() {
            limit.failed(name, HOME, i64::try_from(i).unwrap_or(0));
        }
        assert!(limit
            .refused("zed", HOME, 10)
            .is_some_and(|refused| !refused.by_name));
        assert_eq!(limit.refused("zed", AWAY, 10), None);
    }

    #[test]
    fn a_success_clears_the_name_not_the_address() {
        let limit = SignInLimit::new();
        for i in 0..4 {
            limit.failed("alice", HOME, i);
        }
        limit.succeeded("alice");
        limit.failed("alice", AWAY, 10);
        assert_eq!(limit.refused("alice", AWAY, 11), None);
        limit.failed("mallory", HOME, 12);
        assert!(limit.refused("mallory", HOME, 13).is_some());
    }

    #[test]
    fn the_table_stays_bounded() {
        let limit = SignInLimit::new();
        for i in 0..(KEYS_MAX + 10) {
            let name = format!("n{i}");
            limit.failed(&name, HOME, 0);
        }
        let size = limit
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert!(size <= KEYS_MAX, "{size}");
    }
}
