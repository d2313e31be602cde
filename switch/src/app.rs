//! Wiring: opens the store, loads the reference snapshot and the engine's state, and runs the
//! committer, the terminal listener and the admin listener until shutdown. Used by
//! `lsw-switch serve` and by in-process tests and the simulator's demo.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::store::Pool;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::api::ApiState;
use crate::clock::Clock;
use crate::committer;
use crate::config::{Config, Secrets};
use crate::engine::state::State;
use crate::engine::Engine;
use crate::server::{self, Shared};
use crate::snapshot::Snapshot;
use crate::store::{self, ledger, reference};

/// A running switch.
pub struct Running {
    /// Where terminals connect.
    pub addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub admin_addr: SocketAddr,
    /// The database.
    pub pool: Pool,
    /// Publishes a new snapshot to every connection (reference data changes).
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    committer: JoinHandle<()>,
    /// The journal's progress, in journal mode.
    pub journal: Option<Arc<committer::journaled::JournalState>>,
    admin: JoinHandle<()>,
    dispatcher: Option<JoinHandle<()>>,
    loyalty: JoinHandle<()>,
    surveys: JoinHandle<()>,
    engagement: JoinHandle<()>,
}

/// Why the switch could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed to open, migrate or load.
    #[error("store: {0}")]
    Store(String),
    /// A configured file (the holiday calendar) cannot be read or is wrong.
    #[error("config: {0}")]
    Config(String),
    /// The journal is corrupt or its records cannot be projected (nothing was changed).
    #[error("{0}")]
    Journal(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts the switch: migrates the database, loads everything, binds both listeners.
///
/// # Errors
/// [`StartError`] when the store or a listener cannot be set up.
pub async fn start(
    config: &Config,
    secrets: &Secrets,
    clock: Arc<dyn Clock>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<Running, StartError> {
    let calendar = Arc::new(config.calendar().map_err(StartError::Config)?);
    let began = Instant::now();
    let pool = store::open_with(&config.database_url, &config.pg())
        .await
        .map_err(|e| StartError::Store(e.to_string()))?;
    info!(ms = millis(began), "store opened and migrated");
    let Loaded {
        snapshot,
        state,
        commit,
        journal,
    } = load(config, secrets, &clock, &pool).await?;
    info!(
        version = snapshot.version(),
        transactions = state.txns.len(),
        answered = state.answered.len(),
        ms = millis(began),
        "state loaded"
    );
    let engine = Engine::new(state, config.engine()).with_loyalty(config.loyalty());
    let (snapshots, snapshot_rx) = watch::channel(snapshot);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (jobs, jobs_rx) = mpsc::channel(config.queue_max.max(1));
    let (credits, credits_rx) = mpsc::channel(CREDITS_QUEUE_MAX);
    let committer = tokio::spawn(committer::run(
        engine,
        pool.clone(),
        clock.clone(),
        jobs_rx,
        credits_rx,
        config.committer(),
        commit,
    ));
    let (listener, addr, admin_listener, admin_addr) = bind_listeners(config).await?;
    let shared = Arc::new(Shared {
        snapshots: snapshot_rx,
        pan_key: Arc::new(secrets.pan_key.clone()),
        jobs,
        limits: config.limits(),
    });
    let server = tokio::spawn(server::serve(listener, shared, shutdown_rx.clone()));
    let admin_state = Arc::new(AdminState {
        metrics,
        pool: pool.clone(),
        journal: journal.clone(),
    });
    let loyalty = tokio::spawn(crate::loyalty::run(
        pool.clone(),
        clock.clone(),
        credits.clone(),
        loyalty_job(config),
        shutdown_rx.clone(),
    ));
    let surveys = tokio::spawn(crate::survey::scheduler::run(
        pool.clone(),
        clock.clone(),
        config.surveys(),
        shutdown_rx.clone(),
    ));
    let engagement = tokio::spawn(crate::engagement::run(
        pool.clone(),
        clock.clone(),
        credits.clone(),
        std::time::Duration::from_millis(config.engagement_every_ms.max(10)),
        shutdown_rx.clone(),
    ));
    let api_state = Arc::new(ApiState {
        pool: pool.clone(),
        kek: secrets.kek.clone(),
        pan_key: Arc::new(secrets.pan_key.clone()),
        snapshots: snapshots.clone(),
        clock: clock.clone(),
        changes: tokio::sync::Mutex::new(()),
        credits,
        surveys: config.surveys(),
        top_up: config.top_up(),
        engagement: crate::api::engagement::EngagementSettings { calendar },
        journal: journal.clone(),
    });
    // Another process may change the reference data: an import (on SQLite too), or another
    // switch's API on a shared PostgreSQL database.
    tokio::spawn(follow_reference(api_state.clone(), shutdown_rx.clone()));
    let dispatcher = config
        .dispatcher(secrets.sms_gateway_token.clone())
        .map(|settings| {
            tokio::spawn(crate::notify::dispatcher::run(
                pool.clone(),
                clock.clone(),
                settings,
                shutdown_rx.clone(),
            ))
        });
    let router = admin::router(admin_state, api_state);
    let admin = tokio::spawn(admin::serve(admin_listener, router, shutdown_rx));
    info!(%addr, %admin_addr, "switch listening");
    Ok(Running {
        addr,
        admin_addr,
        pool,
        snapshots,
        shutdown,
        server,
        committer,
        journal,
        admin,
        dispatcher,
        loyalty,
        surveys,
        engagement,
    })
}

/// Binds the terminal port and the admin port, with the addresses they got.
async fn bind_listeners(
    config: &Config,
) -> Result<(TcpListener, SocketAddr, TcpListener, SocketAddr), StartError> {
    let failed = |addr: SocketAddr| move |source| StartError::Listen { addr, source };
    let listener = listen(config.listen).map_err(failed(config.listen))?;
    let addr = listener.local_addr().map_err(failed(config.listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(failed(config.admin_listen))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(failed(config.admin_listen))?;
    Ok((listener, addr, admin_listener, admin_addr))
}

/// The loyalty job's settings: how often it runs, the occasion coupons and the card expiry
/// notice.
fn loyalty_job(config: &Config) -> crate::loyalty::LoyaltyJob {
    crate::loyalty::LoyaltyJob {
        every: std::time::Duration::from_millis(config.loyalty_every_ms.max(10)),
        birthday: config
            .birthday_coupon
            .as_ref()
            .and_then(|coupon| coupon.template().ok()),
        anniversary: config
            .anniversary_coupon
            .as_ref()
            .and_then(|coupon| coupon.template().ok()),
        expiry_notice_days: config.expiry_notice_days,
    }
}

/// What start-up loads before the listeners open.
struct Loaded {
    snapshot: Arc<Snapshot>,
    state: State,
    commit: committer::CommitPoint,
    journal: Option<Arc<committer::journaled::JournalState>>,
}

/// Milliseconds since `began`, for the start-up log's phase lines.
fn millis(began: Instant) -> u64 {
    u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Loads the reference snapshot while it projects what a crash left in the journal (journal
/// mode) and loads the engine's state: the two read disjoint tables (the journal's records
/// never touch reference data) on their own connections, so they overlap on two cores. Each
/// phase's duration goes to the log.
async fn load(
    config: &Config,
    secrets: &Secrets,
    clock: &Arc<dyn Clock>,
    pool: &Pool,
) -> Result<Loaded, StartError> {
    let reference = tokio::spawn(load_snapshot(pool.clone(), secrets.kek.clone()));
    let ledger = async {
        let began = Instant::now();
        let commit = match config.journal() {
            Some(settings) => {
                let (journal, state) =
                    committer::journaled::recover(pool, &settings, clock.now().get())
                        .await
                        .map_err(StartError::Journal)?;
                committer::CommitPoint::Journal {
                    journal: Box::new(journal),
                    state,
                }
            }
            None => committer::CommitPoint::Database,
        };
        info!(ms = millis(began), "journal recovered");
        let began = Instant::now();
        let state = ledger::load(pool, clock.now())
            .await
            .map_err(|e| StartError::Store(e.to_string()))?;
        info!(ms = millis(began), "ledger state read");
        Ok::<_, StartError>((commit, state))
    };
    let (snapshot, ledger) = tokio::join!(reference, ledger);
    // The reference data's failure is reported first, as when it was loaded first.
    let snapshot = snapshot.map_err(|e| StartError::Store(format!("reference load: {e}")))??;
    let (commit, state) = ledger?;
    let journal = match &commit {
        committer::CommitPoint::Journal { state, .. } => Some(state.clone()),
        committer::CommitPoint::Database => None,
    };
    Ok(Loaded {
        snapshot,
        state,
        commit,
        journal,
    })
}

/// Reads the reference data and builds the snapshot from it (on a blocking thread: it is a
/// second or more of CPU at a million cards).
async fn load_snapshot(pool: Pool, kek: crate::domain::Kek) -> Result<Arc<Snapshot>, StartError> {
    let began = Instant::now();
    let data = reference::load_records(&pool, &kek)
        .await
        .map_err(|e| StartError::Store(e.to_string()))?;
    info!(
        ms = millis(began),
        cards = data.reference().data.cards.len(),
        "reference data read"
    );
    let began = Instant::now();
    let snapshot =
        tokio::task::spawn_blocking(move || Snapshot::build_read(data.reference(), data.rows()))
            .await
            .map_err(|e| StartError::Store(format!("snapshot build: {e}")))?
            .map_err(|e| StartError::Store(e.to_string()))?;
    info!(ms = millis(began), "snapshot built");
    Ok(Arc::new(snapshot))
}

/// How often a switch sharing its database looks for reference data another process changed.
pub const REFERENCE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// An import, or an API change made through another process (a shared database), bumps
/// `reference_meta.version`; this catches the snapshot up when it does, as a delta of the
/// records the change log names (`api::change::catch_up`), under the API's change lock so no
/// change of this process publishes meanwhile. Requests in flight keep the snapshot they
/// started with.
async fn follow_reference(api: Arc<ApiState>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REFERENCE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let stored: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT version FROM reference_meta WHERE id = 1")
                .fetch_optional(&api.pool)
                .await;
        let current = api.snapshots.borrow().version();
        match stored {
            Ok(Some(version)) if u64::try_from(version).is_ok_and(|v| v > current) => {}
            Ok(_) => continue,
            Err(cause) => {
                tracing::warn!(%cause, "cannot read the reference version; will retry");
                continue;
            }
        }
        let _lock = api.changes.lock().await;
        if let Err(cause) = crate::api::change::catch_up(&api).await {
            tracing::warn!(
                ?cause,
                "cannot catch up with the reference data; will retry"
            );
        }
    }
}

/// Operator credits (top-ups, grants) waiting for the engine; a full queue makes the API
/// call wait, never the terminals.
pub const CREDITS_QUEUE_MAX: usize = 64;

/// Connections the kernel may queue before the switch accepts them. The operating system's
/// usual 128 drops bursts (a shop network reconnecting after an outage) without the switch
/// seeing or counting them; the kernel still caps this at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Running {
    /// Waits until everything answered so far is in the database (journal mode; at once with
    /// the database as the commit point). For readers that must see what was answered.
    pub async fn wait_projected(&self) {
        if let Some(journal) = &self.journal {
            journal.wait_projected().await;
        }
    }

    /// Graceful stop: stop accepting, let connections finish what they have in flight, flush
    /// the last batch, close the database.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.loyalty.await;
        let _ = self.surveys.await;
        let _ = self.engagement.await;
        // Every connection (and so every job sender) is gone: the committer drains and ends.
        let _ = self.committer.await;
        let _ = self.admin.await;
        if let Some(dispatcher) = self.dispatcher {
            let _ = dispatcher.await;
        }
        self.pool.close().await;
        info!("switch stopped");
    }
}
