//! The real `lsw-switch` binary as a child process on a temporary SQLite file, for the crash
//! tests: the secrets it runs with, free loopback ports, start-up, and the test network's
//! terminal and card.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use protocol::response::Response;
use protocol::terminal::Terminal;
use protocol::{Ksi, RawMessage, TerminalId, Tmk, WorkingKeys};

pub const KEK: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub const PAN_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";
/// The test network's card with a 2 000 000-rial club balance.
pub const RICH: &str = "6037991111111112";

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `lsw-switch` with the test secrets, database and listeners.
pub fn switch_command(db: &Path, listen: SocketAddr, admin: SocketAddr) -> Command {
    switch_command_on(&sqlite_url(db), listen, admin)
}

/// The URL of the SQLite file `db`.
pub fn sqlite_url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

/// `lsw-switch` with the test secrets and listeners, on the database `url`.
pub fn switch_command_on(url: &str, listen: SocketAddr, admin: SocketAddr) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lsw-switch"));
    command
        .env("LSW_KEK", KEK)
        .env("LSW_PAN_TOKEN_KEY", PAN_KEY)
        .env("LSW_DATABASE_URL", url)
        .env("LSW_LISTEN", listen.to_string())
        .env("LSW_ADMIN_LISTEN", admin.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Imports the test network into `db`.
pub fn import(db: &Path, network: &Path, listen: SocketAddr, admin: SocketAddr) {
    import_on(&sqlite_url(db), network, listen, admin);
}

/// Imports the test network into the database `url`.
pub fn import_on(url: &str, network: &Path, listen: SocketAddr, admin: SocketAddr) {
    std::fs::write(network, include_str!("../data/network.json")).unwrap();
    let status = switch_command_on(url, listen, admin)
        .arg("import")
        .arg(network)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts `lsw-switch serve` and waits until it accepts connections.
pub fn serve(db: &Path, listen: SocketAddr, admin: SocketAddr) -> Child {
    serve_on(&sqlite_url(db), listen, admin)
}

/// Starts `lsw-switch serve` on the database `url` and waits until it accepts connections.
pub fn serve_on(url: &str, listen: SocketAddr, admin: SocketAddr) -> Child {
    let child = switch_command_on(url, listen, admin)
        .arg("serve")
        .spawn()
        .unwrap();
    wait_listening(listen);
    child
}

/// Waits until a switch accepts connections on `listen`.
pub fn wait_listening(listen: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "switch did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One value of the switch's `/metrics`, or `None` when it has no such line.
pub fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(admin).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until a journal-mode switch has written everything it answered so far into its
/// database (its applied record reaches the appended one read first); at once when the
/// database is the commit point (no journal metrics).
pub fn wait_projected(admin: SocketAddr) {
    let Some(target) = metric(admin, "lsw_journal_appended_seq") else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(admin, "lsw_journal_applied_seq").unwrap_or(0.0) < target {
        assert!(
            Instant::now() < deadline,
            "projection did not reach record {target}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The variable naming the PostgreSQL server the tests may use.
pub const DATABASE_URL: &str = "LSW_TEST_DATABASE_URL";

/// The PostgreSQL server's URL, or `None` after saying on stderr that the test is skipped
/// (written to the stderr handle, so the test harness does not capture it).
pub fn database_url() -> Option<String> {
    use std::io::Write as _;
    match std::env::var(DATABASE_URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let mut stderr = std::io::stderr().lock();
            writeln!(stderr, "skipped: {DATABASE_URL} is not set").unwrap();
            None
        }
    }
}

/// A blocking terminal connection: one frame out, one frame in.
pub struct Wire {
    stream: TcpStream,
    buf: BytesMut,
}

impl Wire {
    pub fn connect(addr: SocketAddr) -> Wire {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Wire {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        protocol::frame::encode(message, &mut out).unwrap();
        self.stream.write_all(&out)
    }

    pub fn receive(&mut self) -> std::io::Result<Bytes> {
        loop {
            if let Some(frame) = protocol::frame::decode(&mut self.buf).unwrap() {
                return Ok(frame);
            }
            let mut chunk = [0_u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub fn now_seconds() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// TRM00001 of the test network.
pub fn counter() -> Terminal {
    let tmk: Vec<u8> = (0..32).collect();
    Terminal::new(
        TerminalId::parse(b"TRM00001").unwrap(),
        Ksi::parse(b"0123456789ABCDEF").unwrap(),
        WorkingKeys::derive(&Tmk::from_slice(&tmk).unwrap()),
    )
}

pub fn parse(bytes: &Bytes, keys: &WorkingKeys) -> Response {
    Response::parse(&RawMessage::parse(bytes.clone()).unwrap(), Some(keys)).unwrap()
}
