//! Every metric name, in one place (STYLE.md section 9). Labels come from closed sets only.

/// Messages answered, by `mti` and `response_code`.
pub const MESSAGES_TOTAL: &str = "lsw_messages_total";
/// Time from a whole frame read to its response queued, in seconds.
pub const MESSAGE_DURATION_SECONDS: &str = "lsw_message_duration_seconds";
/// Effects per group commit.
pub const COMMIT_BATCH_SIZE: &str = "lsw_commit_batch_size";
/// Group commits that failed (each answered `96` and reloaded the state).
pub const COMMIT_FAILURES_TOTAL: &str = "lsw_commit_failures_total";
/// Histogram: seconds one group commit took to write (SQLite).
pub const COMMIT_SECONDS: &str = "lsw_commit_seconds";
/// Open terminal connections.
pub const CONNECTIONS_OPEN: &str = "lsw_connections_open";
/// Connections refused because `connections_max` was reached.
pub const CONNECTIONS_REFUSED_TOTAL: &str = "lsw_connections_refused_total";
/// Pending requests holding balances.
pub const HOLDS_OPEN: &str = "lsw_holds_open";
/// Frames rejected, by `reason` (bad_length, unparseable, format, security, read_timeout,
/// idle_timeout, write_timeout).
pub const FRAMES_REJECTED_TOTAL: &str = "lsw_frames_rejected_total";
/// Peers refused or closed for abuse, by `reason` (`crate::abuse::Reason`), terminal and
/// admin ports alike; the log has one summary line per reason and interval.
pub const ABUSE_TOTAL: &str = "lsw_abuse_total";
/// Terminal connections still open when the drain time ran out at shutdown, closed.
pub const CONNECTIONS_CUT_AT_SHUTDOWN_TOTAL: &str = "lsw_connections_cut_at_shutdown_total";

/// SMS notifications the gateway accepted.
pub const NOTIFICATIONS_SENT_TOTAL: &str = "lsw_notifications_sent_total";
/// SMS attempts that failed (a status other than 2xx, a timeout, a lost connection).
pub const NOTIFICATIONS_FAILED_TOTAL: &str = "lsw_notifications_failed_total";
/// SMS attempts that were retries of an earlier failed or unrecorded one.
pub const NOTIFICATIONS_RETRIED_TOTAL: &str = "lsw_notifications_retried_total";

/// Describes every metric once, at start-up.
pub fn describe() {
    metrics::describe_counter!(NOTIFICATIONS_SENT_TOTAL, "sms notifications delivered");
    metrics::describe_counter!(NOTIFICATIONS_FAILED_TOTAL, "sms attempts that failed");
    metrics::describe_counter!(
        NOTIFICATIONS_RETRIED_TOTAL,
        "sms attempts that were retries"
    );
    metrics::describe_counter!(
        MESSAGES_TOTAL,
        "messages answered, by mti and response code"
    );
    metrics::describe_histogram!(
        MESSAGE_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "time from a whole frame to its response"
    );
    metrics::describe_histogram!(COMMIT_BATCH_SIZE, "effects per group commit");
    metrics::describe_counter!(COMMIT_FAILURES_TOTAL, "group commits that failed");
    metrics::describe_histogram!(COMMIT_SECONDS, "seconds one group commit took to write");
    metrics::describe_gauge!(CONNECTIONS_OPEN, "open terminal connections");
    metrics::describe_counter!(CONNECTIONS_REFUSED_TOTAL, "connections over the limit");
    metrics::describe_gauge!(HOLDS_OPEN, "pending requests holding balances");
    metrics::describe_counter!(FRAMES_REJECTED_TOTAL, "frames rejected, by reason");
    metrics::describe_counter!(ABUSE_TOTAL, "peers refused or closed for abuse, by reason");
    metrics::describe_counter!(
        CONNECTIONS_CUT_AT_SHUTDOWN_TOTAL,
        "connections closed when the drain time ran out"
    );
}
