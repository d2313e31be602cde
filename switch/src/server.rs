//! The TCP server: one task per connection, pipelined requests, limits on everything
//! (docs/design.md section 8, docs/protocol.md sections 1 and 7 steps 1 to 3).
//!
//! A connection's reader takes frames off the socket, answers format (`30`) and security
//! (`63`) failures itself, and hands verified requests to the committer; its writer sends
//! responses in whatever order they come. A misbehaving peer closes only its own connection.
//!
//! Every write has a deadline (`write_timeout`): a peer that stops reading is closed when its
//! answers cannot be delivered in time, and nothing the reader does waits on it unboundedly.
//! At shutdown the listener closes at once, connections finish what they have in flight
//! within `drain_timeout`, and what is left then is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::frame::{self, FRAME_BYTES_MAX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::abuse::{AbuseLog, Reason};
use crate::admission::{admit, Admission};
use crate::committer::Job;
use crate::domain::PanTokenKey;
use crate::metrics as m;
use crate::snapshot::Snapshot;

/// Unparseable frames a connection may send, in total, before it is closed (docs/protocol.md
/// section 7, step 1).
pub const UNPARSEABLE_FRAMES_MAX: u32 = 3;

/// Security refusals (`63`: bad MAC, envelope that does not open, unknown KSI, stale clock) a
/// connection may draw, in total, before it is closed. A genuine terminal gets at most a few
/// (a clock drifting out of the window); a flood of forged messages would otherwise keep a
/// worker busy verifying MACs as fast as it arrives, at every other terminal's expense.
pub const SECURITY_REFUSALS_MAX: u32 = 16;

/// Format-error answers (`30`) a connection may draw, in total, before it is closed. They
/// need no key, so without a limit a peer could have the switch build answers as fast as it
/// sends frames; a genuine terminal sends well-formed messages.
pub const FORMAT_REFUSALS_MAX: u32 = 16;

/// Connection limits (documented in `docs/config.md`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most open connections; more are accepted and closed at once.
    pub connections_max: usize,
    /// Most requests one connection may have in flight; its reader waits beyond that.
    pub in_flight_max: usize,
    /// How long a started frame may take to arrive (slow senders).
    pub frame_read_timeout: Duration,
    /// How long a connection may stay silent.
    pub idle_timeout: Duration,
    /// How long one write of answers to a peer may take; a peer that does not read them in
    /// that time is closed.
    pub write_timeout: Duration,
    /// At shutdown, how long connections may take to finish what they have in flight before
    /// the rest are closed.
    pub drain_timeout: Duration,
}

/// What every connection shares.
pub struct Shared {
    /// The current reference snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The PAN token key: the PAN is tokenised here and never goes further.
    pub pan_key: Arc<PanTokenKey>,
    /// The committer's queue.
    pub jobs: mpsc::Sender<Job>,
    /// Limits.
    pub limits: Limits,
}

/// Accepts connections until `shutdown` turns true, then closes the listener at once and
/// drains: open connections finish the requests they have in flight within
/// [`Limits::drain_timeout`], and those still open then are closed.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.limits.connections_max));
    let abuse = Arc::new(AbuseLog::new());
    let mut next_id = 0_u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(cause) => {
                // Accept errors (e.g. out of file descriptors) must not end the listener.
                warn!(%cause, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(m::CONNECTIONS_REFUSED_TOTAL).increment(1);
            abuse.note(Reason::ConnectionsMax);
            drop(stream);
            continue;
        };
        next_id += 1;
        let (shared, abuse) = (shared.clone(), abuse.clone());
        let shutdown = shutdown.clone();
        let span = info_span!("connection", conn_id = next_id, %peer);
        tasks.spawn(
            async move {
                let _open = Open::new(slot);
                connection(stream, peer, &shared, abuse, shutdown).await;
            }
            .instrument(span),
        );
        while tasks.try_join_next().is_some() {}
    }
    // No connection is accepted from here on, not even into the kernel's backlog.
    drop(listener);
    info!(open = tasks.len(), "listener closed; draining connections");
    drain(tasks, shared.limits.drain_timeout).await;
}

/// Waits up to `within` for the connections to finish, then closes those left.
async fn drain(mut tasks: tokio::task::JoinSet<()>, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                info!("connections drained");
                return;
            }
            Err(_) => {
                let left = tasks.len();
                metrics::counter!(m::CONNECTIONS_CUT_AT_SHUTDOWN_TOTAL)
                    .increment(u64::try_from(left).unwrap_or(u64::MAX));
                warn!(left, "drain time over; closing the connections left");
                tasks.shutdown().await;
                return;
            }
        }
    }
}

/// An open connection: counted in the gauge and holding its slot until dropped, also when its
/// task is aborted at the end of the drain.
struct Open {
    _slot: OwnedSemaphorePermit,
}

