//! `lsw-switch`: the switch's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switch::clock::SystemClock;
use switch::config::{Config, Secrets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The POS loyalty switch: terminals connect over TCP (LSTI-1); operators provision it with
/// `import`; the database is SQLite by default.
///
/// Secrets come from the environment: LSW_KEK and LSW_PAN_TOKEN_KEY (64 hex characters each),
/// or LSW_KEK_FILE and LSW_PAN_TOKEN_KEY_FILE. See docs/config.md for every option.
#[derive(Parser)]
#[command(name = "lsw-switch", version)]
struct Cli {
    /// TOML configuration file (optional; LSW_* variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the database migrations, run the switch until SIGTERM or Ctrl-C, then drain and
    /// exit 0.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Provision merchants, terminals, cards, balances, tiers and rules from a JSON file
    /// (docs/import-format.md). A file with any error changes nothing; importing the same
    /// file twice changes nothing the second time.
    Import {
        /// The import file.
        file: PathBuf,
    },
    /// Manage operator API tokens (docs/operator-api.md).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Manage console operators (docs/console.md).
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Add an operator: prints their API token once; the password (at least 8 characters)
    /// is read from `LSW_OPERATOR_PASSWORD` or the first line of standard input.
    Add {
        /// The operator's name, written in the audit log (unique).
        name: String,
        /// `read`, `write`, or `merchant` (one merchant's data, console only).
        #[arg(long, default_value = "read")]
        role: String,
        /// A merchant operator's merchant code.
        #[arg(long)]
        merchant: Option<String>,
        /// `en` (Gregorian) or `fa` (Persian, Solar Hijri).
        #[arg(long, default_value = "en")]
        locale: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token and print it: it is shown this once and stored only hashed.
    Add {
        /// The operator's name, written in the audit log (unique).
        name: String,
        /// `read` (GET only) or `write` (may change reference data).
        #[arg(long, default_value = "read")]
        role: String,
    },
    /// Revoke the token of an operator: its next request is refused 401.
    Revoke {
        /// The operator's name.
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread starts: `serve` starts itself again with huge pages asked for (and
    // does not return here when it does).
    let huge_pages =
        matches!(cli.command, Command::Serve).then(switch::huge_pages::restart_with_huge_pages);
    match run(cli, huge_pages) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lsw-switch: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, huge_pages: Option<switch::huge_pages::NotRestarted>) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    init_logs(&config);
    // A new SQLite database is created readable by its owner only.
    switch::private::prepare_sqlite(&config.database_url)
        .with_context(|| format!("creating the database {}", config.database_url))?;
    if let Some(outcome) = huge_pages {
        log_huge_pages(outcome);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(&config).await,
            Command::Migrate => {
                let pool = switch::store::open(&config.database_url)
                    .await
                    .context("opening the database")?;
                // Keys given to migrate are checked (and recorded on a new database).
                let (kek, pan_key) =
                    switch::keycheck::optional_from_env(|name| std::env::var(name).ok())?;
                let keys = switch::keycheck::Keys {
                    kek: kek.as_ref(),
                    pan_key: pan_key.as_ref(),
                };
                let now = switch::clock::Clock::now(&SystemClock);
                let checked = switch::keycheck::record(&pool, keys, now).await;
                pool.close().await;
                checked?;
                println!("migrations applied to {}", config.database_url);
                Ok(())
            }
            Command::Import { file } => import(&config, &file).await,
            Command::Token { action } => token(&config, action).await,
            Command::Operator { action } => operator(&config, action).await,
        }
    });
    // Tasks still blocked (a connection cut at the end of the drain) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let secrets = Secrets::from_env(|name| std::env::var(name).ok()).context("reading secrets")?;
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    switch::metrics::describe();
    // The handlers are in place before the listener binds: a SIGTERM that arrives while the
    // switch is still starting is a request to stop, not a default-action kill.
    let stop_requested = signals().context("installing the signal handlers")?;
    let keys = switch::keycheck::Keys::both(&secrets.kek, &secrets.pan_key);
    let pool = switch::store::open_with(&config.database_url, &config.pg())
        .await
        .context("opening the database")?;
    let checked = switch::keycheck::verify(&pool, keys).await;
    pool.close().await;
    checked.context("refusing to start")?;
    let running = switch::app::start(config, &secrets, Arc::new(SystemClock), Some(handle))
        .await
        .context("starting the switch")?;
    // Started: the KEK opened every sealed TMK; the keys are recorded if they were not yet.
    switch::keycheck::record(&running.pool, keys, switch::clock::Clock::now(&SystemClock))
        .await
        .context("recording the key check values")?;
    println!(
        "lsw-switch listening on {} (admin {})",
        running.addr, running.admin_addr
    );
    stop_requested.await;
    // The listener closes at once; connections get the drain time for what they have in
    // flight (`server::serve`), then the committer its last batch. Past that and a margin,
    // the process exits anyway: nothing is answered before it is durable, so nothing is lost.
    let drain = std::time::Duration::from_millis(config.drain_timeout_ms);
    tracing::info!(
        drain_ms = config.drain_timeout_ms,
        "shutdown requested; draining"
    );
    if tokio::time::timeout(drain + STOP_MARGIN, running.stop())
        .await
        .is_err()
    {
        tracing::warn!("the switch did not stop within the drain time; exiting");
    }
    Ok(())
}

/// Beyond the drain time, how long the committer and the other tasks may take to stop.
const STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn import(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let secrets = Secrets::from_env(|name| std::env::var(name).ok()).context("reading secrets")?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let pool = switch::store::open(&config.database_url)
        .await
        .context("opening the database")?;
    let now = switch::clock::Clock::now(&SystemClock);
    let keys = switch::keycheck::Keys::both(&secrets.kek, &secrets.pan_key);
    if let Err(error) = switch::keycheck::verify(&pool, keys).await {
        pool.close().await;
        return Err(error).context(format!("{} was not imported", file.display()));
    }
    // Progress goes to stderr phase by phase, so an operator importing a million cards sees
    // where the minute goes; the summary alone goes to stdout.
    let started = std::time::Instant::now();
    eprintln!("import: read {} bytes", text.len());
    let parsed = switch::import::parse(text.as_bytes(), &secrets.pan_key);
    drop(text);
    let imported = match parsed {
        Ok(imported) => imported,
        Err(report) => {
            pool.close().await;
            eprintln!("{report}");
            anyhow::bail!("{} was not imported; nothing changed", file.display())
        }
    };
    let data = &imported.data;
    eprintln!(
        "import: validated {} merchants, {} terminals, {} members, {} cards, {} rules in {:.1} s",
        data.merchants.len(),
        data.terminals.len(),
        data.members.len(),
        data.cards.len(),
        data.rules.len(),
        started.elapsed().as_secs_f64()
    );
    let saved =
        switch::store::reference::save(&pool, data, &imported.file_sha256, &secrets.kek, now).await;
    let recorded = match &saved {
        Ok(_) => switch::keycheck::record(&pool, keys, now).await,
        Err(_) => Ok(()),
    };
    pool.close().await;
    recorded.context("recording the key check values")?;
    match saved {
        Ok(summary) => {
            eprintln!("import: saved in {:.1} s", started.elapsed().as_secs_f64());
            println!("{summary}");
            Ok(())
        }
        Err(error) => {
            eprintln!("{error}");
            anyhow::bail!("{} was not imported; nothing changed", file.display())
        }
    }
}

async fn operator(config: &Config, action: OperatorAction) -> anyhow::Result<()> {
    let OperatorAction::Add {
        name,
        role,
        merchant,
        locale,
    } = action;
    let password = match std::env::var("LSW_OPERATOR_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let pool = switch::store::open(&config.database_url)
        .await
        .context("opening the database")?;
    let now = switch::clock::Clock::now(&SystemClock);
    let locale = switch::console::i18n::Locale::parse(&locale);
    let outcome = switch::console::session::add_operator(
        &pool,
        &name,
        &role,
        merchant.as_deref(),
        locale,
        Some(&password),
        now,
    )
    .await
    .with_context(|| format!("adding operator {name:?}"));
    pool.close().await;
    println!("{}", outcome?);
    Ok(())
}

async fn token(config: &Config, action: TokenAction) -> anyhow::Result<()> {
    let pool = switch::store::open(&config.database_url)
        .await
        .context("opening the database")?;
    let now = switch::clock::Clock::now(&SystemClock);
    let outcome = match action {
        TokenAction::Add { name, role } => {
            let role = switch::api::auth::Role::parse(&role)
                .with_context(|| format!("role must be read or write, not {role:?}"))?;
            let token = switch::api::auth::add_token(&pool, &name, role, now)
                .await
                .with_context(|| format!("adding a token for {name:?} (is the name taken?)"))?;
            println!("{token}");
            Ok(())
        }
        TokenAction::Revoke { name } => {
            let revoked = switch::api::auth::revoke_token(&pool, &name, now)
                .await
                .context("revoking the token")?;
            if revoked {
                println!("revoked the token of {name}");
                Ok(())
            } else {
                Err(anyhow::anyhow!("no live token is named {name:?}"))
            }
        }
    };
    pool.close().await;
    outcome
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that resolves when either
/// signal arrives.
fn signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn init_logs(config: &Config) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().finish().with(switch::logs::filter()).init();
    } else {
        builder.finish().with(switch::logs::filter()).init();
    }
}

/// Says once at start whether the engine's tables get huge pages (`switch::huge_pages`).
fn log_huge_pages(outcome: switch::huge_pages::NotRestarted) {
    use switch::huge_pages::{asked, NotRestarted};
    match outcome {
        NotRestarted::AlreadySet if asked() => {
            tracing::info!("huge pages asked for (glibc.malloc.hugetlb=1)")
        }
        NotRestarted::AlreadySet => tracing::info!(
            "huge pages not asked for: GLIBC_TUNABLES sets glibc.malloc.hugetlb otherwise"
        ),
        NotRestarted::TurnedOff => tracing::info!("huge pages turned off (LSW_HUGE_PAGES)"),
        NotRestarted::Unsupported => tracing::info!("huge pages not available on this platform"),
        NotRestarted::Failed(error) => {
            tracing::warn!(%error, "could not restart with huge pages; going on with 4 KiB pages")
        }
    }
}
