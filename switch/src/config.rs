//! Configuration: a TOML file plus `LSW_*` environment overrides (docs/design.md section 8). Every
//! option and its default is in `docs/config.md`. Secrets (key-encryption key, PAN token key)
//! come only from the environment or from files the environment names, never from the TOML.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::committer::{CommitterConfig, BATCH_MAX_DEFAULT};
use crate::domain::{CouponTemplate, Kek, PanTokenKey, Percent, Rials, RuleKind};
use crate::engine::referral::LoyaltyRules;
use crate::engine::EngineConfig;
use crate::notify::dispatcher::DispatcherConfig;
use crate::notify::gateway::{Gateway, GatewayToken, GatewayUrl};
use crate::server::Limits;
use crate::store::ledger::ANSWERED_WINDOW_MS;

/// Largest `sms_batch_max`: a round sends its rows one after the other, so a larger batch
/// only lengthens the lease without sending faster.
pub const SMS_BATCH_MAX_LIMIT: usize = 256;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the line and key).
        message: String,
    },
    /// An environment override is not a valid value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A secret is missing or malformed.
    #[error("secret {name}: {message}")]
    Secret {
        /// The variable naming it.
        name: &'static str,
        /// What is wrong (never the value).
        message: &'static str,
    },
}

/// The switch's settings, as read from TOML (all optional; defaults below).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Terminal listener.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: SocketAddr,
    /// Database URL (`sqlite://path`, a plain path, or `postgres://…`).
    #[serde(default = "defaults::database_url")]
    pub database_url: String,
    /// PostgreSQL only: connections in the pool.
    #[serde(default = "defaults::pg_pool_max")]
    pub pg_pool_max: u32,
    /// PostgreSQL only: the server cancels a statement running longer than this.
    #[serde(default = "defaults::pg_statement_timeout_ms")]
    pub pg_statement_timeout_ms: u64,
    /// PostgreSQL only: how long to wait for a pooled or new connection.
    #[serde(default = "defaults::pg_acquire_timeout_ms")]
    pub pg_acquire_timeout_ms: u64,
    /// Confirm timeout of a pending request.
    #[serde(default = "defaults::hold_timeout_ms")]
    pub hold_timeout_ms: u64,
    /// Most open connections.
    #[serde(default = "defaults::connections_max")]
    pub connections_max: usize,
    /// Most requests in flight per connection.
    #[serde(default = "defaults::in_flight_max")]
    pub in_flight_max: usize,
    /// Read timeout of a started frame.
    #[serde(default = "defaults::frame_read_timeout_ms")]
    pub frame_read_timeout_ms: u64,
    /// Idle timeout of a connection.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Deadline of one write of answers to a terminal; a peer that does not take them in
    /// time is closed.
    #[serde(default = "defaults::write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// At shutdown, how long connections may finish their requests in flight before the
    /// rest are closed.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Most requests per group commit.
    #[serde(default = "defaults::batch_max")]
    pub batch_max: usize,
    /// Extra wait for a batch that is not full.
    #[serde(default)]
    pub batch_window_us: u64,
    /// Committer queue length (requests waiting for the engine).
    #[serde(default = "defaults::queue_max")]
    pub queue_max: usize,
    /// How often the sweeper runs.
    #[serde(default = "defaults::sweep_every_ms")]
    pub sweep_every_ms: u64,
    /// The journal's directory. With SQLite the journal is always the commit point and this
    /// defaults to the database file's path with `.journal` added; with PostgreSQL, setting
    /// it chooses journal mode (one switch process), leaving it unset keeps the database as
    /// the commit point (several processes). docs/config.md, "Commit point".
    #[serde(default)]
    pub journal_dir: Option<std::path::PathBuf>,
    /// Bytes of one journal segment file.
    #[serde(default = "defaults::journal_segment_bytes")]
    pub journal_segment_bytes: u64,
    /// Most bytes of journal records not yet projected into the database; past it the
    /// committer waits.
    #[serde(default = "defaults::journal_lag_max_bytes")]
    pub journal_lag_max_bytes: u64,
    /// `pretty` or `json`.
    #[serde(default = "defaults::log_format")]
    pub log_format: String,
    /// The SMS gateway (`http://host[:port]/path`); no dispatcher runs without it.
    #[serde(default)]
    pub sms_gateway_url: Option<String>,
    /// Timeout of one request to the SMS gateway, connection included.
    #[serde(default = "defaults::sms_request_timeout_ms")]
    pub sms_request_timeout_ms: u64,
    /// How often the dispatcher looks for due notifications.
    #[serde(default = "defaults::sms_poll_every_ms")]
    pub sms_poll_every_ms: u64,
    /// Most notifications claimed per dispatcher round.
    #[serde(default = "defaults::sms_batch_max")]
    pub sms_batch_max: usize,
    /// Delay before the first retry of a notification, doubled for each further one.
    #[serde(default = "defaults::sms_backoff_ms_min")]
    pub sms_backoff_ms_min: u64,
    /// Longest delay between two attempts of a notification.
    #[serde(default = "defaults::sms_backoff_ms_max")]
    pub sms_backoff_ms_max: u64,
    /// How often the loyalty job runs (occasion coupons, expiry notices).
    #[serde(default = "defaults::loyalty_every_ms")]
    pub loyalty_every_ms: u64,
    /// Days ahead the expiry notices look (store credit and coupons); 0 sends none.
    #[serde(default = "defaults::expiry_notice_days")]
    pub expiry_notice_days: u32,
    /// The coupon each side of a referral gets; absent: referrals give nothing.
    #[serde(default)]
    pub referral_coupon: Option<CouponConfig>,
    /// The coupon members get on their birthday; absent: none.
    #[serde(default)]
    pub birthday_coupon: Option<CouponConfig>,
    /// The coupon members get on the anniversary of joining; absent: none.
    #[serde(default)]
    pub anniversary_coupon: Option<CouponConfig>,
    /// How often the survey scheduler looks for purchases whose survey is due.
    #[serde(default = "defaults::survey_every_ms")]
    pub survey_every_ms: u64,
    /// Days after its delivery a survey's reply is taken.
    #[serde(default = "defaults::survey_reply_days")]
    pub survey_reply_days: u32,
    /// A survey due longer ago than this (the switch was stopped) is not sent.
    #[serde(default = "defaults::survey_catch_up_minutes")]
    pub survey_catch_up_minutes: u64,
    /// The SMS gateway's webhook secret: only from `LSW_SMS_INBOUND_SECRET` (or the file
    /// `LSW_SMS_INBOUND_SECRET_FILE` names), never from the TOML file.
    #[serde(skip)]
    pub sms_inbound_secret: Option<crate::survey::InboundSecret>,
    /// How often the engagement job runs (rule tags, due campaigns, repurchase reminders).
    #[serde(default = "defaults::engagement_every_ms")]
    pub engagement_every_ms: u64,
    /// The holiday calendar file (the settlement's, format in docs/settlement.md), for the
    /// occasions calendar and holiday campaigns; without it no holidays are known.
    #[serde(default)]
    pub holiday_calendar: Option<std::path::PathBuf>,
    /// How long after its creation a top-up order may be paid; a later callback is `late`.
    #[serde(default = "defaults::top_up_order_timeout_ms")]
    pub top_up_order_timeout_ms: u64,
    /// The payment gateway's callback secret: only from `LSW_PAYMENT_GATEWAY_SECRET` (or the
    /// file `LSW_PAYMENT_GATEWAY_SECRET_FILE` names), never from the TOML file.
    #[serde(skip)]
    pub payment_gateway_secret: Option<crate::survey::InboundSecret>,
}

