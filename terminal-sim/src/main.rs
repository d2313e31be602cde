//! `lsw-sim`: the terminal simulator's command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use terminal_sim::demo::{self, DemoConfig};
use terminal_sim::fixture::Fixture;
use terminal_sim::load::{self, LoadConfig};
use terminal_sim::scenario::{self, Scenario, ScenarioContext};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A terminal simulator for the loyalty switch: it speaks LSTI-1 with its own keys, envelope
/// and MAC, as a real POS terminal does.
#[derive(Parser)]
#[command(name = "lsw-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a switch in process on a temporary SQLite database, provision a generated
    /// network, drive mixed traffic, and print what happened.
    Demo {
        /// Seconds of traffic (the hold timeout is 3 s, so abandoned holds time out within it).
        #[arg(long, default_value_t = 12)]
        seconds: u64,
        /// Terminal connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Keep the database and the log (in --dir, or a temporary folder that is kept).
        #[arg(long)]
        keep: bool,
        /// Folder for the database, the network file and the log (kept).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seed of the network and the traffic.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// After the summary, keep the switch running on the demo's database for the operator
        /// console, with a `console` operator whose password is printed; until Ctrl-C.
        #[arg(long)]
        console: bool,
        /// The console's (admin) address with --console.
        #[arg(long, default_value = "127.0.0.1:5880")]
        console_listen: SocketAddr,
        /// With --console, stop after this many seconds even without Ctrl-C (for tests).
        #[arg(long, hide = true)]
        console_seconds: Option<u64>,
    },
    /// Drive a running switch with many pipelined terminals; prints a table, or JSON.
    Load {
        /// The switch's terminal address.
        #[arg(long)]
        addr: SocketAddr,
        /// The import file the switch was provisioned with (its terminals' TMKs and cards'
        /// PANs are what the simulated terminals use).
        #[arg(long)]
        fixture: PathBuf,
        /// Connections (one terminal each).
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Purchases each connection keeps in flight.
        #[arg(long, default_value_t = 8)]
        depth: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Target purchases per second over all connections (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Percent of approved purchases reversed instead of confirmed.
        #[arg(long, default_value_t = 0)]
        reversal_percent: u32,
        /// Percent of approved purchases left unconfirmed: their holds stay pending until the
        /// switch's hold timeout (LSW_HOLD_TIMEOUT_MS) passes.
        #[arg(long, default_value_t = 0)]
        abandon_percent: u32,
        /// Percent of requests that are balance inquiries.
        #[arg(long, default_value_t = 0)]
        inquiry_percent: u32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run fault-injection scenarios against a running switch; print each claim with PASS or
    /// FAIL, and exit 1 when any fails.
    ///
    /// The time-dependent scenarios (confirms-lost, confirms-late) sleep past the switch's
    /// hold timeout, so start the switch with a short one for this run, for example
    /// `LSW_HOLD_TIMEOUT_MS=2000`, and pass the same value as --hold-timeout-ms.
    Scenario {
        /// A scenario name, or `all`.
        name: String,
        /// The switch's terminal address.
        #[arg(long)]
        addr: SocketAddr,
        /// The import file the switch was provisioned with.
        #[arg(long)]
        fixture: PathBuf,
        /// The switch's database URL (sqlite://path), opened read only.
        #[arg(long)]
        db: String,
        /// The switch's admin address: its `/metrics` tell when the database holds what was
        /// answered (journal mode writes it behind the answers).
        #[arg(long, default_value = "127.0.0.1:5880")]
        admin: SocketAddr,
        /// The switch's hold timeout (its LSW_HOLD_TIMEOUT_MS); keep it short for this run.
        #[arg(long, default_value_t = 120_000)]
        hold_timeout_ms: u64,
        /// First STAN used (0..=983999); random when absent, so repeated runs never share a
        /// retransmission key.
        #[arg(long)]
        stan_base: Option<u32>,
        /// Also print every check a passing scenario made.
        #[arg(long)]
        verbose: bool,
    },
    /// Print a generated network in the import format (for `lsw-switch import` and `load`).
    Network {
        /// Merchants.
        #[arg(long, default_value_t = 100)]
        merchants: usize,
        /// Terminals per merchant.
        #[arg(long, default_value_t = 2)]
        terminals_per_merchant: usize,
        /// Cards.
        #[arg(long, default_value_t = 10_000)]
        cards: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Check the conservation invariants on a database; exit 1 when any fails.
    Check {
        /// Database URL (sqlite://path).
        #[arg(long)]
        db: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lsw-sim: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lsw-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo {
            seconds,
            connections,
            keep,
            dir,
            seed,
            console,
            console_listen,
            console_seconds,
        } => {
            let temp = tempfile::Builder::new()
                .prefix("lsw-demo-")
                .tempdir()
                .context("creating a folder")?;
            let kept = keep || dir.is_some();
            let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
            switch::private::create_dir_all(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            log_to(&dir.join("switch.log"))?;
            let outcome = demo::run(DemoConfig {
                seconds,
                connections,
                dir,
                seed,
            })
            .await?;
            demo::print(&outcome, kept);
            if console {
                let until = async move {
                    match console_seconds {
                        Some(seconds) => tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                        },
                        None => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                };
                demo::console::serve(&outcome.database, console_listen, until).await?;
            }
            if kept {
                let _ = temp.keep();
            }
            let healthy = outcome.failed_checks.is_empty() && outcome.load.pairs > 0;
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Load {
            addr,
            fixture,
            connections,
            depth,
            seconds,
            rate,
            reversal_percent,
            abandon_percent,
            inquiry_percent,
            json,
            seed,
        } => {
            let text = std::fs::read_to_string(&fixture)
                .with_context(|| format!("reading {}", fixture.display()))?;
            let fixture = Arc::new(Fixture::parse(&text).context("reading the fixture")?);
            let config = LoadConfig {
                addr,
                connections,
                depth,
                duration: Duration::from_secs(seconds),
                reversal_percent,
                abandon_percent,
                inquiry_percent,
                seed,
                rate,
            };
            let report = load::run(config, fixture, !json).await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the report")?
                );
            } else {
                println!(
                    "{:.1} s: {} request+confirm pairs, {:.0} pairs/s, {} connection errors",
                    report.seconds, report.pairs, report.pairs_per_second, report.errors
                );
                let mut latency: Vec<_> = report.latency.iter().collect();
                latency.sort_by(|a, b| a.0.cmp(b.0));
                println!("mti   count     p50_us  p90_us  p99_us  p99.9_us  max_us");
                for (mti, p) in latency {
                    println!(
                        "{mti}  {:<9} {:<7} {:<7} {:<7} {:<9} {}",
                        p.count, p.p50_us, p.p90_us, p.p99_us, p.p999_us, p.max_us
                    );
                }
            }
            Ok(if report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Scenario {
            name,
            addr,
            fixture,
            db,
            admin,
            hold_timeout_ms,
            stan_base,
            verbose,
        } => {
            let scenarios = if name == "all" {
                Scenario::ALL.to_vec()
            } else {
                let scenario = Scenario::parse(&name).with_context(|| {
                    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    format!("no scenario {name:?}; one of: all, {}", names.join(", "))
                })?;
                vec![scenario]
            };
            let text = std::fs::read_to_string(&fixture)
                .with_context(|| format!("reading {}", fixture.display()))?;
            let fixture = Arc::new(Fixture::parse(&text).context("reading the fixture")?);
            let pool = switch::store::connect(&db, 2, "PRAGMA query_only = ON;")
                .await
                .with_context(|| format!("opening {db}"))?;
            let context = ScenarioContext {
                addr,
                fixture,
                db: pool,
                clock: None,
                hold_timeout: Duration::from_millis(hold_timeout_ms),
                stan_base: stan_base
                    .unwrap_or_else(|| rand::random::<u32>() % scenario::STAN_BASE_MAX),
                freshness: scenario::Freshness::Admin(admin),
            };
            let mut failed = 0_usize;
            for scenario in scenarios {
                match scenario::run(scenario, &context).await {
                    Ok(outcome) => {
                        println!("PASS {}: {}", scenario.name(), scenario.claim());
                        if verbose {
                            for check in &outcome.checks {
                                println!("       ok {check}");
                            }
                        }
                    }
                    Err(error) => {
                        failed += 1;
                        println!("FAIL {}: {}", scenario.name(), scenario.claim());
                        println!("       {error}");
                    }
                }
            }
            context.db.close().await;
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Network {
            merchants,
            terminals_per_merchant,
            cards,
            seed,
        } => {
            let size = terminal_sim::network::Size {
                merchants,
                terminals_per_merchant,
                cards,
            };
            println!("{}", terminal_sim::network::generate(seed, size));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { db } => {
            let pool = switch::store::connect(&db, 1, "")
                .await
                .with_context(|| format!("opening {db}"))?;
            let findings = terminal_sim::check::run(&pool)
                .await
                .context("running the checks")?;
            for finding in &findings {
                let mark = if finding.count == 0 { "ok  " } else { "FAIL" };
                println!(
                    "{mark} {} ({} breaches){}",
                    finding.name,
                    finding.count,
                    if finding.breaches.is_empty() {
                        String::new()
                    } else {
                        format!(": {:?}", finding.breaches)
                    }
                );
            }
            Ok(if terminal_sim::check::all_hold(&findings) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn log_to(path: &std::path::Path) -> anyhow::Result<()> {
    let file =
        switch::private::create(path).with_context(|| format!("creating {}", path.display()))?;
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .finish()
        .with(switch::logs::filter())
        .init();
    Ok(())
}