impl Open {
    fn new(slot: OwnedSemaphorePermit) -> Open {
        metrics::gauge!(m::CONNECTIONS_OPEN).increment(1.0);
        Open { _slot: slot }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(m::CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// The writer task of a connection, aborted if the connection's task is.
struct Writer(JoinHandle<()>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    abuse: Arc<AbuseLog>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    // Room for every in-flight response plus the reader's own immediate answers.
    let (reply, replies) = mpsc::channel::<Bytes>(shared.limits.in_flight_max + 8);
    // Turns true when the writer gave up: the peer does not take its answers.
    let (stalled, stalled_rx) = watch::channel(false);
    // Told each time the writer has written: the reader may have room to answer again.
    let room = Arc::new(Notify::new());
    let write_timeout = shared.limits.write_timeout;
    let mut writer = Writer(tokio::spawn(write_loop(
        writer,
        replies,
        write_timeout,
        (stalled, room.clone(), abuse.clone()),
    )));
    let mut strikes = Strikes::new(abuse);
    let signals = Signals {
        shutdown,
        stalled: stalled_rx,
        room,
    };
    let reason = read_loop(reader, shared, reply, signals, &mut strikes).await;
    debug!(%peer, reason, "connection reader done");
    // The writer ends when every reply sender (ours and the in-flight jobs') is dropped, or
    // when a write misses its deadline.
    let _ = (&mut writer.0).await;
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut replies: mpsc::Receiver<Bytes>,
    deadline: Duration,
    (stalled, room, abuse): (watch::Sender<bool>, Arc<Notify>, Arc<AbuseLog>),
) {
    let mut out = BytesMut::with_capacity(FRAME_BYTES_MAX + 2);
    while let Some(response) = replies.recv().await {
        out.clear();
        if frame::encode(&response, &mut out).is_err() {
            continue;
        }
        // Batch whatever else is ready into the same write.
        while let Ok(more) = replies.try_recv() {
            if frame::encode(&more, &mut out).is_err() {
                continue;
            }
        }
        match tokio::time::timeout(deadline, writer.write_all(&out)).await {
            Ok(Ok(())) => room.notify_one(),
            Ok(Err(_)) => {
                let _ = stalled.send(true);
                return;
            }
            Err(_) => {
                metrics::counter!(m::FRAMES_REJECTED_TOTAL, "reason" => "write_timeout")
                    .increment(1);
                abuse.note(Reason::WriteTimeout);
                // Reset rather than wait for the peer to take what is queued. A zero linger
                // never blocks the thread on close (only a positive one does, hence the
                // deprecation).
                #[allow(deprecated)]
                let _ = writer.as_ref().set_linger(Some(Duration::ZERO));
                let _ = stalled.send(true);
                return;
            }
        }
    }
    let _ = tokio::time::timeout(deadline, writer.shutdown()).await;
}

/// Refusals a connection has drawn, and when it has drawn too many.
struct Strikes {
    unparseable: u32,
    security: u32,
    format: u32,
    abuse: Arc<AbuseLog>,
}

impl Strikes {
    fn new(abuse: Arc<AbuseLog>) -> Strikes {
        Strikes {
            unparseable: 0,
            security: 0,
            format: 0,
            abuse,
        }
    }

    /// Counts a frame that does not parse; the label to close with when it is one too many.
    fn unparseable(&mut self) -> Option<&'static str> {
        self.unparseable += 1;
        metrics::counter!(m::FRAMES_REJECTED_TOTAL, "reason" => "unparseable").increment(1);
        (self.unparseable >= UNPARSEABLE_FRAMES_MAX).then(|| {
            self.abuse.note(Reason::Unparseable);
            "unparseable"
        })
    }

    /// Counts a refusal answered `code`; the label to close with when it is one too many.
    fn refused(&mut self, code: protocol::ResponseCode) -> Option<&'static str> {
        let (count, max, reason) = match code {
            protocol::ResponseCode::Security => {
                (&mut self.security, SECURITY_REFUSALS_MAX, Reason::Security)
            }
            protocol::ResponseCode::FormatError => {
                (&mut self.format, FORMAT_REFUSALS_MAX, Reason::Format)
            }
            _ => return None,
        };
        *count += 1;
        if *count < max {
            return None;
        }
        metrics::counter!(m::FRAMES_REJECTED_TOTAL, "reason" => reason.as_str()).increment(1);
        self.abuse.note(reason);
        Some(reason.as_str())
    }
}

/// What a connection's reader listens to besides its socket.
struct Signals {
    /// The switch is stopping.
    shutdown: watch::Receiver<bool>,
    /// The writer gave up on the peer.
    stalled: watch::Receiver<bool>,
    /// The writer wrote something.
    room: Arc<Notify>,
}

/// Waits until the answers channel has room for every answer still owed plus one more, so
/// that nothing is decided for a peer whose answers are not being taken (it would cost the
/// engine work for nothing, and the committer's `try_send` would find no room). An error is
/// why the connection ends (shutdown or a stalled writer).
async fn wait_for_room(
    reply: &mpsc::Sender<Bytes>,
    in_flight: &Semaphore,
    in_flight_max: usize,
    signals: &mut Signals,
) -> Result<(), &'static str> {
    loop {
        let owed = in_flight_max.saturating_sub(in_flight.available_permits());
        if reply.capacity() > owed {
            return Ok(());
        }
        tokio::select! {
            () = signals.room.notified() => {}
            _ = signals.shutdown.changed() => return Err("shutdown"),
            _ = signals.stalled.changed() => return Err("write_timeout"),
        }
    }
}