/// A coupon the programme issues by itself (`[referral_coupon]`, `[birthday_coupon]`,
/// `[anniversary_coupon]` tables; docs/config.md).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CouponConfig {
    /// Percent of G, as a decimal string; exactly one of this and `fixed_rials`.
    #[serde(default)]
    pub percent: Option<String>,
    /// A fixed amount.
    #[serde(default)]
    pub fixed_rials: Option<i64>,
    /// Applies only from this G up.
    #[serde(default)]
    pub basket_rials_min: i64,
    /// Its discount is capped here.
    #[serde(default)]
    pub discount_rials_max: Option<i64>,
    /// Usable for this many days, 1..=3650.
    pub valid_days: i64,
}

impl CouponConfig {
    /// The coupon's terms.
    ///
    /// # Errors
    /// A message naming the field at fault.
    pub fn template(&self) -> Result<CouponTemplate, String> {
        let kind = match (&self.percent, self.fixed_rials) {
            (Some(rate), None) => match Percent::parse(rate) {
                Ok(rate) if rate.get() > rust_decimal::Decimal::ZERO => RuleKind::Percent(rate),
                _ => return Err("percent: a decimal above 0 and at most 100".to_owned()),
            },
            (None, Some(fixed)) => RuleKind::Fixed(
                Rials::new(fixed)
                    .filter(|fixed| *fixed > Rials::ZERO)
                    .ok_or("fixed_rials: 1..=999999999999")?,
            ),
            _ => return Err("exactly one of percent and fixed_rials".to_owned()),
        };
        let basket_rials_min =
            Rials::new(self.basket_rials_min).ok_or("basket_rials_min: 0..=999999999999")?;
        let discount_rials_max = match self.discount_rials_max {
            Some(cap) => Some(Rials::new(cap).ok_or("discount_rials_max: 0..=999999999999")?),
            None => None,
        };
        if !(1..=3_650).contains(&self.valid_days) {
            return Err("valid_days: 1..=3650".to_owned());
        }
        Ok(CouponTemplate {
            kind,
            basket_rials_min,
            discount_rials_max,
            valid_days: self.valid_days,
        })
    }
}

