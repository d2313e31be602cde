//! Abuse that costs the switch nothing but a closed connection (bad length prefixes, garbage,
//! forged MACs, peers that stop reading, floods of connections) is counted in the metrics at
//! once and written to the log as one summary line per reason and interval, never as one line
//! per connection: an unauthenticated peer must not be able to fill the disk.
//!
//! Each listener keeps its own [`AbuseLog`]. The first event of a reason after a quiet
//! interval is logged at once (with a count of 1);
//! later ones within [`SUMMARY_INTERVAL`] are only counted, and the next event after the
//! interval logs how many there were. The metrics hold the exact totals at all times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::metrics as m;

/// At most one summary line per reason per this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Why a peer was refused or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A terminal connection over `connections_max`.
    ConnectionsMax,
    /// A frame's length prefix out of range.
    BadLength,
    /// Too many frames that do not parse.
    Unparseable,
    /// Too many format-error (`30`) answers.
    Format,
    /// Too many security (`63`) answers.
    Security,
    /// Answers not delivered within the write deadline (a peer that stopped reading).
    WriteTimeout,
    /// An admin connection refused: too many open, from its address or in all.
    AdminRefused,
    /// An admin connection closed before its request was read in time.
    AdminTimeout,
}

impl Reason {
    const ALL: [Reason; 8] = [
        Reason::ConnectionsMax,
        Reason::BadLength,
        Reason::Unparseable,
        Reason::Format,
        Reason::Security,
        Reason::WriteTimeout,
        Reason::AdminRefused,
        Reason::AdminTimeout,
    ];

    /// The label of the reason in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConnectionsMax => "connections_max",
            Reason::BadLength => "bad_length",
            Reason::Unparseable => "unparseable",
            Reason::Format => "format",
            Reason::Security => "security",
            Reason::WriteTimeout => "write_timeout",
            Reason::AdminRefused => "admin_refused",
            Reason::AdminTimeout => "admin_timeout",
        }
    }

    fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|reason| *reason == self)
            .unwrap_or(0)
    }
}

/// The tally of one listener: per reason, events not yet logged and when the last summary
/// was written (milliseconds since the log was made, plus one; 0 is never). Each listener owns
/// one and shares it with its connections.
pub struct AbuseLog {
    origin: Instant,
    pending: [AtomicU64; REASONS],
    logged_at: [AtomicU64; REASONS],
}

const REASONS: usize = Reason::ALL.len();

impl Default for AbuseLog {
    fn default() -> AbuseLog {
        AbuseLog::new()
    }
}

impl AbuseLog {
    /// Nothing counted yet.
    pub fn new() -> AbuseLog {
        AbuseLog {
            origin: Instant::now(),
            pending: [const { AtomicU64::new(0) }; REASONS],
            logged_at: [const { AtomicU64::new(0) }; REASONS],
        }
    }

    /// Counts one event of `reason` in `lsw_abuse_total` and logs a summary if one is due.
    pub fn note(&self, reason: Reason) {
        metrics::counter!(m::ABUSE_TOTAL, "reason" => reason.as_str()).increment(1);
        let i = reason.index();
        let (Some(pending), Some(logged_at)) = (self.pending.get(i), self.logged_at.get(i)) else {
            return;
        };
        pending.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = logged_at.load(Ordering::Relaxed);
        let interval = u64::try_from(SUMMARY_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return;
        }
        // One caller wins the right to log this interval's summary.
        if logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let count = pending.swap(0, Ordering::Relaxed);
        // Seconds the count covers: since the last summary, or since start for the first one.
        let window_s = now.saturating_sub(last) / 1000;
        warn!(
            reason = reason.as_str(),
            count,
            window_s,
            "abuse summary: peers refused or closed (one line per reason per {} s at most)",
            SUMMARY_INTERVAL.as_secs()
        );
    }

    /// Events of `reason` counted but not yet in a summary line.
    pub fn pending(&self, reason: Reason) -> u64 {
        self.pending
            .get(reason.index())
            .map_or(0, |pending| pending.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    #[test]
    fn the_first_event_is_logged_and_the_rest_of_the_interval_only_counted() {
        let log = AbuseLog::new();
        log.note(Reason::Unparseable);
        assert_eq!(log.pending(Reason::Unparseable), 0, "logged at once");
        for _ in 0..1_000 {
            log.note(Reason::Unparseable);
        }
        assert_eq!(
            log.pending(Reason::Unparseable),
            1_000,
            "counted, not logged"
        );
        log.note(Reason::BadLength);
        assert_eq!(
            log.pending(Reason::BadLength),
            0,
            "each reason its own interval"
        );
    }
}
