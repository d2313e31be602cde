//! `lsw-sim demo --console`: after the summary, the demo's switch runs again on the demo's
//! database, with an operator for the console (`console`, role `write`, a random password and
//! an API token, both printed once), and prints the console's address; it runs until Ctrl-C.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;
use switch::clock::{Clock, SystemClock};
use switch::config::Config;
use switch::console::i18n::Locale;

/// The console operator's name.
pub const OPERATOR: &str = "console";

/// Serves the demo's database on `admin_listen` (the console and the operator API; terminals
/// on a free loopback port) until `until` completes, then stops the switch.
///
/// # Errors
/// When the database cannot be opened, the operator cannot be added or the switch cannot start.
pub async fn serve(
    database: &Path,
    admin_listen: SocketAddr,
    until: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut config = Config::load(None).context("default configuration")?;
    config.listen = "127.0.0.1:0".parse().context("listen address")?;
    config.admin_listen = admin_listen;
    config.database_url = format!("sqlite://{}", database.display());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pool = switch::store::open(&config.database_url)
        .await
        .context("opening the demo's database")?;
    let mut secret = [0_u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let password = hex::encode(secret);
    let token = switch::console::session::add_operator(
        &pool,
        OPERATOR,
        "write",
        None,
        Locale::En,
        Some(&password),
        clock.now(),
    )
    .await
    .context("adding the console's operator")?;
    pool.close().await;
    let running = switch::app::start(&config, &super::demo_secrets(), clock, None)
        .await
        .with_context(|| format!("starting the switch for the console on {admin_listen}"))?;
    println!("== console ==");
    println!(
        "  the demo's switch is running: terminals on {}",
        running.addr
    );
    println!("  console: http://{}/console", running.admin_addr);
    println!("  sign in as {OPERATOR} with the password {password}");
    println!("  (or with the API token {token}); both are shown only now");
    println!("  Ctrl-C stops the switch");
    std::io::stdout().flush().ok();
    until.await;
    running.stop().await;
    println!("console stopped");
    Ok(())
}