async fn read_loop(
    mut reader: OwnedReadHalf,
    shared: &Shared,
    reply: mpsc::Sender<Bytes>,
    mut signals: Signals,
    strikes: &mut Strikes,
) -> &'static str {
    let in_flight = Arc::new(Semaphore::new(shared.limits.in_flight_max));
    let mut buf = BytesMut::with_capacity(FRAME_BYTES_MAX + 2);
    let mut frame_started: Option<tokio::time::Instant> = None;
    loop {
        match frame::decode(&mut buf) {
            Err(_) => {
                metrics::counter!(m::FRAMES_REJECTED_TOTAL, "reason" => "bad_length").increment(1);
                strikes.abuse.note(Reason::BadLength);
                return "bad_length";
            }
            Ok(Some(message)) => {
                frame_started = None;
                let max = shared.limits.in_flight_max;
                if let Err(reason) = wait_for_room(&reply, &in_flight, max, &mut signals).await {
                    return reason;
                }
                let received = Instant::now();
                // Queuing an answer waits at most for the writer's deadline; shutdown and a
                // stalled writer end the wait at once.
                let handled = tokio::select! {
                    handled = handle(message, shared, &reply, &in_flight, received) => handled,
                    _ = signals.shutdown.changed() => return "shutdown",
                    _ = signals.stalled.changed() => return "write_timeout",
                };
                let closing = match handled {
                    Handled::Done => None,
                    Handled::Refused(code) => strikes.refused(code),
                    Handled::Unparseable => strikes.unparseable(),
                    Handled::Closed => Some("committer_closed"),
                };
                if let Some(reason) = closing {
                    return reason;
                }
                if matches!(handled, Handled::Refused(_)) {
                    // Refusals are answered on this connection's task; let other
                    // connections' tasks run between them.
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Ok(None) => {}
        }
        // A started frame must be whole within frame_read_timeout of its first byte, however
        // the bytes trickle in; an empty buffer waits for the idle timeout.
        let deadline = if buf.is_empty() {
            frame_started = None;
            tokio::time::Instant::now() + shared.limits.idle_timeout
        } else {
            let started = *frame_started.get_or_insert_with(tokio::time::Instant::now);
            started + shared.limits.frame_read_timeout
        };
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, reader.read_buf(&mut buf)) => read,
            _ = signals.shutdown.changed() => return "shutdown",
            _ = signals.stalled.changed() => return "write_timeout",
        };
        match read {
            Ok(Ok(0)) => return "peer_closed",
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return "read_error",
            Err(_) => {
                let reason = if buf.is_empty() {
                    "idle_timeout"
                } else {
                    "read_timeout"
                };
                metrics::counter!(m::FRAMES_REJECTED_TOTAL, "reason" => reason).increment(1);
                return reason;
            }
        }
    }
}

enum Handled {
    Done,
    Refused(protocol::ResponseCode),
    Unparseable,
    Closed,
}

/// Steps 2 and 3 of docs/protocol.md section 7 ([`admit`]); admitted requests go on to the
/// committer with the snapshot they were checked against.
async fn handle(
    message: Bytes,
    shared: &Shared,
    reply: &mpsc::Sender<Bytes>,
    in_flight: &Arc<Semaphore>,
    received: Instant,
) -> Handled {
    let snapshot = shared.snapshots.borrow().clone();
    let admitted = match admit(message, &snapshot, &shared.pan_key) {
        Admission::Unparseable => return Handled::Unparseable,
        Admission::Refused {
            response,
            code,
            mti,
        } => {
            debug!(
                code = code.as_str(),
                mti = mti.as_str(),
                "refused before the engine"
            );
            metrics::counter!(m::MESSAGES_TOTAL, "mti" => mti.as_str(), "response_code" => code.as_str())
                .increment(1);
            if reply.send(response).await.is_err() {
                return Handled::Closed;
            }
            return Handled::Refused(code);
        }
        Admission::Admitted(admitted) => admitted,
    };
    let Ok(permit) = in_flight.clone().acquire_owned().await else {
        return Handled::Closed;
    };
    let job = Job {
        admitted,
        snapshot: snapshot.clone(),
        reply: reply.clone(),
        permit,
        received,
    };
    if shared.jobs.send(job).await.is_err() {
        return Handled::Closed;
    }
    Handled::Done
}
