//! `lsw-sim load`: many terminals over many connections, each keeping several requests in
//! flight (pipelining), confirming what is approved; latencies per message type in
//! HdrHistograms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use protocol::{Mti, Pan, ProcessingCode, RawMessage, ResponseCode, Stan};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::client::{Client, ClientError};
use crate::fixture::Fixture;
use protocol::terminal::{Outgoing, Terminal};

/// Load settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The switch.
    pub addr: SocketAddr,
    /// Connections (one terminal each, cycling through the fixture's terminals).
    pub connections: usize,
    /// Purchases each connection keeps in flight.
    pub depth: usize,
    /// How long to run.
    pub duration: Duration,
    /// Share of approved purchases that are reversed instead of confirmed, in percent.
    pub reversal_percent: u32,
    /// Share of approved purchases left unconfirmed (their holds time out), in percent.
    pub abandon_percent: u32,
    /// Share of requests that are balance inquiries instead of purchases, in percent.
    pub inquiry_percent: u32,
    /// Seed of the random choices.
    pub seed: u64,
    /// Target purchases per second over all connections; 0 = as fast as possible.
    pub rate: u64,
}

/// Latency percentiles of one message type, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Messages measured.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th.
    pub p90_us: u64,
    /// 99th.
    pub p99_us: u64,
    /// 99.9th.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Seconds run.
    pub seconds: f64,
    /// Request + confirm pairs completed with `00` twice.
    pub pairs: u64,
    /// Pairs per second.
    pub pairs_per_second: f64,
    /// Responses by MTI and code.
    pub codes: HashMap<String, u64>,
    /// Latency per MTI.
    pub latency: HashMap<String, Percentiles>,
    /// Connections that failed.
    pub errors: u64,
}

struct Counters {
    pairs: AtomicU64,
    errors: AtomicU64,
}

/// Runs the load and returns its report.
pub async fn run(config: LoadConfig, fixture: Arc<Fixture>, progress: bool) -> LoadReport {
    let counters = Arc::new(Counters {
        pairs: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..config.connections {
        let fixture = fixture.clone();
        let counters = counters.clone();
        let config = config.clone();
        tasks.spawn(async move { connection(index, &config, &fixture, deadline, &counters).await });
    }
    let reporter = progress.then(|| {
        let counters = counters.clone();
        let total = config.duration.as_secs().max(1);
        tokio::spawn(async move {
            let mut last = 0;
            let mut second = 0_u64;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                second += 1;
                let pairs = counters.pairs.load(Ordering::Relaxed);
                let filled = usize::try_from((second * 30 / total).min(30)).unwrap_or(30);
                eprint!(
                    "\r[{}{}] {:>3}s {:>8} pairs {:>7} pairs/s ",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    second,
                    pairs,
                    pairs - last
                );
                last = pairs;
            }
        })
    });
    let mut merged = Stats::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(stats)) => merged.merge(&stats),
            Ok(Err(_)) | Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if let Some(reporter) = reporter {
        reporter.abort();
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    let pairs = counters.pairs.load(Ordering::Relaxed);
    LoadReport {
        seconds,
        pairs,
        pairs_per_second: ratio(pairs, seconds),
        codes: merged.codes,
        latency: merged
            .latency
            .iter()
            .map(|(mti, h)| (mti.clone(), percentiles(h)))
            .collect(),
        errors: counters.errors.load(Ordering::Relaxed),
    }
}

struct Stats {
    codes: HashMap<String, u64>,
    latency: HashMap<String, Histogram<u64>>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            codes: HashMap::new(),
            latency: HashMap::new(),
        }
    }

    fn record(&mut self, mti: Mti, code: ResponseCode, micros: u64) {
        *self
            .codes
            .entry(format!("{} {}", mti.as_str(), code.as_str()))
            .or_insert(0) += 1;
        let histogram = self
            .latency
            .entry(mti.as_str().to_string())
            .or_insert_with(|| {
                Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| fallback())
            });
        let _ = histogram.record(micros.max(1));
    }

    fn merge(&mut self, other: &Stats) {
        for (key, count) in &other.codes {
            *self.codes.entry(key.clone()).or_insert(0) += count;
        }
        for (key, histogram) in &other.latency {
            match self.latency.get_mut(key) {
                Some(mine) => {
                    let _ = mine.add(histogram);
                }
                None => {
                    self.latency.insert(key.clone(), histogram.clone());
                }
            }
        }
    }
}

fn fallback() -> Histogram<u64> {
    match Histogram::new(3) {
        Ok(histogram) => histogram,
        Err(_) => unreachable!("3 significant figures is valid"),
    }
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: histogram.len(),
        p50_us: histogram.value_at_quantile(0.50),
        p90_us: histogram.value_at_quantile(0.90),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
    }
}

fn ratio(count: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    f64::from(u32::try_from(count).unwrap_or(u32::MAX)) / seconds
}

/// Seconds since the Unix epoch, from the machine's clock (field 7).
pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

