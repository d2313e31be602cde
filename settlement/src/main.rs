//! `lsw-settle`: the finance team's settlement tool (docs/settlement.md).
//!
//! Exit codes: 0 done; 1 refused or failed (the message names the problem; nothing was
//! changed); 2 bad command line; 3 `reconcile` found a difference.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use settlement::calendar::Calendar;
use settlement::close::{self, Settings};
use settlement::cycle::{local_date, local_text, Cutoff, AMOUNT_COLUMNS};
use settlement::store::{self, CycleRef};
use switch::clock::{Clock, SystemClock};
use switch::domain::CivilDate;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Exit code when `reconcile` finds a difference.
const EXIT_DIFFERENCE: u8 = 3;
/// Most days `calendar` lists at once: a year and a bit.
const CALENDAR_DAYS_MAX: u16 = 400;

#[derive(Debug, Parser)]
#[command(
    name = "lsw-settle",
    version,
    about = "Settlement of the loyalty switch: cycles, payout files, reconciliation"
)]
struct Cli {
    /// The database (a sqlite: URL or a file path).
    #[arg(
        long,
        env = "LSW_DATABASE_URL",
        default_value = "sqlite://lsw.db",
        global = true
    )]
    db: String,
    /// Where cycle files are written.
    #[arg(
        long,
        env = "LSW_SETTLE_OUT",
        default_value = "./settlement-out",
        global = true
    )]
    out: PathBuf,
    /// Seconds a close waits for a running journal-mode switch to project its decisions up to
    /// the cutoff before it gives up (nothing closed, exit code non-zero).
    #[arg(
        long,
        env = "LSW_SETTLE_PROJECTION_WAIT_SECS",
        default_value_t = 60,
        global = true
    )]
    projection_wait_secs: u64,
    /// The holiday calendar file (format in docs/settlement.md); without it only Fridays are off.
    #[arg(long, env = "LSW_CALENDAR", global = true)]
    calendar: Option<PathBuf>,
    /// The daily cutoff, HH:MM Asia/Tehran (+03:30).
    #[arg(
        long,
        env = "LSW_SETTLE_CUTOFF",
        default_value = "23:30",
        global = true
    )]
    cutoff: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closes the cycle of one business date (or rewrites its files if it is closed).
    Close {
        /// The business date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
    /// Closes every cycle that is due, in date order (for cron).
    Run,
    /// Prints a closed cycle.
    Show {
        /// The business date (YYYY-MM-DD) or the cycle id.
        cycle: String,
    },
    /// Proves a closed cycle adds up; exit code 3 on any difference.
    Reconcile {
        /// The business date (YYYY-MM-DD) or the cycle id.
        cycle: String,
    },
    /// Lists working days, weekends and holidays.
    Calendar {
        /// First day listed (default: today, Asia/Tehran).
        #[arg(long)]
        from: Option<String>,
        /// How many days.
        #[arg(long, default_value_t = 14)]
        days: u16,
    },
    /// Records a manual adjustment for the next cycle that closes.
    Adjust {
        /// The merchant's code.
        #[arg(long)]
        merchant: String,
        /// Signed rials: negative takes money back from the merchant.
        #[arg(long, allow_hyphen_values = true)]
        amount: i64,
        /// Why (printed in the cycle's summary).
        #[arg(long)]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::TRACE)
        .finish()
        .with(switch::logs::filter())
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(try_main(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    // Everything from the command line and the calendar is checked before the database is
    // opened, so bad input never touches it.
    let cutoff = Cutoff::parse(&cli.cutoff).context("--cutoff")?;
    let calendar = load_calendar(cli.calendar.as_deref())?;
    let settings = Settings {
        cutoff,
        calendar,
        out_dir: cli.out.clone(),
        projection_wait: std::time::Duration::from_secs(cli.projection_wait_secs),
    };
    let now = SystemClock.now();
    let uses_calendar = matches!(
        cli.command,
        Command::Close { .. } | Command::Run | Command::Calendar { .. }
    );
    if uses_calendar && cli.calendar.is_none() {
        tracing::warn!("no calendar file: only Fridays are days off");
    }
    match cli.command {
        Command::Close { date } => {
            let date = parse_date(&date, "--date")?;
            let pool = open(&cli.db).await?;
            let closed = close::close(&pool, &settings, date, now).await?;
            report(&closed);
        }
        Command::Run => {
            let pool = open(&cli.db).await?;
            let closed = close::run(&pool, &settings, now).await?;
            if closed.is_empty() {
                println!("nothing due: every cycle up to now is closed");
            }
            closed.iter().for_each(report);
        }
        Command::Show { cycle } => {
            let cycle = CycleRef::parse(&cycle)?;
            let pool = open(&cli.db).await?;
            print!("{}", show(&store::load_cycle(&pool, &cycle).await?));
        }
        Command::Reconcile { cycle } => {
            let cycle = CycleRef::parse(&cycle)?;
            let pool = open(&cli.db).await?;
            let reconciliation = settlement::reconcile(&pool, &cycle).await?;
            print!("{reconciliation}");
            if !reconciliation.is_balanced() {
                return Ok(ExitCode::from(EXIT_DIFFERENCE));
            }
        }
        Command::Calendar { from, days } => {
            let from = match from {
                Some(text) => parse_date(&text, "--from")?,
                None => local_date(now),
            };
            anyhow::ensure!(
                days <= CALENDAR_DAYS_MAX,
                "--days: at most {CALENDAR_DAYS_MAX}"
            );
            print!("{}", calendar_listing(&settings, from, days)?);
        }
        Command::Adjust {
            merchant,
            amount,
            reason,
        } => {
            let pool = open(&cli.db).await?;
            let id =
                settlement::adjustment::add_manual(&pool, &merchant, amount, &reason, now).await?;
            println!(
                "adjustment {id}: {amount} rials for {merchant}, in the next cycle that closes"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_date(text: &str, flag: &str) -> anyhow::Result<CivilDate> {
    CivilDate::parse(text).map_err(|invalid| anyhow::anyhow!("{flag} {text:?}: {invalid}"))
}

fn load_calendar(path: Option<&Path>) -> anyhow::Result<Calendar> {
    let Some(path) = path else {
        return Ok(Calendar::fridays_only());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the calendar file {}", path.display()))?;
    Ok(Calendar::parse(&text, &path.display().to_string())?)
}

/// Opens the database and checks the keys the environment gives (`LSW_KEK`,
/// `LSW_PAN_TOKEN_KEY` or their `_FILE`s; settlement needs neither, but one given must be the
/// database's: `switch::keycheck`).
async fn open(url: &str) -> anyhow::Result<switch::store::Pool> {
    let (kek, pan_key) = switch::keycheck::optional_from_env(|name| std::env::var(name).ok())?;
    let pool = switch::store::open(url)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let keys = switch::keycheck::Keys {
        kek: kek.as_ref(),
        pan_key: pan_key.as_ref(),
    };
    if let Err(error) = switch::keycheck::verify(&pool, keys).await {
        pool.close().await;
        return Err(error).context("refusing to start");
    }
    Ok(pool)
}

fn report(closed: &close::Closed) {
    let cycle = &closed.cycle;
    let what = if closed.created {
        "closed"
    } else {
        "already closed; files rewritten"
    };
    println!(
        "cycle {} ({}): {what}; {} transactions, {} merchants, payout {} rials due {}",
        cycle.id,
        cycle.business_date,
        cycle.totals.txn_count,
        cycle.lines.len(),
        cycle.totals.payout,
        cycle.due_date
    );
    for path in &closed.files {
        println!("  {}", path.display());
    }
}

fn show(cycle: &store::CycleRecord) -> String {
    let mut out = format!(
        "cycle {} business date {} cutoff {} closed {} due {}\n",
        cycle.id,
        cycle.business_date,
        local_text(cycle.cutoff_at),
        local_text(cycle.closed_at),
        cycle.due_date
    );
    out.push_str(&format!("{:<14}", "merchant"));
    for name in AMOUNT_COLUMNS {
        out.push_str(&format!(" {:>16}", name.trim_end_matches("_rials")));
    }
    out.push('\n');
    let rows = cycle
        .lines
        .iter()
        .map(|line| (line.merchant_code.as_str(), &line.amounts))
        .chain([("TOTAL", &cycle.totals)]);
    for (code, amounts) in rows {
        out.push_str(&format!("{code:<14}"));
        for value in amounts.columns() {
            out.push_str(&format!(" {value:>16}"));
        }
        out.push('\n');
    }
    for adjustment in &cycle.adjustments {
        out.push_str(&format!(
            "adjustment {} {} {} rials ({}): {}\n",
            adjustment.id,
            adjustment.merchant_code,
            adjustment.amount_rials,
            adjustment.source,
            adjustment.reason
        ));
    }
    for row in &cycle.exceptions {
        out.push_str(&format!(
            "exception {} {} {} rials {}\n",
            row.kind,
            row.merchant_code,
            row.amount_rials,
            row.rrn
                .as_deref()
                .map(|rrn| format!("rrn {rrn}"))
                .unwrap_or_default()
        ));
    }
    out
}

fn calendar_listing(settings: &Settings, from: CivilDate, days: u16) -> anyhow::Result<String> {
    let calendar = &settings.calendar;
    let mut out = format!(
        "cutoff {} Asia/Tehran (+03:30, no daylight saving)\n",
        settings.cutoff
    );
    match calendar.covers() {
        Some((first, last)) => out.push_str(&format!("calendar covers {first} to {last}\n")),
        None => out.push_str("calendar has no covered range\n"),
    }
    let mut day = from;
    for _ in 0..days {
        let kind = calendar.day(day)?;
        let due = match kind {
            settlement::DayKind::Working => {
                format!(
                    "  cutoff {}, due {}",
                    local_text(settings.cutoff.instant(day)),
                    calendar.next_working_day(day)?
                )
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "{day} {} {kind}{due}\n",
            day.weekday().short_name()
        ));
        day = day.next();
    }
    Ok(out)
}
