//! `lsw-sim demo`: a whole network in a minute. It creates a temporary SQLite database,
//! provisions a generated network through the import path, starts the switch in process on a
//! free loopback port, issues campaign coupons to a third of the members through the operator
//! API, drives mixed traffic (bank and club purchases, store credit, inquiries, confirms,
//! reversals, abandoned requests whose holds time out), then prints what happened (the loyalty
//! programme's tier promotions, cashback and coupons included), answers a survey SMS as a
//! member would (member engagement, `demo::engagement`), and checks the conservation
//! invariants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::Row;
use switch::api::auth::Role;
use switch::clock::{Clock, SystemClock};
use switch::config::{Config, Secrets};
use switch::domain::{Kek, PanTokenKey};

use crate::fixture::Fixture;
use crate::load::{self, LoadConfig, LoadReport};
use crate::network::{self, Size};

pub mod campaigns;
pub mod console;
pub mod engagement;
pub mod loyalty;

use loyalty::LoyaltySummary;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Seconds of traffic.
    pub seconds: u64,
    /// Connections (terminals) driving it.
    pub connections: usize,
    /// Where the database, the network file and the log go.
    pub dir: PathBuf,
    /// Seed of the network and the traffic.
    pub seed: u64,
}

/// What the demo found.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The traffic's report.
    pub load: LoadReport,
    /// Transactions by final state.
    pub states: Vec<(String, i64)>,
    /// Sum of discounts, fees, store credit, club and bank rest over confirmed transactions.
    pub confirmed_totals: [i64; 5],
    /// Invariants that failed (empty when all hold).
    pub failed_checks: Vec<String>,
    /// The settlement cycle closed over the run.
    pub settlement: Option<SettlementSummary>,
    /// Coupons the operator API answered `201 Created` for before the traffic.
    pub coupons_created: u64,
    /// What the loyalty programme did, read from the database after the run.
    pub loyalty: LoyaltySummary,
    /// The survey a member answered.
    pub survey: engagement::SurveyDemo,
    /// The online top-up paid by the demo's payment gateway.
    pub top_up: campaigns::TopUpDemo,
    /// The occasion campaign run (twice).
    pub campaign: campaigns::CampaignDemo,
    /// Messages the demo's SMS gateway received.
    pub sms_received: usize,
    /// Database file.
    pub database: PathBuf,
    /// Log file.
    pub log: PathBuf,
}

/// What the demo's settlement cycle paid.
#[derive(Debug)]
pub struct SettlementSummary {
    /// The business date of the cycle.
    pub business_date: String,
    /// When payouts are due.
    pub due_date: String,
    /// Merchants paid.
    pub merchants: usize,
    /// Transactions settled.
    pub transactions: i64,
    /// Club captured, fees, payouts.
    pub club: i64,
    /// Fees owed by the merchants.
    pub fee: i64,
    /// Total payout.
    pub payout: i64,
    /// Whether the reconciliation balanced.
    pub reconciled: bool,
    /// Where the payout files are.
    pub files: Vec<PathBuf>,
}

