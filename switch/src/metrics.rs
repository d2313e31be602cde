//! Every metric name, in one place (docs/style.md section 9). Labels come from closed sets only.

/// Messages answered, by `mti` and `response_code`.
pub const MESSAGES_TOTAL: &str = "lsw_messages_total";
/// Time from a whole frame read to its response queued, in seconds.
pub const MESSAGE_DURATION_SECONDS: &str = "lsw_message_duration_seconds";
/// Effects per group commit.
pub const COMMIT_BATCH_SIZE: &str = "lsw_commit_batch_size";
/// Group commits that failed (each answered `96` and reloaded the state).
pub const COMMIT_FAILURES_TOTAL: &str = "lsw_commit_failures_total";
/// Histogram: seconds one group commit took to become durable (journal mode: encoding and
/// appending its record).
pub const COMMIT_SECONDS: &str = "lsw_commit_seconds";
/// Histogram: seconds one journal append took (one write and one fdatasync).
pub const JOURNAL_SYNC_SECONDS: &str = "lsw_journal_sync_seconds";
/// The last journal record made durable (set before its batch's answers leave).
pub const JOURNAL_APPENDED_SEQ: &str = "lsw_journal_appended_seq";
/// The last journal record projected into the database.
pub const JOURNAL_APPLIED_SEQ: &str = "lsw_journal_applied_seq";
/// Journal records appended but not yet projected into the database.
pub const JOURNAL_LAG_RECORDS: &str = "lsw_journal_lag_records";
/// Age in seconds of the newest record projected, while records wait (0 when caught up).
pub const JOURNAL_LAG_SECONDS: &str = "lsw_journal_lag_seconds";
/// Journal segment files on disk.
pub const JOURNAL_SEGMENTS: &str = "lsw_journal_segments";
/// Histogram: seconds one projection transaction took.
pub const PROJECTION_SECONDS: &str = "lsw_projection_seconds";
/// Histogram: journal records per projection transaction.
pub const PROJECTION_RECORDS: &str = "lsw_projection_records";
/// Projection transactions that failed (retried; nothing is lost, the journal has them).
pub const PROJECTION_FAILURES_TOTAL: &str = "lsw_projection_failures_total";
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
    metrics::describe_histogram!(JOURNAL_SYNC_SECONDS, "seconds one journal append took");
    metrics::describe_gauge!(JOURNAL_LAG_RECORDS, "journal records not yet projected");
    metrics::describe_gauge!(JOURNAL_APPENDED_SEQ, "last journal record made durable");
    metrics::describe_gauge!(JOURNAL_APPLIED_SEQ, "last journal record in the database");
    metrics::describe_gauge!(
        JOURNAL_LAG_SECONDS,
        "age of the projection while records wait"
    );
    metrics::describe_gauge!(JOURNAL_SEGMENTS, "journal segment files on disk");
    metrics::describe_histogram!(
        PROJECTION_SECONDS,
        "seconds one projection transaction took"
    );
    metrics::describe_histogram!(PROJECTION_RECORDS, "journal records per projection");
    metrics::describe_counter!(
        PROJECTION_FAILURES_TOTAL,
        "projection transactions that failed"
    );
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