mod defaults {
    use std::net::SocketAddr;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5800))
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5880))
    }
    pub fn database_url() -> String {
        "sqlite://lsw.db".to_string()
    }
    pub fn pg_pool_max() -> u32 {
        8
    }
    pub fn journal_segment_bytes() -> u64 {
        crate::journal::SEGMENT_BYTES_DEFAULT
    }
    pub fn journal_lag_max_bytes() -> u64 {
        16 << 20
    }
    pub fn pg_statement_timeout_ms() -> u64 {
        5_000
    }
    pub fn pg_acquire_timeout_ms() -> u64 {
        1_000
    }
    pub fn hold_timeout_ms() -> u64 {
        120_000
    }
    pub fn connections_max() -> usize {
        16_384
    }
    pub fn in_flight_max() -> usize {
        64
    }
    pub fn frame_read_timeout_ms() -> u64 {
        10_000
    }
    pub fn idle_timeout_ms() -> u64 {
        300_000
    }
    pub fn write_timeout_ms() -> u64 {
        5_000
    }
    pub fn drain_timeout_ms() -> u64 {
        10_000
    }
    pub fn batch_max() -> usize {
        super::BATCH_MAX_DEFAULT
    }
    pub fn queue_max() -> usize {
        8_192
    }
    pub fn sweep_every_ms() -> u64 {
        1_000
    }
    pub fn log_format() -> String {
        "pretty".to_string()
    }
    pub fn sms_request_timeout_ms() -> u64 {
        5_000
    }
    pub fn sms_poll_every_ms() -> u64 {
        1_000
    }
    pub fn sms_batch_max() -> usize {
        16
    }
    pub fn sms_backoff_ms_min() -> u64 {
        1_000
    }
    pub fn sms_backoff_ms_max() -> u64 {
        600_000
    }
    pub fn loyalty_every_ms() -> u64 {
        3_600_000
    }
    pub fn expiry_notice_days() -> u32 {
        3
    }
    pub fn survey_every_ms() -> u64 {
        60_000
    }
    pub fn survey_reply_days() -> u32 {
        3
    }
    pub fn survey_catch_up_minutes() -> u64 {
        60
    }
    pub fn engagement_every_ms() -> u64 {
        60_000
    }
    pub fn top_up_order_timeout_ms() -> u64 {
        1_800_000
    }
}