/// Runs the demo.
///
/// # Errors
/// When the database, the switch or the traffic cannot be set up.
pub async fn run(config: DemoConfig) -> anyhow::Result<DemoOutcome> {
    let dir = config.dir.clone();
    // The network file holds every PAN and TMK of the demo: owner only (0600, folder 0700).
    switch::private::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let database = dir.join("lsw.db");
    let log = dir.join("switch.log");
    let size = Size {
        merchants: 12,
        terminals_per_merchant: 4,
        cards: 2_000,
    };
    let network = network::generate(config.seed, size);
    let network_text = network.to_string();
    switch::private::write(&dir.join("network.json"), network_text.as_bytes())
        .context("writing the network file")?;
    let secrets = demo_secrets();
    let mut switch_config = Config::load(None).context("default configuration")?;
    switch_config.listen = "127.0.0.1:0".parse().context("listen address")?;
    switch_config.admin_listen = "127.0.0.1:0".parse().context("admin address")?;
    switch_config.database_url = format!("sqlite://{}", database.display());
    // Short enough that abandoned requests time out within the demo.
    switch_config.hold_timeout_ms = 3_000;
    switch_config.sweep_every_ms = 200;
    // The demo's own SMS gateway, so members' messages and survey SMS are delivered, and the
    // survey webhook's secret, so a member's reply can be posted.
    let gateway = engagement::SmsGateway::start().await?;
    switch_config.sms_gateway_url = Some(gateway.url.clone());
    switch_config.sms_poll_every_ms = 50;
    switch_config.survey_every_ms = 100;
    switch_config.sms_inbound_secret = Some(
        switch::survey::InboundSecret::new(engagement::SMS_INBOUND_SECRET)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    switch_config.payment_gateway_secret = Some(
        switch::survey::InboundSecret::new(campaigns::PAYMENT_GATEWAY_SECRET)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    switch::private::prepare_sqlite(&switch_config.database_url)
        .context("creating the database")?;
    let pool = switch::store::open(&switch_config.database_url)
        .await
        .context("opening the database")?;
    let imported = switch::import::import_text(
        &pool,
        &network_text,
        &secrets.kek,
        &secrets.pan_key,
        clock.now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("importing the network")?;
    println!("provisioned: {imported}");
    // The demo's operator, as `lsw-switch token add demo --role write` would add it.
    let token = switch::api::auth::add_token(&pool, "demo", Role::Write, clock.now())
        .await
        .context("adding the demo's operator token")?;
    pool.close().await;
    let running = switch::app::start(&switch_config, &secrets, clock.clone(), None)
        .await
        .context("starting the switch")?;
    println!(
        "switch listening on {}; driving {} s of traffic over {} connections",
        running.addr, config.seconds, config.connections
    );
    if let Err(error) = engagement::define_survey(running.admin_addr, &token).await {
        running.stop().await;
        return Err(error);
    }
    let today = switch::domain::LocalDateTime::at(
        clock.now(),
        switch::domain::time::TEHRAN_UTC_OFFSET_MINUTES,
    )
    .date;
    let engaged = async {
        let top_up = campaigns::top_up(running.admin_addr, &token).await?;
        let campaign =
            campaigns::run_campaign(running.admin_addr, &token, size.cards, today).await?;
        anyhow::Ok((top_up, campaign))
    };
    let (top_up, mut campaign) = match engaged.await {
        Ok(done) => done,
        Err(error) => {
            running.stop().await;
            return Err(error);
        }
    };
    let issuing = std::time::Instant::now();
    let coupons_created = match loyalty::issue_coupons(running.admin_addr, &token, size.cards).await
    {
        Ok(created) => created,
        Err(error) => {
            running.stop().await;
            return Err(error);
        }
    };
    println!(
        "issued {coupons_created} campaign coupons through the operator API in {:.1} s",
        issuing.elapsed().as_secs_f64()
    );
    let fixture = Arc::new(Fixture::parse(&network_text).context("reading the network")?);
    let report = load::run(
        LoadConfig {
            addr: running.addr,
            connections: config.connections,
            depth: 4,
            duration: Duration::from_secs(config.seconds),
            reversal_percent: 8,
            abandon_percent: 5,
            inquiry_percent: 10,
            seed: config.seed,
            rate: 0,
        },
        fixture,
        true,
    )
    .await;
    // Let abandoned requests time out (hold timeout 3 s, sweeper every 200 ms).
    tokio::time::sleep(Duration::from_millis(3_600)).await;
    let survey = match engagement::answer_survey(running.admin_addr, &gateway).await {
        Ok(survey) => survey,
        Err(error) => {
            running.stop().await;
            return Err(error);
        }
    };
    if let Err(error) = campaigns::report(running.admin_addr, &token, &mut campaign).await {
        running.stop().await;
        return Err(error);
    }
    let sms_received = gateway.count();
    let pool = running.pool.clone();
    running.stop().await;
    let pool = if pool.is_closed() {
        switch::store::open(&switch_config.database_url).await?
    } else {
        pool
    };
    let states =
        sqlx::query("SELECT state, count(*) AS n FROM transactions GROUP BY state ORDER BY state")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("state")?,
                    row.try_get::<i64, _>("n")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let totals = sqlx::query(
        "SELECT COALESCE(CAST(SUM(discount_rials) AS BIGINT),0) d, COALESCE(CAST(SUM(fee_rials) AS BIGINT),0) f, COALESCE(CAST(SUM(store_credit_rials) AS BIGINT),0) s, \
         COALESCE(CAST(SUM(club_rials) AS BIGINT),0) c, COALESCE(CAST(SUM(bank_rest_rials) AS BIGINT),0) b FROM transactions WHERE state = 'confirmed'",
    )
    .fetch_one(&pool)
    .await?;
    let confirmed_totals = [
        totals.try_get("d")?,
        totals.try_get("f")?,
        totals.try_get("s")?,
        totals.try_get("c")?,
        totals.try_get("b")?,
    ];
    let findings = crate::check::run(&pool).await?;
    let loyalty = loyalty::summary(&pool).await?;
    let settlement = settle(&pool, &dir, clock.now()).await?;
    pool.close().await;
    let failed_checks = findings
        .iter()
        .filter(|f| f.count > 0)
        .map(|f| format!("{}: {:?}", f.name, f.breaches))
        .collect();
    Ok(DemoOutcome {
        load: report,
        states,
        confirmed_totals,
        failed_checks,
        settlement,
        coupons_created,
        loyalty,
        survey,
        top_up,
        campaign,
        sms_received,
        database,
        log,
    })
}

/// Closes the settlement cycle that takes the run's transactions, as the finance team's
/// nightly job would: with the settlement clock two days ahead, the latest due working day's
/// cutoff has passed, and the first cycle takes all history before it.
async fn settle(
    pool: &switch::store::Pool,
    dir: &std::path::Path,
    now: switch::domain::UnixMillis,
) -> anyhow::Result<Option<SettlementSummary>> {
    let settings = settlement::close::Settings {
        cutoff: settlement::cycle::Cutoff::DEFAULT,
        calendar: settlement::calendar::Calendar::fridays_only(),
        out_dir: dir.join("settlement"),
        projection_wait: settlement::close::PROJECTION_WAIT_DEFAULT,
    };
    let later = switch::domain::UnixMillis::new(now.get() + 2 * switch::domain::time::DAY_MS);
    let closed = settlement::close::run(pool, &settings, later)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("closing the settlement cycle")?;
    let Some(cycle) = closed.last() else {
        return Ok(None);
    };
    let reference = settlement::store::CycleRef::Id(cycle.cycle.id);
    let reconciliation = settlement::reconcile::reconcile(pool, &reference)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("reconciling")?;
    let totals = &cycle.cycle.totals;
    Ok(Some(SettlementSummary {
        business_date: cycle.cycle.business_date.to_string(),
        due_date: cycle.cycle.due_date.to_string(),
        merchants: cycle.cycle.lines.len(),
        transactions: totals.txn_count,
        club: totals.club,
        fee: totals.fee,
        payout: totals.payout,
        reconciled: reconciliation.is_balanced(),
        files: cycle.files.clone(),
    }))
}

/// Fixed demo secrets: the demo's database is throwaway. Never use these for real data.
pub fn demo_secrets() -> Secrets {
    Secrets {
        kek: Kek::from_bytes([0x5a; 32]),
        pan_key: PanTokenKey::from_bytes([0xa5; 32]),
        sms_gateway_token: None,
    }
}

/// Prints the summary a person reads.
pub fn print(outcome: &DemoOutcome, kept: bool) {
    let load = &outcome.load;
    println!();
    println!("== traffic ==");
    println!(
        "  {:.1} s, {} request+confirm pairs ({:.0}/s), {} connection errors",
        load.seconds, load.pairs, load.pairs_per_second, load.errors
    );
    let mut codes: Vec<_> = load.codes.iter().collect();
    codes.sort();
    for (key, count) in codes {
        println!("  {key:<10} {count:>8}");
    }
    println!("== transactions by outcome ==");
    for (state, count) in &outcome.states {
        println!("  {state:<10} {count:>8}");
    }
    let [discount, fee, store, club, bank] = outcome.confirmed_totals;
    println!("== confirmed amounts (rials) ==");
    println!("  discounts {discount}  fees {fee}  store credit {store}  club {club}  bank {bank}");
    loyalty::print(&outcome.loyalty);
    engagement::print(&outcome.survey, outcome.sms_received);
    campaigns::print(&outcome.top_up, &outcome.campaign);
    println!("== latency (µs) ==");
    let mut latency: Vec<_> = load.latency.iter().collect();
    latency.sort_by(|a, b| a.0.cmp(b.0));
    for (mti, p) in latency {
        println!(
            "  {mti}  n={:<7} p50={:<6} p90={:<6} p99={:<6} p99.9={:<6} max={}",
            p.count, p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us
        );
    }
    if let Some(settled) = &outcome.settlement {
        println!("== settlement ==");
        println!(
            "  cycle {} (due {}): {} transactions, {} merchants, club {} - fees {} = payout {}; reconciled: {}",
            settled.business_date,
            settled.due_date,
            settled.transactions,
            settled.merchants,
            settled.club,
            settled.fee,
            settled.payout,
            if settled.reconciled { "yes" } else { "NO" }
        );
        if kept {
            for file in &settled.files {
                println!("  {}", file.display());
            }
        }
    }
    println!("== check ==");
    if outcome.failed_checks.is_empty() {
        println!("  all conservation invariants hold");
    } else {
        for failed in &outcome.failed_checks {
            println!("  FAILED {failed}");
        }
    }
    if kept {
        println!("database: {}", outcome.database.display());
        println!("log:      {}", outcome.log.display());
    } else {
        println!("(database and log removed when lsw-sim exits; run with --keep to inspect them)");
    }
}