async fn connection(
    index: usize,
    config: &LoadConfig,
    fixture: &Fixture,
    deadline: Instant,
    counters: &Counters,
) -> Result<Stats, ClientError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        config.seed.wrapping_add(u64::try_from(index).unwrap_or(0)),
    );
    let mut terminal = fixture.terminal(index);
    let mut client = Client::connect(config.addr).await?;
    let mut stats = Stats::new();
    let mut in_flight: HashMap<(Mti, Stan), (Outgoing, Instant)> = HashMap::new();
    let per_connection_rate = config.rate / u64::try_from(config.connections.max(1)).unwrap_or(1);
    let gap = (per_connection_rate > 0)
        .then(|| Duration::from_nanos(1_000_000_000 / per_connection_rate.max(1)));
    let mut next_send = Instant::now();
    let mut purchases_open = 0_usize;
    loop {
        let now = Instant::now();
        let sending = now < deadline;
        while sending
            && purchases_open < config.depth
            && gap.is_none_or(|_| Instant::now() >= next_send)
        {
            let pan = fixture.card(rng.gen_range(0..fixture.cards.len()));
            let out = if rng.gen_range(0..100) < config.inquiry_percent {
                inquiry(&mut terminal, &pan, &mut rng)?
            } else {
                purchase(&mut terminal, &pan, &mut rng)?
            };
            client.send(&out.bytes).await?;
            in_flight.insert((out.mti, out.stan), (out, Instant::now()));
            purchases_open += 1;
            if let Some(gap) = gap {
                next_send += gap;
            }
        }
        if in_flight.is_empty() {
            if !sending {
                break;
            }
            if gap.is_some() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(
                    next_send.max(Instant::now()),
                ))
                .await;
            }
            continue;
        }
        let message = client.receive().await?;
        let raw = RawMessage::parse(message).map_err(|e| ClientError::Bad(e.to_string()))?;
        let response = protocol::response::Response::parse(&raw, Some(terminal.keys()))?;
        let request_mti = request_of(response.mti);
        let Some((out, sent)) = in_flight.remove(&(request_mti, response.stan)) else {
            continue;
        };
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.record(request_mti, response.code, micros);
        match (request_mti, response.code, response.rrn) {
            (
                Mti::AuthorizationRequest | Mti::FinancialRequest,
                ResponseCode::Approved,
                Some(rrn),
            ) if response.approval.is_some() => {
                let roll = rng.gen_range(0..100);
                if roll < config.abandon_percent {
                    // Left unconfirmed: its holds time out in the switch.
                    purchases_open = purchases_open.saturating_sub(1);
                    continue;
                }
                let at = now_seconds();
                let follow = if roll < config.abandon_percent + config.reversal_percent {
                    terminal.reversal(&out, Some(rrn), at)
                } else {
                    terminal.confirm(&out, rrn, at)
                }
                .map_err(|e| ClientError::Bad(e.to_string()))?;
                client.send(&follow.bytes).await?;
                in_flight.insert((follow.mti, follow.stan), (follow, Instant::now()));
            }
            (Mti::ConfirmAdvice, ResponseCode::Approved, _) => {
                counters.pairs.fetch_add(1, Ordering::Relaxed);
                purchases_open = purchases_open.saturating_sub(1);
            }
            _ => purchases_open = purchases_open.saturating_sub(1),
        }
    }
    Ok(stats)
}

fn purchase(
    terminal: &mut Terminal,
    pan: &Pan,
    rng: &mut impl Rng,
) -> Result<Outgoing, ClientError> {
    let codes = [
        ProcessingCode::BankPurchase,
        ProcessingCode::BankPurchase,
        ProcessingCode::BankPurchaseStoreCredit,
        ProcessingCode::ClubPurchase,
        ProcessingCode::MixedPurchase,
    ];
    let code = codes[rng.gen_range(0..codes.len())];
    let amount = rng.gen_range(1..=50_u64) * 10_000;
    let mut nonce = [0_u8; 12];
    rng.fill(&mut nonce);
    terminal
        .purchase(code, Some(amount), pan, now_seconds(), nonce)
        .map_err(|e| ClientError::Bad(e.to_string()))
}

fn inquiry(
    terminal: &mut Terminal,
    pan: &Pan,
    rng: &mut impl Rng,
) -> Result<Outgoing, ClientError> {
    let code = if rng.gen_bool(0.5) {
        ProcessingCode::ClubInquiry
    } else {
        ProcessingCode::StoreCreditInquiry
    };
    let mut nonce = [0_u8; 12];
    rng.fill(&mut nonce);
    terminal
        .purchase(code, None, pan, now_seconds(), nonce)
        .map_err(|e| ClientError::Bad(e.to_string()))
}

fn request_of(response: Mti) -> Mti {
    match response {
        Mti::AuthorizationResponse => Mti::AuthorizationRequest,
        Mti::FinancialResponse => Mti::FinancialRequest,
        Mti::ConfirmResponse => Mti::ConfirmAdvice,
        Mti::ReversalResponse => Mti::ReversalAdvice,
        Mti::NetworkResponse | Mti::NetworkRequest => Mti::NetworkRequest,
        other => other,
    }
}