impl Config {
    /// Reads `path` (if given) and applies `LSW_*` overrides.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line or variable at fault.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let mut config: Config = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.map_or_else(|| PathBuf::from("<defaults>"), Path::to_path_buf),
            message: error.to_string(),
        })?;
        config.apply_env(|name| std::env::var(name).ok())?;
        for (table, coupon) in [
            ("referral_coupon", &config.referral_coupon),
            ("birthday_coupon", &config.birthday_coupon),
            ("anniversary_coupon", &config.anniversary_coupon),
        ] {
            if let Some(Err(message)) = coupon.as_ref().map(CouponConfig::template) {
                return Err(ConfigError::Parse {
                    path: path.map_or_else(|| PathBuf::from("<defaults>"), Path::to_path_buf),
                    message: format!("[{table}] {message}"),
                });
            }
        }
        Ok(config)
    }

    /// The programme's rules the engine applies (validated by [`Config::load`]; a coupon
    /// table that does not validate gives none).
    pub fn loyalty(&self) -> LoyaltyRules {
        LoyaltyRules {
            referral_coupon: self
                .referral_coupon
                .as_ref()
                .and_then(|coupon| coupon.template().ok()),
        }
    }

    /// Applies `LSW_*` overrides read through `var`.
    ///
    /// # Errors
    /// [`ConfigError::Env`] for a value that does not parse.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name,
                message: e.to_string(),
            })
        }
        if let Some(v) = var("LSW_LISTEN") {
            self.listen = parse("LSW_LISTEN", &v)?;
        }
        if let Some(v) = var("LSW_ADMIN_LISTEN") {
            self.admin_listen = parse("LSW_ADMIN_LISTEN", &v)?;
        }
        if let Some(v) = var("LSW_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = var("LSW_PG_POOL_MAX") {
            self.pg_pool_max = parse("LSW_PG_POOL_MAX", &v)?;
        }
        if let Some(v) = var("LSW_PG_STATEMENT_TIMEOUT_MS") {
            self.pg_statement_timeout_ms = parse("LSW_PG_STATEMENT_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_PG_ACQUIRE_TIMEOUT_MS") {
            self.pg_acquire_timeout_ms = parse("LSW_PG_ACQUIRE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_HOLD_TIMEOUT_MS") {
            self.hold_timeout_ms = parse("LSW_HOLD_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_CONNECTIONS_MAX") {
            self.connections_max = parse("LSW_CONNECTIONS_MAX", &v)?;
        }
        if let Some(v) = var("LSW_IN_FLIGHT_MAX") {
            self.in_flight_max = parse("LSW_IN_FLIGHT_MAX", &v)?;
        }
        if let Some(v) = var("LSW_FRAME_READ_TIMEOUT_MS") {
            self.frame_read_timeout_ms = parse("LSW_FRAME_READ_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_IDLE_TIMEOUT_MS") {
            self.idle_timeout_ms = parse("LSW_IDLE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_WRITE_TIMEOUT_MS") {
            self.write_timeout_ms = parse("LSW_WRITE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_DRAIN_TIMEOUT_MS") {
            self.drain_timeout_ms = parse("LSW_DRAIN_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("LSW_BATCH_MAX") {
            self.batch_max = parse("LSW_BATCH_MAX", &v)?;
        }
        if let Some(v) = var("LSW_BATCH_WINDOW_US") {
            self.batch_window_us = parse("LSW_BATCH_WINDOW_US", &v)?;
        }
        if let Some(v) = var("LSW_JOURNAL_DIR") {
            self.journal_dir =
                Some(v.into()).filter(|d: &std::path::PathBuf| !d.as_os_str().is_empty());
        }
        if let Some(v) = var("LSW_JOURNAL_SEGMENT_BYTES") {
            self.journal_segment_bytes = parse("LSW_JOURNAL_SEGMENT_BYTES", &v)?;
        }
        if let Some(v) = var("LSW_JOURNAL_LAG_MAX_BYTES") {
            self.journal_lag_max_bytes = parse("LSW_JOURNAL_LAG_MAX_BYTES", &v)?;
        }
        if let Some(v) = var("LSW_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = var("LSW_SMS_GATEWAY_URL") {
            self.sms_gateway_url = Some(v).filter(|url| !url.is_empty());
        }
        if let Some(url) = &self.sms_gateway_url {
            GatewayUrl::parse(url).map_err(|e| ConfigError::Env {
                name: "LSW_SMS_GATEWAY_URL",
                message: e.to_string(),
            })?;
        }
        if let Some(secret) = inbound_secret(
            &var,
            ("LSW_SMS_INBOUND_SECRET", "LSW_SMS_INBOUND_SECRET_FILE"),
        )? {
            self.sms_inbound_secret = Some(secret);
        }
        if let Some(v) = var("LSW_ENGAGEMENT_EVERY_MS") {
            self.engagement_every_ms = parse("LSW_ENGAGEMENT_EVERY_MS", &v)?;
        }
        if let Some(v) = var("LSW_HOLIDAY_CALENDAR") {
            self.holiday_calendar =
                Some(v.into()).filter(|p: &std::path::PathBuf| !p.as_os_str().is_empty());
        }
        if let Some(v) = var("LSW_TOP_UP_ORDER_TIMEOUT_MS") {
            self.top_up_order_timeout_ms = parse("LSW_TOP_UP_ORDER_TIMEOUT_MS", &v)?;
        }
        if let Some(secret) = inbound_secret(
            &var,
            (
                "LSW_PAYMENT_GATEWAY_SECRET",
                "LSW_PAYMENT_GATEWAY_SECRET_FILE",
            ),
        )? {
            self.payment_gateway_secret = Some(secret);
        }
        Ok(())
    }

    /// The holiday calendar: the file's, or Fridays only without one.
    ///
    /// # Errors
    /// A message naming the file and, for a bad line, the line and field.
    pub fn calendar(&self) -> Result<crate::calendar::Calendar, String> {
        let Some(path) = &self.holiday_calendar else {
            return Ok(crate::calendar::Calendar::fridays_only());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("holiday_calendar {}: {e}", path.display()))?;
        crate::calendar::Calendar::parse(&text, &path.display().to_string())
            .map_err(|e| e.to_string())
    }

    /// The top-up routes' settings.
    pub fn top_up(&self) -> crate::api::top_up::TopUpSettings {
        crate::api::top_up::TopUpSettings {
            order_timeout_ms: i64::try_from(self.top_up_order_timeout_ms.max(1))
                .unwrap_or(i64::MAX),
            gateway_secret: self.payment_gateway_secret.clone(),
        }
    }

    /// The survey scheduler's and the webhook's settings.
    pub fn surveys(&self) -> crate::survey::SurveySettings {
        let millis = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
        crate::survey::SurveySettings {
            every: Duration::from_millis(self.survey_every_ms.max(10)),
            reply_window_ms: i64::from(self.survey_reply_days)
                .saturating_mul(crate::domain::time::DAY_MS),
            catch_up_ms: millis(self.survey_catch_up_minutes.saturating_mul(60_000)),
            hold_timeout_ms: millis(self.hold_timeout_ms),
            inbound_secret: self.sms_inbound_secret.clone(),
        }
    }

    /// The SMS dispatcher's settings, when a gateway is configured.
    pub fn dispatcher(&self, token: Option<GatewayToken>) -> Option<DispatcherConfig> {
        let url = GatewayUrl::parse(self.sms_gateway_url.as_deref()?).ok()?;
        let request_timeout = Duration::from_millis(self.sms_request_timeout_ms.max(1));
        let millis = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
        Some(DispatcherConfig {
            gateway: Gateway::new(url, token, request_timeout),
            poll_every: Duration::from_millis(self.sms_poll_every_ms.max(1)),
            batch_max: self.sms_batch_max.clamp(1, SMS_BATCH_MAX_LIMIT),
            request_timeout,
            backoff_ms_min: millis(self.sms_backoff_ms_min.max(1)),
            backoff_ms_max: millis(self.sms_backoff_ms_max.max(self.sms_backoff_ms_min)),
        })
    }

    /// PostgreSQL connection settings.
    pub fn pg(&self) -> crate::store::PgSettings {
        crate::store::PgSettings {
            pool_max: self.pg_pool_max.max(1),
            statement_timeout: Duration::from_millis(self.pg_statement_timeout_ms),
            acquire_timeout: Duration::from_millis(self.pg_acquire_timeout_ms),
        }
    }

    /// Where the commit point is: the journal (and its directory) or the database.
    pub fn journal(&self) -> Option<crate::committer::journaled::JournalSettings> {
        let dir = match (
            &self.journal_dir,
            crate::store::Backend::of(&self.database_url),
        ) {
            (Some(dir), _) => dir.clone(),
            (None, crate::store::Backend::Postgres) => return None,
            (None, crate::store::Backend::Sqlite) => sqlite_journal_dir(&self.database_url),
        };
        Some(crate::committer::journaled::JournalSettings {
            dir,
            segment_bytes: self
                .journal_segment_bytes
                .max(crate::journal::SEGMENT_BYTES_MIN),
            lag_max_bytes: self.journal_lag_max_bytes.max(1),
        })
    }

    /// Connection limits.
    pub fn limits(&self) -> Limits {
        Limits {
            connections_max: self.connections_max.max(1),
            in_flight_max: self.in_flight_max.max(1),
            frame_read_timeout: Duration::from_millis(self.frame_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms.max(1)),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
        }
    }

    /// Engine settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            hold_timeout_ms: i64::try_from(self.hold_timeout_ms).unwrap_or(i64::MAX),
            answered_window_ms: ANSWERED_WINDOW_MS,
        }
    }

    /// Committer settings.
    pub fn committer(&self) -> CommitterConfig {
        CommitterConfig {
            batch_max: self.batch_max.max(1),
            batch_window: Duration::from_micros(self.batch_window_us),
            sweep_every: Duration::from_millis(self.sweep_every_ms.max(10)),
        }
    }
}

/// The switch's secrets.
pub struct Secrets {
    /// Seals TMKs at rest.
    pub kek: Kek,
    /// Keys the PAN token.
    pub pan_key: PanTokenKey,
    /// The SMS gateway's bearer token, if it needs one.
    pub sms_gateway_token: Option<GatewayToken>,
}

impl Secrets {
    /// Reads `LSW_KEK` and `LSW_PAN_TOKEN_KEY` (64 hex characters each), or the files named by
    /// `LSW_KEK_FILE` and `LSW_PAN_TOKEN_KEY_FILE`; and the optional `LSW_SMS_GATEWAY_TOKEN`
    /// (or the file `LSW_SMS_GATEWAY_TOKEN_FILE` names).
    ///
    /// # Errors
    /// [`ConfigError::Secret`] when one is missing or not 32 bytes of hex.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Secrets, ConfigError> {
        let kek = secret(&var, "LSW_KEK", "LSW_KEK_FILE")?;
        let pan = secret(&var, "LSW_PAN_TOKEN_KEY", "LSW_PAN_TOKEN_KEY_FILE")?;
        let sms_gateway_token = sms_token(&var)?;
        Ok(Secrets {
            sms_gateway_token,
            kek: Kek::from_slice(&kek).map_err(|_| ConfigError::Secret {
                name: "LSW_KEK",
                message: "must be 32 bytes",
            })?,
            pan_key: PanTokenKey::from_slice(&pan).map_err(|_| ConfigError::Secret {
                name: "LSW_PAN_TOKEN_KEY",
                message: "must be 32 bytes",
            })?,
        })
    }
}

/// A webhook's signing secret from the variable `name` or the file the variable `file` names.
fn inbound_secret(
    var: &impl Fn(&str) -> Option<String>,
    (name, file): (&'static str, &'static str),
) -> Result<Option<crate::survey::InboundSecret>, ConfigError> {
    let Some(text) = env_or_file(var, name, file)? else {
        return Ok(None);
    };
    crate::survey::InboundSecret::new(&text)
        .map(Some)
        .map_err(|message| ConfigError::Secret { name, message })
}

fn sms_token(var: &impl Fn(&str) -> Option<String>) -> Result<Option<GatewayToken>, ConfigError> {
    const NAME: &str = "LSW_SMS_GATEWAY_TOKEN";
    const FILE: &str = "LSW_SMS_GATEWAY_TOKEN_FILE";
    let Some(text) = env_or_file(var, NAME, FILE)? else {
        return Ok(None);
    };
    GatewayToken::new(&text)
        .map(Some)
        .map_err(|_| ConfigError::Secret {
            name: NAME,
            message: "must be visible ascii characters",
        })
}

/// The secret in the variable `name`, else in the file the variable `file` names, else `None`.
fn env_or_file(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    file: &'static str,
) -> Result<Option<String>, ConfigError> {
    match (var(name), var(file)) {
        (Some(value), _) => Ok(Some(value)),
        (None, Some(path)) => {
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|_| ConfigError::Secret {
                    name: file,
                    message: "file cannot be read",
                })
        }
        (None, None) => Ok(None),
    }
}

fn secret(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    file: &'static str,
) -> Result<Vec<u8>, ConfigError> {
    let text = env_or_file(var, name, file)?.ok_or(ConfigError::Secret {
        name,
        message: "not set (nor its _FILE)",
    })?;
    hex::decode(text.trim()).map_err(|_| ConfigError::Secret {
        name,
        message: "not hex",
    })
}

/// The default journal directory of a SQLite database: the file's path with `.journal` added.
/// An in-memory database keeps nothing, so its journal goes to a fresh temporary directory.
fn sqlite_journal_dir(url: &str) -> std::path::PathBuf {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return std::env::temp_dir().join(format!("lsw-journal-{}-{n}", std::process::id()));
    }
    std::path::PathBuf::from(format!("{path}.journal"))
}
